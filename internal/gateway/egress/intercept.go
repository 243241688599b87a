package egress

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/policy"
)

// intercept carries out an allowed CONNECT to an intercepted host: the
// client is told 200, its TLS is terminated with a leaf certificate of
// mandate's CA for the CONNECT's host, and every HTTP/1.1 request inside
// is decided on its own (method and path), then sent over TLS to one of
// addrs (checked already; the certificate verified against
// Config.UpstreamRoots, or the system's). The tunnel's own outcome is
// recorded when it closes.
func (g *Gateway) intercept(client net.Conn, brw *bufio.ReadWriter, r *http.Request, subj access.Subject, act access.Action, t *target, addrs []netip.Addr, start time.Time) {
	cc := &clientConn{Conn: client}
	if n := brw.Reader.Buffered(); n > 0 {
		b, _ := brw.Reader.Peek(n)
		cc.pending = append([]byte(nil), b...)
	}
	tc := newTunnelConn(client, nil, r, subj, act)
	if !g.tunnels.add(tc) {
		_ = client.Close()
		return
	}
	defer g.tunnels.remove(tc)

	it := &interceptedTunnel{g: g, subj: subj, cred: tc.cred, t: t}
	it.transport = g.tlsTransport(t, addrs)
	defer it.transport.CloseIdleConnections()
	it.forwarder = &httputil.ReverseProxy{Rewrite: rewrite, Transport: it.transport, ErrorHandler: g.forwardError,
		ModifyResponse: modifyResponse, BufferPool: g.forwarder.BufferPool, ErrorLog: g.forwarder.ErrorLog}

	var firstErr error
	if _, err := io.WriteString(client, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		firstErr = err
	} else if leaf, err := g.cfg.CA.leaf(t.host); err != nil {
		firstErr = err
	} else {
		firstErr = it.serve(tls.Server(cc, &tls.Config{
			Certificates: []tls.Certificate{*leaf}, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12,
		}))
	}
	_ = client.Close()

	out := audit.Outcome{Status: outcomeOK, Bytes: cc.written, Duration: time.Since(start)}
	if reason := tc.closedBy(); reason != "" {
		out.Status, out.Error = outcomeClosed, reason
	} else if firstErr != nil {
		out.Status, out.Error = outcomeError, firstErr.Error()
	}
	g.recordOutcome(context.Background(), subj, act, out, map[string]string{
		"status": "200", "bytes_sent": strconv.FormatInt(cc.read, 10), "intercepted": "true",
		"requests": strconv.FormatInt(it.requests, 10),
	})
}

// interceptedTunnel serves the requests inside one intercepted tunnel.
type interceptedTunnel struct {
	g    *Gateway
	subj access.Subject
	// cred is the CONNECT's task token, authenticated again for every
	// request inside: a token revoked or expired since the CONNECT
	// carries no more requests.
	cred      access.Credential
	t         *target // the CONNECT's
	transport *http.Transport
	forwarder *httputil.ReverseProxy
	requests  int64 // served one at a time (HTTP/1.1)
}

// serve serves HTTP/1.1 on the one connection c until it closes.
func (it *interceptedTunnel) serve(c *tls.Conn) error {
	ln := &oneConnListener{c: c, done: make(chan struct{})}
	srv := &http.Server{
		Handler:           it,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		TLSNextProto:      map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:          slog.NewLogLogger(it.g.log.Handler(), slog.LevelDebug),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateClosed || s == http.StateHijacked {
				ln.Close()
			}
		},
	}
	// The handshake and the first request head within the header
	// timeout; the server sets the deadlines of each request after that.
	_ = c.NetConn().SetReadDeadline(time.Now().Add(readHeaderTimeout))
	_ = srv.Serve(ln)
	if !c.ConnectionState().HandshakeComplete {
		return fmt.Errorf("the client's TLS handshake with mandate's CA did not complete (does the client trust it? mandate egress ca)")
	}
	return nil
}

// ServeHTTP decides and forwards one request inside the tunnel: the same
// http.request as a plain HTTP one, with the path and method visible.
func (it *interceptedTunnel) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	g, subj := it.g, it.subj
	it.requests++
	start := time.Now()
	act := access.Action{Kind: policy.ActionHTTPRequest, Point: Point, RequestID: g.requestID(), Resource: it.t.resource,
		Destination: policy.Destination{Host: it.t.resource, Method: r.Method}}
	t, status, err := it.t.inTunnel(r)
	if err != nil {
		g.refuse(w, r, subj, act, status, err.Error())
		return
	}
	act.Destination = t.dest
	if reason, status := checkHeaders(r); reason != "" {
		g.refuse(w, r, subj, act, status, reason)
		return
	}
	// The token of the CONNECT, again: revoked or expired since, it is
	// refused (the pipeline records why) and the connection closed, so
	// that the client connects again with its current token. Inside the
	// tunnel a 407 would read as the origin's.
	subj, err = g.cfg.Pipeline.Authenticate(r.Context(), it.cred, act)
	var d access.Decision
	if err == nil {
		d, err = g.cfg.Pipeline.DecideAs(r.Context(), subj, act)
	}
	if errors.Is(err, access.ErrUnauthenticated) && !errors.Is(err, audit.ErrUnavailable) && !errors.Is(err, fault.ErrUnavailable) {
		w.Header().Set("Connection", "close")
		problem(w, http.StatusForbidden, "denied", "the task token is no longer accepted, or the task is no longer active")
		return
	}
	if !g.enforce(w, r, d, err) {
		return
	}
	if !g.noObligations(w, r, subj, act, d, start) {
		return
	}
	g.forward(it.forwarder, w, r, subj, act, t, start)
}

// checkHeaders refuses what no forwarded request may carry: too many
// header fields, a protocol upgrade.
func checkHeaders(r *http.Request) (reason string, status int) {
	if n := headerCount(r.Header); n > MaxHeaders {
		return fmt.Sprintf("%d header fields; at most %d", n, MaxHeaders), http.StatusRequestHeaderFieldsTooLarge
	}
	if r.Header.Get("Upgrade") != "" {
		return "protocol upgrades (WebSocket) are not relayed by the egress proxy", http.StatusBadRequest
	}
	return "", 0
}

// tlsTransport is the transport of one intercepted tunnel to t: it dials
// only addrs (checked when the CONNECT was allowed: nothing resolves the
// name again) and verifies the upstream's certificate for t's host.
func (g *Gateway) tlsTransport(t *target, addrs []netip.Addr) *http.Transport {
	serverName := trimBrackets(t.host)
	return &http.Transport{
		Proxy: nil,
		DialTLSContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, _, err := g.dialChecked(ctx, addrs, t.port)
			if err != nil {
				return nil, err
			}
			tc := tls.Client(c, &tls.Config{ServerName: serverName, RootCAs: g.cfg.UpstreamRoots, MinVersion: tls.VersionTLS12,
				NextProtos: []string{"http/1.1"}, ClientSessionCache: g.sessions})
			hctx, cancel := context.WithTimeout(ctx, dialTimeout)
			defer cancel()
			if err := tc.HandshakeContext(hctx); err != nil {
				_ = c.Close()
				return nil, fmt.Errorf("TLS with %s: %w", t.authority(connectPort), err)
			}
			return tc, nil
		},
		MaxIdleConnsPerHost:    8,
		IdleConnTimeout:        idleTimeout,
		DisableCompression:     true,
		MaxResponseHeaderBytes: 1 << 20,
	}
}

// clientConn is the client's side of an intercepted tunnel: it first
// yields the bytes the proxy's server read past the CONNECT (the start of
// the ClientHello), and counts what crosses it.
type clientConn struct {
	net.Conn
	pending       []byte
	read, written int64
}

func (c *clientConn) Read(b []byte) (int, error) {
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		c.read += int64(n)
		return n, nil
	}
	n, err := c.Conn.Read(b)
	c.read += int64(n)
	return n, err
}

func (c *clientConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.written += int64(n)
	return n, err
}

// oneConnListener hands an http.Server one connection, then blocks until
// Close.
type oneConnListener struct {
	mu   sync.Mutex
	c    net.Conn
	done chan struct{}
	once sync.Once
}

func (l *oneConnListener) Accept() (net.Conn, error) {
	l.mu.Lock()
	c := l.c
	l.c = nil
	l.mu.Unlock()
	if c != nil {
		return c, nil
	}
	<-l.done
	return nil, net.ErrClosed
}

func (l *oneConnListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *oneConnListener) Addr() net.Addr { return dummyAddr{} }

type dummyAddr struct{}

func (dummyAddr) Network() string { return "tcp" }
func (dummyAddr) String() string  { return "intercepted" }
