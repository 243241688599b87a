package egress_test

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// pathPolicy is what an operator writes to decide HTTPS requests by path,
// which only interception makes visible.
const pathPolicy = `
@id("no-admin-paths")
@reason("admin paths are off limits")
forbid (principal, action == Action::"http.request", resource)
when { context.destination.path like "/admin/*" };
`

// echo is a loopback TLS server (httptest's certificate: example.com and
// 127.0.0.1) that records every request it serves and echoes its
// Authorization header in a response header and, split across two
// flushes, in its body, as it is and JSON-encoded.
type echo struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []*http.Request
}

func newEcho(t testing.TB, tlsOn bool) *echo {
	t.Helper()
	e := &echo{}
	e.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.got = append(e.got, r.Clone(r.Context()))
		e.mu.Unlock()
		auth := r.Header.Get("Authorization")
		if r.URL.Path == "/gzip" {
			w.Header().Set("Content-Encoding", "gzip")
		}
		w.Header().Set("X-Echo", auth)
		w.Header().Set("Trailer", "X-Sum")
		half := len(auth) / 2
		fmt.Fprintf(w, "path=%s auth=%s", r.URL.Path, auth[:half])
		w.(http.Flusher).Flush()
		fmt.Fprintf(w, "%s json=%q", auth[half:], auth)
		w.Header().Set("X-Sum", auth)
	}))
	if tlsOn {
		e.srv.StartTLS()
	} else {
		e.srv.Start()
	}
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echo) port() string {
	_, p, _ := net.SplitHostPort(e.srv.Listener.Addr().String())
	return p
}

func (e *echo) portNum() uint16 {
	var n uint16
	fmt.Sscan(e.port(), &n)
	return n
}

// requests returns the requests served so far.
func (e *echo) requests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*http.Request(nil), e.got...)
}

func (e *echo) roots() *x509.CertPool {
	p := x509.NewCertPool()
	if c := e.srv.Certificate(); c != nil {
		p.AddCert(c)
	}
	return p
}

// interceptEnv is a proxy intercepting example.com and 127.0.0.1 (both
// the echo server on loopback) and trusting the echo server's
// certificate.
func interceptEnv(t *testing.T, up *echo, o envOpts) *env {
	t.Helper()
	o.allowPrivate = loopback
	o.connectPorts = []uint16{up.portNum()}
	o.intercept = []string{"example.com", "127.0.0.1"}
	if o.upstreamRoots == nil {
		o.upstreamRoots = up.roots()
	}
	o.resolver = &resolver{names: map[string][]netip.Addr{"example.com": {netip.MustParseAddr("127.0.0.1")}}}
	return newEnv(t, o)
}

func TestInterceptedRequestDecidedByPath(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := interceptEnv(t, up, envOpts{policy: pathPolicy})
	host := "example.com:" + up.port()
	tok := e.taskToken(t, "crawler", identity.TierAutonomous, "http.request:"+host)
	c := e.tlsClient(tok, e.caPool(t))

	before := e.rec.len()
	req, _ := http.NewRequest("GET", "https://"+host+"/v1/items?q=1", nil)
	req.Header.Set("Authorization", "Bearer agent-own-token")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := body(resp)
	if resp.StatusCode != 200 || !strings.HasPrefix(got, "path=/v1/items auth=") {
		t.Fatalf("status %d body %q, want 200 from the upstream", resp.StatusCode, got)
	}
	// The client saw mandate's leaf for the CONNECT's host.
	if cn := resp.TLS.PeerCertificates[0]; cn.Issuer.CommonName != e.ca.Certificate().Subject.CommonName || cn.DNSNames[0] != "example.com" {
		t.Errorf("client saw certificate %v issued by %v, want mandate's leaf for example.com", cn.DNSNames, cn.Issuer)
	}
	if n := len(up.requests()); n != 1 {
		t.Fatalf("upstream served %d requests, want 1", n)
	}
	last := up.requests()[0]
	if last.Header.Get("Proxy-Authorization") != "" || last.Host != host || last.RequestURI != "/v1/items?q=1" {
		t.Errorf("upstream saw Host %q target %q Proxy-Authorization %q", last.Host, last.RequestURI, last.Header.Get("Proxy-Authorization"))
	}
	evs := e.waitOutcomes(t, before, 2)
	ds := eventsOf(evs, audit.TypeActionDecided)
	if len(ds) != 2 || ds[0].Details["destination"] != "CONNECT "+host || ds[1].Details["destination"] != "GET "+host+"/v1/items" ||
		ds[1].Decision != audit.DecisionAllow {
		t.Fatalf("decisions = %+v, want the CONNECT and GET %s/v1/items, allowed", ds, host)
	}

	// A denied path, alone in its tunnel: it never reaches the server.
	before = e.rec.len()
	resp, err = c.Get("https://" + host + "/admin/users")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != 403 || !strings.Contains(b, "admin paths are off limits") {
		t.Fatalf("denied path: status %d %q, want 403 with the policy's reason", resp.StatusCode, b)
	}
	if n := len(up.requests()); n != 1 {
		t.Fatalf("upstream served %d requests, want still 1: the denied one reached it", n)
	}
	evs = e.waitOutcomes(t, before, 1)
	var denied *audit.Event
	for _, ev := range eventsOf(evs, audit.TypeActionDecided) {
		if ev.Decision == audit.DecisionDeny {
			denied = &ev
		}
	}
	if denied == nil || denied.Details["destination"] != "GET "+host+"/admin/users" || denied.Reasons[0].Policy != "test.cedar/no-admin-paths" && !strings.Contains(denied.Reasons[0].Policy, "no-admin-paths") {
		t.Fatalf("no denied decision for GET /admin/users with the path policy: %+v", evs)
	}
}

// waitOutcomes waits for n action.completed events since before.
func (e *env) waitOutcomes(t testing.TB, before, n int) []audit.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := e.rec.since(before)
		if len(eventsOf(evs, audit.TypeActionCompleted)) >= n {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d outcomes recorded, want %d: %+v", len(eventsOf(evs, audit.TypeActionCompleted)), n, evs)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestInterceptVerifiesUpstreamCertificate(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	// Roots that do not hold the echo server's certificate (the system's
	// do not either).
	e := interceptEnv(t, up, envOpts{upstreamRoots: x509.NewCertPool()})
	host := "example.com:" + up.port()
	tok := e.taskToken(t, "crawler", identity.TierAutonomous, "http.request:"+host)
	before := e.rec.len()
	resp, err := e.tlsClient(tok, e.caPool(t)).Get("https://" + host + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != 502 || !strings.Contains(b, "certificate") {
		t.Fatalf("status %d %q, want 502: the upstream's certificate is not trusted", resp.StatusCode, b)
	}
	if n := len(up.requests()); n != 0 {
		t.Fatalf("upstream served %d requests over an unverified connection", n)
	}
	// The GET's outcome, not the tunnel's (which may be recorded first:
	// a request's outcome is written after its response ends).
	deadline := time.Now().Add(5 * time.Second)
	for {
		var get *audit.Event
		for _, o := range eventsOf(e.rec.since(before), audit.TypeActionCompleted) {
			if strings.HasPrefix(o.Details["destination"], "GET ") {
				get = &o
				break
			}
		}
		if get != nil {
			if get.Outcome.Status != "error" {
				t.Errorf("the GET's outcome = %+v, want error", get.Outcome)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outcome of the GET recorded: %+v", e.rec.since(before))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNotInterceptedHostIsATunnel(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := newEnv(t, envOpts{allowPrivate: loopback, connectPorts: []uint16{up.portNum()}, intercept: []string{"*.example.com"}})
	host := "127.0.0.1:" + up.port()
	tok := e.taskToken(t, "crawler", identity.TierAutonomous, "http.request:"+host)
	resp, err := e.tlsClient(tok, up.roots()).Get("https://" + host + "/x")
	if err != nil {
		t.Fatal(err)
	}
	if body(resp); resp.StatusCode != 200 || !resp.TLS.PeerCertificates[0].Equal(up.srv.Certificate()) {
		t.Fatalf("status %d, want 200 with the upstream's own certificate (an opaque tunnel)", resp.StatusCode)
	}
}

// rawTunnel opens an intercepted tunnel to host and returns its TLS
// connection (trusting mandate's CA).
func rawTunnel(t *testing.T, e *env, tok, host string) (*tls.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", host, host, basic(tok))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	name, _, _ := net.SplitHostPort(host)
	tc := tls.Client(c, &tls.Config{ServerName: name, RootCAs: e.caPool(t)})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	return tc, bufio.NewReader(tc)
}

func TestInterceptedRequestsHeldToTheTunnel(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := interceptEnv(t, up, envOpts{})
	host := "example.com:" + up.port()
	tok := e.taskToken(t, "crawler", identity.TierAutonomous, "http.request:"+host)
	for _, tc := range []struct {
		name, head string
		want       int
	}{
		{"another Host", "GET / HTTP/1.1\r\nHost: evil.example:" + up.port(), http.StatusMisdirectedRequest},
		{"another port", "GET / HTTP/1.1\r\nHost: example.com:1", http.StatusMisdirectedRequest},
		{"absolute form", "GET https://evil.example/ HTTP/1.1\r\nHost: " + host, http.StatusBadRequest},
		{"dot segments", "GET /a/%2e%2e/admin HTTP/1.1\r\nHost: " + host, http.StatusBadRequest},
		{"websocket", "GET /ws HTTP/1.1\r\nHost: " + host + "\r\nConnection: Upgrade\r\nUpgrade: websocket", http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, br := rawTunnel(t, e, tok, host)
			fmt.Fprintf(c, "%s\r\n\r\n", tc.head)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
	if n := len(up.requests()); n != 0 {
		t.Fatalf("upstream served %d refused requests", n)
	}
}

func TestInterceptedTunnelClosedWhenTaskEnds(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := interceptEnv(t, up, envOpts{})
	host := "example.com:" + up.port()
	tok := e.taskToken(t, "crawler", identity.TierAutonomous, "http.request:"+host)
	c, br := rawTunnel(t, e, tok, host)
	fmt.Fprintf(c, "GET /one HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer xxxxxxxxxxxxxxx\r\n\r\n", host)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	before := e.rec.len()
	e.auth.Tokens.Revocations().RevokeTasks(task.ID(e.claims(t, tok).TaskID))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := br.ReadByte(); err == nil {
		t.Fatal("the tunnel of an ended task is still open")
	}
	evs := e.waitOutcomes(t, before, 1)
	o := eventsOf(evs, audit.TypeActionCompleted)[0]
	if o.Outcome.Status != "closed" || o.Details["intercepted"] != "true" || o.Details["requests"] != "1" {
		t.Errorf("tunnel outcome = %+v %v, want closed, intercepted, 1 request", o.Outcome, o.Details)
	}
}
