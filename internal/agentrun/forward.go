package agentrun

import (
	"bufio"
	"context"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"sync"
	"time"
)

// Forwarder limits.
const (
	maxForwardHeaderBytes = 64 << 10
	forwardDialTimeout    = 30 * time.Second
	forwardHeaderTimeout  = 30 * time.Second
	maxRelayedRefusal     = 4 << 10
)

// ProxyUser is the user name in the forwarder's URL (any name is accepted;
// the password is what counts).
const ProxyUser = "mandate"

// forwarder is a local HTTP proxy on 127.0.0.1 that stands in for the
// egress proxy: the command's HTTP_PROXY and HTTPS_PROXY name it, with a
// secret of this run as the password, and it forwards every request —
// plain HTTP in absolute form, and CONNECT tunnels — to the egress proxy
// with the current task token as Proxy-Authorization (Basic, the token as
// password). So the token is never in the command's environment, a
// renewed token is used from the next request on, and other users of the
// machine, who can reach 127.0.0.1 but not the command's environment,
// cannot use the task's credential through it.
type forwarder struct {
	upstream *url.URL
	secret   string
	token    func() string
	log      *slog.Logger

	ln        net.Listener
	srv       *http.Server
	transport *http.Transport
	proxy     *httputil.ReverseProxy

	mu     sync.Mutex
	tunnel map[net.Conn]struct{}
	closed bool
}

// newForwarder listens on 127.0.0.1 and forwards to the egress proxy at
// upstream (an http or https URL without credentials).
func newForwarder(upstream string, token func() string, log *slog.Logger) (*forwarder, error) {
	u, err := url.Parse(upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return nil, fmt.Errorf("egress proxy URL %q: want http(s)://host:port, without credentials or a path", upstream)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("local egress forwarder: %w", err)
	}
	f := &forwarder{upstream: u, secret: newSecret(), token: token, log: log, ln: ln, tunnel: map[net.Conn]struct{}{}}
	f.transport = &http.Transport{
		Proxy:                 f.upstreamWithToken,
		DialContext:           (&net.Dialer{Timeout: forwardDialTimeout}).DialContext,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: 0, // a slow answer is the upstream's business
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.Out.URL = pr.In.URL
			pr.Out.Host = pr.In.Host
		},
		Transport:      f.transport,
		ModifyResponse: f.refusalOfCredential,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			f.log.Warn("egress forwarder: request failed", "host", r.URL.Host, "err", err)
			http.Error(w, "mandate run: the egress proxy cannot be reached", http.StatusBadGateway)
		},
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	f.srv = &http.Server{
		Handler:           f,
		ReadHeaderTimeout: forwardHeaderTimeout,
		MaxHeaderBytes:    maxForwardHeaderBytes,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { _ = f.srv.Serve(ln) }()
	return f, nil
}

// URL is the proxy URL the command is given: the forwarder's address
// with this run's secret.
func (f *forwarder) URL() string {
	return (&url.URL{Scheme: "http", User: url.UserPassword(ProxyUser, f.secret), Host: f.ln.Addr().String()}).String()
}

// Close stops the forwarder and every tunnel through it.
func (f *forwarder) Close() error {
	f.mu.Lock()
	f.closed = true
	for c := range f.tunnel {
		c.Close()
	}
	f.mu.Unlock()
	err := f.srv.Close()
	f.transport.CloseIdleConnections()
	return err
}

// upstreamWithToken is the egress proxy's URL with the current task token.
func (f *forwarder) upstreamWithToken(*http.Request) (*url.URL, error) {
	u := *f.upstream
	u.User = url.UserPassword(ProxyUser, f.token())
	return &u, nil
}

// proxyAuth is the Basic Proxy-Authorization header carrying the token.
func (f *forwarder) proxyAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(ProxyUser+":"+f.token()))
}

// authorized checks the request's Proxy-Authorization against the run's
// secret (Basic, any user name), with the standard library's parser.
func (f *forwarder) authorized(r *http.Request) bool {
	vs := r.Header.Values("Proxy-Authorization")
	if len(vs) != 1 {
		return false
	}
	_, pass, ok := (&http.Request{Header: http.Header{"Authorization": vs}}).BasicAuth()
	return ok && subtle.ConstantTimeCompare([]byte(pass), []byte(f.secret)) == 1
}

func (f *forwarder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !f.authorized(r) {
		w.Header().Set("Proxy-Authenticate", `Basic realm="mandate run"`)
		http.Error(w, "mandate run: this proxy is for the command mandate run started (use the HTTP_PROXY it was given)", http.StatusProxyAuthRequired)
		return
	}
	if r.Method == http.MethodConnect {
		f.connect(w, r)
		return
	}
	if !r.URL.IsAbs() || (r.URL.Scheme != "http" && r.URL.Scheme != "https") || r.URL.Host == "" {
		http.Error(w, "mandate run: a proxy request needs an absolute http URL", http.StatusBadRequest)
		return
	}
	f.proxy.ServeHTTP(w, r)
}

// refusalOfCredential turns the egress proxy's 407 (it refused the task
// token: expired, revoked, the task ended) into a 502 with the reason, so
// the client does not retry with credentials it does not have.
func (f *forwarder) refusalOfCredential(resp *http.Response) error {
	if resp.StatusCode == http.StatusProxyAuthRequired {
		resp.StatusCode, resp.Status = http.StatusBadGateway, "502 Bad Gateway"
		resp.Header.Del("Proxy-Authenticate")
	}
	return nil
}

// connect serves CONNECT: it opens a tunnel through the egress proxy with
// the task token and splices the client onto it once the proxy accepts.
func (f *forwarder) connect(w http.ResponseWriter, r *http.Request) {
	if _, _, err := net.SplitHostPort(r.Host); err != nil || r.Host != r.URL.Host {
		http.Error(w, "mandate run: CONNECT needs host:port", http.StatusBadRequest)
		return
	}
	up, err := f.dialUpstream(r.Context())
	if err != nil {
		f.log.Warn("egress forwarder: cannot reach the egress proxy", "err", err)
		http.Error(w, "mandate run: the egress proxy cannot be reached", http.StatusBadGateway)
		return
	}
	creq := &http.Request{Method: http.MethodConnect, URL: &url.URL{Opaque: r.Host}, Host: r.Host,
		Header: http.Header{"Proxy-Authorization": {f.proxyAuth()}}}
	_ = up.SetDeadline(time.Now().Add(forwardHeaderTimeout))
	br := bufio.NewReader(up)
	var resp *http.Response
	if err = creq.Write(up); err == nil {
		resp, err = http.ReadResponse(br, creq)
	}
	if err != nil {
		up.Close()
		f.log.Warn("egress forwarder: CONNECT failed", "host", r.Host, "err", err)
		http.Error(w, "mandate run: the egress proxy did not answer CONNECT", http.StatusBadGateway)
		return
	}
	_ = up.SetDeadline(time.Time{})
	if resp.StatusCode != http.StatusOK {
		defer up.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRelayedRefusal))
		resp.Body.Close()
		status := resp.StatusCode
		if status == http.StatusProxyAuthRequired || status < 400 {
			status = http.StatusBadGateway
		}
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		_, _ = w.Write(body)
		return
	}
	client, cbuf, err := http.NewResponseController(w).Hijack()
	if err != nil {
		up.Close()
		return
	}
	if !f.track(client, up) {
		return
	}
	defer f.untrack(client, up)
	if _, err := client.Write([]byte("HTTP/1.1 200 Connection established\r\n\r\n")); err != nil {
		return
	}
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, cbuf.Reader); closeWrite(up); done <- struct{}{} }()
	go func() { _, _ = io.Copy(client, br); closeWrite(client); done <- struct{}{} }()
	<-done
	<-done
}

// dialUpstream connects to the egress proxy (TLS for an https URL).
func (f *forwarder) dialUpstream(ctx context.Context) (net.Conn, error) {
	host := f.upstream.Host
	if f.upstream.Port() == "" {
		port := "80"
		if f.upstream.Scheme == "https" {
			port = "443"
		}
		host = net.JoinHostPort(f.upstream.Hostname(), port)
	}
	ctx, cancel := context.WithTimeout(ctx, forwardDialTimeout)
	defer cancel()
	if f.upstream.Scheme == "https" {
		return (&tls.Dialer{Config: &tls.Config{ServerName: f.upstream.Hostname(), MinVersion: tls.VersionTLS12}}).DialContext(ctx, "tcp", host)
	}
	return (&net.Dialer{}).DialContext(ctx, "tcp", host)
}

// track registers a tunnel's connections for Close; false (and both
// closed) when the forwarder is closed already.
func (f *forwarder) track(cs ...net.Conn) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		f.tunnel[c] = struct{}{}
	}
	return true
}

func (f *forwarder) untrack(cs ...net.Conn) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range cs {
		c.Close()
		delete(f.tunnel, c)
	}
}

// closeWrite half-closes c when it can, so the other side sees the end
// of the stream; otherwise it closes c.
func closeWrite(c net.Conn) {
	if hc, ok := c.(interface{ CloseWrite() error }); ok {
		_ = hc.CloseWrite()
		return
	}
	c.Close()
}
