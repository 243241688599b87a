package egress_test

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/token"
)

// Requests an attacker crafts against the proxy, each asserted by its
// answer, its ledger event and the upstream's count of connections.

// Canonical address literals of refused ranges: the decision allows the
// host (scope "*"), the address check refuses it, and nothing connects.
// 0.0.0.0 and :: connect to the machine itself on Linux; the SIIT form
// ::ffff:0:a.b.c.d is how a translator reaches IPv4.
func TestRedteamRefusedAddressLiterals(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	port := fmt.Sprint(up.port())
	strict := []string{
		"127.0.0.1", "0.0.0.0", "[::]", "[::1]", "[::7f00:1]", "[::ffff:0:7f00:1]", "[64:ff9b::7f00:1]", "[64:ff9b:1::7f00:1]",
		"[2002:7f00:1::1]", "[2001:0:7f00:1::1]", "100.64.0.1", "198.18.0.1", "224.0.0.1", "255.255.255.255",
		"169.254.169.254", "169.254.170.2", "100.100.100.200", "[fd00:ec2::254]", "[fe80::1]", "[ff02::1]", "10.0.0.1", "192.168.0.1",
	}
	for _, tc := range []struct {
		name  string
		allow []string
		hosts []string
	}{
		{"default", nil, strict},
		// Opening loopback opens neither "this host" nor the translated or
		// metadata forms.
		{"loopback allowed", loopback, []string{"0.0.0.0", "[::]", "[::ffff:0:7f00:1]", "[64:ff9b::7f00:1]", "[2002:7f00:1::1]", "169.254.169.254"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{allowPrivate: tc.allow, connectPorts: []uint16{up.port()}})
			tok := e.taskToken(t, "ssrf", identity.TierAutonomous, "http.request:*")
			for _, host := range tc.hosts {
				for _, line := range []string{"GET http://" + host + ":" + port + "/latest/meta-data/ HTTP/1.1", "CONNECT " + host + ":" + port + " HTTP/1.1"} {
					before := e.rec.len()
					resp := e.raw(t, line, "Host: "+host+":"+port, basic(tok))
					if b := body(resp); resp.StatusCode != 403 || !strings.Contains(b, "address refused") {
						t.Errorf("%s: status %d %s, want 403 destination address refused", line, resp.StatusCode, b)
						continue
					}
					evs := e.waitOutcome(t, before)
					oneDecision(t, evs, audit.DecisionAllow)
					if out := eventsOf(evs, audit.TypeActionCompleted); len(out) != 1 || out[0].Outcome.Status != "refused" {
						t.Errorf("%s: outcome %+v, want refused", line, out)
					}
				}
			}
		})
	}
	t.Cleanup(func() {
		if n := up.accepted.Load(); n != 0 {
			t.Errorf("the upstream accepted %d connections", n)
		}
	})
}

// localhost and the names under it are loopback (RFC 6761): never looked
// up in DNS (where "data.localhost" would leak and could answer
// anything), refused by default, reached only when loopback is allowed.
func TestRedteamLocalhostNames(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	port := fmt.Sprint(up.port())
	res := &resolver{names: map[string][]netip.Addr{"evil.localhost": addrs("93.184.216.34")}}
	names := []string{"localhost", "LOCALHOST.", "foo.localhost", "a.b.localhost", "evil.localhost"}
	for _, tc := range []struct {
		name   string
		allow  []string
		status int
	}{{"default", nil, 403}, {"loopback allowed", loopback, 200}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, envOpts{allowPrivate: tc.allow, resolver: res})
			tok := e.taskToken(t, "local", identity.TierAutonomous, "http.request:*")
			for _, name := range names {
				before := e.rec.len()
				resp := e.raw(t, "GET http://"+name+":"+port+"/ HTTP/1.1", "Host: x", basic(tok))
				if b := body(resp); resp.StatusCode != tc.status {
					t.Errorf("%s: status %d %s, want %d", name, resp.StatusCode, b, tc.status)
					continue
				}
				want := "ok"
				if tc.status == 403 {
					want = "refused"
				}
				if out := eventsOf(e.waitOutcome(t, before), audit.TypeActionCompleted); len(out) != 1 || out[0].Outcome.Status != want {
					t.Errorf("%s: outcome %+v, want %s", name, out, want)
				}
			}
		})
	}
	if n := res.calls.Load(); n != 0 {
		t.Errorf("localhost names were looked up %d times", n)
	}
}

// User info, percent-encoding and other tricks in the authority are
// refused before anything is resolved or dialed, and recorded.
func TestRedteamAuthorityTricks(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: []string{"127.0.0.0/8", "169.254.169.254/32"}})
	tok := e.taskToken(t, "tricks", identity.TierAutonomous, "http.request:allowed.example")
	for _, line := range []string{
		"GET http://allowed.example@" + up.addr() + "/ HTTP/1.1",
		"GET http://allowed.example:80@" + up.addr() + "/ HTTP/1.1",
		"GET http://allowed.example%40" + up.addr() + "/ HTTP/1.1",
		"GET http://%31%32%37.0.0.1:" + fmt.Sprint(up.port()) + "/ HTTP/1.1",
		"GET http://" + up.addr() + "%2f@allowed.example/ HTTP/1.1",
		"GET http://allowed.example\\@" + up.addr() + "/ HTTP/1.1",
		"CONNECT allowed.example@" + up.addr() + " HTTP/1.1",
		"CONNECT " + up.addr() + "#@allowed.example:443 HTTP/1.1",
		"GET http://[::ffff:169.254.169.254]/ HTTP/1.1",
		"GET http://169.254.169.254.:80/ HTTP/1.1",
		"GET http://0251.0376.0251.0376/ HTTP/1.1",
		"GET http://2852039166/ HTTP/1.1",
	} {
		before := e.rec.len()
		resp := e.raw(t, line, "Host: allowed.example", basic(tok))
		if b := body(resp); resp.StatusCode != 400 {
			t.Errorf("%s: status %d %s, want 400", line, resp.StatusCode, b)
			continue
		}
		// A target net/http itself cannot parse (a "%" or "\\" in the
		// authority, a "#" in a CONNECT's) is answered by the server
		// before the proxy sees it: nothing is decided, nothing allowed.
		ds := eventsOf(e.rec.since(before), audit.TypeActionDecided)
		if len(ds) > 1 || len(ds) == 1 && ds[0].Decision != audit.DecisionDeny {
			t.Errorf("%s: decisions %+v, want one deny or none", line, ds)
		}
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("the upstream accepted %d connections", n)
	}
}

// conn is a raw keep-alive client connection to the proxy.
type conn struct {
	c  net.Conn
	br *bufio.Reader
}

func (e *env) dial(t *testing.T) *conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return &conn{c: c, br: bufio.NewReader(c)}
}

// do sends a request (head lines, then body) and reads one response; nil
// if the connection was closed.
func (c *conn) do(t *testing.T, body string, lines ...string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(c.c, strings.Join(lines, "\r\n")+"\r\n\r\n"+body); err != nil {
		return nil
	}
	resp, err := http.ReadResponse(c.br, &http.Request{Method: strings.Fields(lines[0])[0]})
	if err != nil {
		return nil
	}
	if resp.Request.Method != http.MethodConnect || resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	return resp
}

// Every request on a kept-alive connection is authenticated on its own:
// none inherits the previous one's credential, and a revocation refuses
// the very next request on the same connection.
func TestRedteamKeepAliveReauthenticated(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "keepalive", identity.TierAutonomous, "http.request:"+up.addr())
	c := e.dial(t)
	get := "GET http://" + up.addr() + "/ HTTP/1.1"
	if resp := c.do(t, "", get, "Host: "+up.addr(), basic(tok)); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v", resp)
	}
	before := e.rec.len()
	if resp := c.do(t, "", get, "Host: "+up.addr()); resp == nil || resp.StatusCode != 407 {
		t.Fatalf("second request without a credential on the same connection: %v, want 407", resp)
	}
	oneDecision(t, e.rec.since(before), audit.DecisionDeny)
	if err := e.auth.Tokens.Revoke(context.Background(), token.Caller{Admin: true}, tok); err != nil {
		t.Fatal(err)
	}
	before = e.rec.len()
	if resp := c.do(t, "", get, "Host: "+up.addr(), basic(tok)); resp != nil && resp.StatusCode != 407 {
		t.Fatalf("request after the token's revocation: status %d, want 407", resp.StatusCode)
	}
	if d := oneDecision(t, e.rec.since(before), audit.DecisionDeny); !strings.Contains(d.Reason, "revoked") {
		t.Errorf("refusal %+v, want the revocation as the cause", d)
	}
	if r := up.lastRequest(); r.Header.Get("Proxy-Authorization") != "" {
		t.Error("the upstream saw the proxy credential")
	}
}

// Connection naming Proxy-Authorization does not make the proxy skip
// the credential, nor pass it on; the upstream never sees the token.
func TestRedteamConnectionNamesCredential(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "hop", identity.TierAutonomous, "http.request:"+up.addr())
	for _, conn := range []string{"Proxy-Authorization", "keep-alive, Proxy-Authorization, Host", "close"} {
		resp := e.raw(t, "GET http://"+up.addr()+"/ HTTP/1.1", "Host: "+up.addr(), "Connection: "+conn, basic(tok), "X-Probe: "+tok[:12])
		if resp.StatusCode != 200 {
			t.Fatalf("Connection: %s: status %d, want 200", conn, resp.StatusCode)
		}
		last := up.lastRequest()
		for k, vs := range last.Header {
			if strings.HasPrefix(k, "Proxy-") || strings.Contains(strings.Join(vs, " "), tok[12:]) {
				t.Errorf("Connection: %s: the upstream saw %s: %v", conn, k, vs)
			}
		}
	}
	// Without the header, naming it in Connection is no credential.
	resp := e.raw(t, "GET http://"+up.addr()+"/ HTTP/1.1", "Host: "+up.addr(), "Connection: Proxy-Authorization")
	if resp.StatusCode != 407 {
		t.Errorf("no credential: status %d, want 407", resp.StatusCode)
	}
}

// A request smuggled in a body (Transfer-Encoding and Content-Length
// both set) is read as a request of its own, authenticated and decided:
// the denied host never sees a connection.
func TestRedteamSmuggling(t *testing.T) {
	t.Parallel()
	allowed, denied := newUpstream(t, false), newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "smuggler", identity.TierAutonomous, "http.request:"+allowed.addr())
	inner := "GET http://" + denied.addr() + "/ HTTP/1.1\r\nHost: " + denied.addr() + "\r\n" + basic(tok) + "\r\n\r\n"
	chunked := "0\r\n\r\n" + inner
	for _, te := range []string{"chunked", "chunked, identity", " chunked", "xchunked", "identity"} {
		c := e.dial(t)
		lines := []string{"POST http://" + allowed.addr() + "/ HTTP/1.1", "Host: " + allowed.addr(), basic(tok),
			"Content-Length: " + fmt.Sprint(len(chunked)), "Transfer-Encoding: " + te}
		resp := c.do(t, chunked, lines...)
		if resp != nil && resp.StatusCode == 200 {
			// The rest of the connection is the smuggled request: decided.
			if next, err := http.ReadResponse(c.br, nil); err == nil && next.StatusCode != 403 {
				t.Errorf("TE %q: the smuggled request was answered %d, want 403", te, next.StatusCode)
			}
		}
		for _, h := range []string{"Content-Length", "Transfer-Encoding"} {
			c.do(t, "", "POST http://"+allowed.addr()+"/ HTTP/1.1", "Host: "+allowed.addr(), basic(tok), h+": 1", h+": 2")
		}
	}
	if n := denied.accepted.Load(); n != 0 {
		t.Errorf("the denied upstream accepted %d connections", n)
	}
}

// Expect: 100-continue to a denied host is answered with the refusal, not
// with a 100 that would have the client send its body.
func TestRedteamExpectContinueDenied(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "expect", identity.TierAutonomous, "http.request:elsewhere.example")
	before := e.rec.len()
	resp := e.raw(t, "POST http://"+up.addr()+"/ HTTP/1.1", "Host: "+up.addr(), basic(tok), "Content-Length: 10", "Expect: 100-continue")
	if resp.StatusCode != 403 {
		t.Fatalf("status %d, want 403 (no 100 Continue)", resp.StatusCode)
	}
	oneDecision(t, e.rec.since(before), audit.DecisionDeny)
	if up.accepted.Load() != 0 {
		t.Error("the denied upstream was reached")
	}
}

// The proxy relays a redirect; it never follows one (to metadata or to a
// denied host).
func TestRedteamRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	target := newUpstream(t, false)
	redirect := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://"+target.addr()+"/stolen", http.StatusFound)
	}))
	t.Cleanup(redirect.Close)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	host := redirect.Listener.Addr().String()
	tok := e.taskToken(t, "redirected", identity.TierAutonomous, "http.request:"+host)
	resp := e.raw(t, "GET http://"+host+"/ HTTP/1.1", "Host: "+host, basic(tok))
	if resp.StatusCode != 302 || !strings.Contains(resp.Header.Get("Location"), target.addr()) {
		t.Fatalf("status %d Location %q, want the 302 relayed", resp.StatusCode, resp.Header.Get("Location"))
	}
	if target.accepted.Load() != 0 {
		t.Error("the proxy followed the redirect")
	}
}

// Tokens that are not a task token of this audience are refused: one for
// an MCP server's audience, an agent token, a task token presented as the
// Basic user name.
func TestRedteamTokenKinds(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "kinds", identity.TierAutonomous, "http.request:"+up.addr())
	sign := func(change func(*token.Claims)) string {
		c := *e.claims(t, tok)
		c.ID = "other-" + c.ID
		change(&c)
		s, err := e.auth.Tokens.Keyring().Sign(&c)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	mcp := sign(func(c *token.Claims) { c.Audience = jwt.Audience{"https://mandate.test/mcp/github"} })
	agent := sign(func(c *token.Claims) { c.Use = token.UseAgent; c.TaskID = "" })
	b64 := func(s string) string { return "Proxy-Authorization: Basic " + base64Std(s) }
	for name, h := range map[string]string{
		"mcp audience":                 basic(mcp),
		"agent token":                  basic(agent),
		"token as user name":           b64(tok + ":"),
		"token as user, junk password": b64(tok + ":x"),
	} {
		before := e.rec.len()
		resp := e.raw(t, "GET http://"+up.addr()+"/ HTTP/1.1", "Host: "+up.addr(), h)
		if resp.StatusCode != 407 {
			t.Errorf("%s: status %d, want 407", name, resp.StatusCode)
			continue
		}
		oneDecision(t, e.rec.since(before), audit.DecisionDeny)
	}
	if up.accepted.Load() != 0 {
		t.Error("the upstream was reached")
	}
}

// A suspended agent's next request is refused and its open tunnel closed.
func TestRedteamSuspendedAgent(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, true)
	e := newEnv(t, envOpts{allowPrivate: loopback, connectPorts: []uint16{up.port()}})
	tok := e.taskToken(t, "suspended", identity.TierAutonomous, "http.request:"+up.addr())
	c := e.dial(t)
	if resp := c.do(t, "", "CONNECT "+up.addr()+" HTTP/1.1", "Host: "+up.addr(), basic(tok)); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v", resp)
	}
	id, err := identity.ParseID(e.claims(t, tok).ClientID)
	if err != nil {
		t.Fatal(err)
	}
	before := e.rec.len()
	e.auth.Tokens.Revocations().SetAgentActive(id, false)
	if resp := e.raw(t, "GET http://"+up.addr()+"/ HTTP/1.1", "Host: "+up.addr(), basic(tok)); resp.StatusCode != 407 {
		t.Errorf("after suspension: status %d, want 407", resp.StatusCode)
	}
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("the suspended agent's tunnel is still open (%v)", err)
	}
	for _, o := range eventsOf(e.waitOutcome(t, before), audit.TypeActionCompleted) {
		if o.Outcome.Status != "closed" {
			t.Errorf("tunnel outcome %+v, want closed", o.Outcome)
		}
	}
}

// The token a tunnel was opened with is checked for every request inside
// an intercepted tunnel, and for the life of every tunnel: revoking the
// token (not its task) refuses the next request in the tunnel and closes
// the tunnels it opened.
func TestRedteamRevokedTokenEndsTunnels(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := interceptEnv(t, up, envOpts{})
	host := "example.com:" + up.port()
	tok := e.taskToken(t, "leaked", identity.TierAutonomous, "http.request:"+host+" http.request:127.0.0.1:"+up.port())
	c, br := rawTunnel(t, e, tok, host)
	get := func() *http.Response {
		fmt.Fprintf(c, "GET /x HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer xxxxxxxxxxxxxxx\r\n\r\n", host)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			if isTimeout(err) {
				t.Fatalf("no answer inside the tunnel: %v", err)
			}
			return nil
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp
	}
	if resp := get(); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("first request: %v", resp)
	}
	opaque := e.dial(t)
	if resp := opaque.do(t, "", "CONNECT 127.0.0.1:"+up.port()+" HTTP/1.1", "Host: x", basic(tok)); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("opaque CONNECT: %v", resp)
	}
	before := e.rec.len()
	if err := e.auth.Tokens.Revoke(context.Background(), token.Caller{Admin: true}, tok); err != nil {
		t.Fatal(err)
	}
	if resp := get(); resp != nil && (resp.StatusCode != 403 || !resp.Close) {
		t.Errorf("a request inside the intercepted tunnel after its token was revoked: status %d, want 403 and Connection: close", resp.StatusCode)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream served %d requests, want 1", n)
	}
	_ = opaque.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := opaque.br.ReadByte(); err == nil || isTimeout(err) {
		t.Errorf("the opaque tunnel of a revoked token is still open (%v)", err)
	}
	// Both tunnels' refusals are in the ledger, with the revocation.
	evs := e.waitOutcomes(t, before, 2)
	var refused int
	for _, d := range eventsOf(evs, audit.TypeActionDecided) {
		if d.Decision == audit.DecisionDeny && strings.Contains(d.Reason, "revoked") {
			refused++
		}
	}
	if refused == 0 {
		t.Errorf("no refusal naming the revocation: %+v", evs)
	}
	for _, o := range eventsOf(evs, audit.TypeActionCompleted) {
		if o.Details["status"] == "200" && o.Outcome.Status != "closed" && o.Outcome.Status != "ok" {
			t.Errorf("tunnel outcome %+v", o.Outcome)
		}
	}
}

// A token that expires while its intercepted tunnel is open carries no
// more requests in it (403, Connection: close, recorded); its opaque
// tunnel lives on with its task.
func TestRedteamExpiredTokenInTunnel(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := interceptEnv(t, up, envOpts{})
	host := "example.com:" + up.port()
	long := e.taskToken(t, "short", identity.TierAutonomous, "http.request:"+host+" http.request:127.0.0.1:"+up.port())
	c := *e.claims(t, long)
	// Expired 28 s ago: still accepted within the verifier's 30 s skew,
	// refused 2 s from now.
	c.ID, c.Expiry = "short-"+c.ID, jwt.NewNumericDate(time.Now().Add(-28*time.Second))
	tok, err := e.auth.Tokens.Keyring().Sign(&c)
	if err != nil {
		t.Fatal(err)
	}
	tc, br := rawTunnel(t, e, tok, host)
	get := func() *http.Response {
		fmt.Fprintf(tc, "GET /x HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer xxxxxxxxxxxxxxx\r\n\r\n", host)
		_ = tc.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("no answer inside the tunnel: %v", err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp
	}
	if resp := get(); resp.StatusCode != 200 {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	opaque := e.dial(t)
	if resp := opaque.do(t, "", "CONNECT 127.0.0.1:"+up.port()+" HTTP/1.1", "Host: x", basic(tok)); resp == nil || resp.StatusCode != 200 {
		t.Fatalf("opaque CONNECT: %v", resp)
	}
	time.Sleep(time.Until(c.Expiry.Time().Add(token.DefaultSkew + 1500*time.Millisecond)))
	before := e.rec.len()
	if resp := get(); resp.StatusCode != 403 || !resp.Close {
		t.Errorf("request after the token expired: status %d, want 403 and Connection: close", resp.StatusCode)
	}
	if d := oneDecision(t, e.rec.since(before), audit.DecisionDeny); !strings.Contains(d.Reason, "expired") {
		t.Errorf("refusal %+v, want the expiry", d)
	}
	if n := len(up.requests()); n != 1 {
		t.Errorf("the upstream served %d requests, want 1", n)
	}
	_ = opaque.c.SetReadDeadline(time.Now().Add(1500 * time.Millisecond))
	if _, err := opaque.br.ReadByte(); !isTimeout(err) {
		t.Errorf("the opaque tunnel ended with its token (%v), want it open while its task is", err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// A response to a task with injected secrets that is encoded in any way
// — Content-Encoding given twice, listed, in another case — is withheld,
// never relayed compressed past the scrubber.
func TestRedteamEncodedEchoWithheld(t *testing.T) {
	t.Parallel()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		io.WriteString(zw, "echo: "+r.Header.Get("Authorization"))
		zw.Close()
		w.Header()["Content-Encoding"] = strings.Split(r.URL.Query().Get("ce"), "|")
		w.Write(gz.Bytes())
	}))
	t.Cleanup(up.Close)
	host := up.Listener.Addr().String()
	e := newEnv(t, envOpts{allowPrivate: loopback, secrets: true, classifier: policy.ClassifierConfig{Risks: []policy.RiskRule{
		{Match: "secret.use:gh_token", Risk: policy.RiskRead}, {Match: "http.request:*", Risk: policy.RiskRead},
	}}})
	if _, _, err := e.broker.Put(context.Background(), "admin", secrets.PutRequest{Name: "gh_token", Value: []byte(ghValue),
		Deliver: []secrets.Target{{Host: host}}}); err != nil {
		t.Fatal(err)
	}
	tok := e.taskToken(t, "gz", identity.TierSupervised, "http.request:"+host+" secret.use:gh_token")
	for _, ce := range []string{"gzip", "identity|gzip", "identity,gzip", "GZIP", "|gzip", "identity, gzip"} {
		req, _ := http.NewRequest("GET", "http://"+host+"/?ce="+strings.ReplaceAll(ce, " ", "+"), nil)
		req.Header.Set("Authorization", "Bearer [secret:gh_token]")
		resp, err := e.client(tok).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b := body(resp)
		if resp.StatusCode != 502 || !strings.Contains(b, "withheld") {
			t.Errorf("Content-Encoding %q: status %d %q, want 502 response withheld", ce, resp.StatusCode, b)
		}
		if zr, err := gzip.NewReader(strings.NewReader(b)); err == nil {
			plain, _ := io.ReadAll(zr)
			noValue(t, "the decompressed answer", plain)
		}
	}
}

func base64Std(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// The SNI a client sends inside an intercepted tunnel is not what is
// decided or dialed: the CONNECT's host is (its leaf, its Host check),
// and the inner request goes there.
func TestRedteamInterceptIgnoresSNI(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e := interceptEnv(t, up, envOpts{})
	host := "example.com:" + up.port()
	tok := e.taskToken(t, "sni", identity.TierAutonomous, "http.request:"+host)
	c, err := net.DialTimeout("tcp", e.proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", host, host, basic(tok))
	br := bufio.NewReader(c)
	if resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"}); err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v", resp, err)
	}
	tc := tls.Client(c, &tls.Config{ServerName: "evil.example", InsecureSkipVerify: true}) //nolint:gosec // the test looks at the leaf itself
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	if leaf := tc.ConnectionState().PeerCertificates[0]; leaf.VerifyHostname("example.com") != nil || leaf.VerifyHostname("evil.example") == nil {
		t.Fatalf("leaf for %v, want the CONNECT's host only", leaf.DNSNames)
	}
	tbr := bufio.NewReader(tc)
	before := e.rec.len()
	fmt.Fprintf(tc, "GET /sni HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer xxxxxxxxxxxxxxx\r\n\r\n", host)
	resp, err := http.ReadResponse(tbr, nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("inner request: %v %v", resp, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	if d := oneDecision(t, e.waitOutcomes(t, before, 1), audit.DecisionAllow); d.Details["destination"] != "GET "+host+"/sni" {
		t.Errorf("decided %q, want GET %s/sni", d.Details["destination"], host)
	}
	if r := up.requests(); len(r) != 1 || r[0].Host != host || r[0].TLS == nil || r[0].TLS.ServerName != "example.com" {
		t.Errorf("upstream saw %+v, want one request for %s with SNI example.com", r, host)
	}
}
