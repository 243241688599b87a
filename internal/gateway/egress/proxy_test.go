package egress_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// loopback is the allow_private every test that reaches a loopback
// server needs: loopback is refused by default.
var loopback = []string{"127.0.0.0/8"}

func TestAllowedHostReached(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{allowPrivate: loopback})
	up := newUpstream(t, false)
	tok := e.taskToken(t, "curl", identity.TierAutonomous, "http.request:"+up.addr())
	before := e.rec.len()

	req, _ := http.NewRequest("POST", "http://"+up.addr()+"/v1/items?q=1", strings.NewReader("payload"))
	req.Header.Set("Connection", "X-Drop")
	req.Header.Set("X-Drop", "hop-by-hop")
	resp, err := e.client(tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := body(resp)
	if resp.StatusCode != 200 || got != "hello from "+up.addr() {
		t.Fatalf("status %d body %q, want 200 from the upstream", resp.StatusCode, got)
	}
	if resp.Header.Get("X-Hop") != "" {
		t.Errorf("a response header the upstream named in Connection reached the client")
	}
	last := up.lastRequest()
	for _, h := range []string{"Proxy-Authorization", "X-Drop", "Proxy-Connection"} {
		if last.Header.Get(h) != "" {
			t.Errorf("upstream saw %s: %q", h, last.Header.Get(h))
		}
	}
	if last.Host != up.addr() || last.RequestURI != "/v1/items?q=1" {
		t.Errorf("upstream saw Host %q target %q, want %q and the origin-form target", last.Host, last.RequestURI, up.addr())
	}

	evs := e.waitOutcome(t, before)
	d := oneDecision(t, evs, audit.DecisionAllow)
	if d.Resource != "host:"+up.addr() || d.Details["destination"] != "POST "+up.addr()+"/v1/items" {
		t.Errorf("decision = %+v, want resource host:%s and destination POST %s/v1/items (no query)", d, up.addr(), up.addr())
	}
	done := eventsOf(evs, audit.TypeActionCompleted)
	if len(done) != 1 {
		t.Fatalf("%d outcome events, want 1", len(done))
	}
	o := done[0]
	if o.Outcome == nil || o.Outcome.Status != "ok" || o.Outcome.Bytes != int64(len(got)) || o.Outcome.Duration <= 0 ||
		o.Details["status"] != "200" || o.Details["bytes_sent"] != "7" || o.RequestID != d.RequestID || o.RequestID == "" {
		t.Errorf("outcome = %+v %+v, want ok, %d bytes, status 200, 7 bytes sent, the decision's request id", o, o.Outcome, len(got))
	}
}

func TestDeniedHostNeverConnected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{allowPrivate: loopback})
	up := newUpstream(t, false)
	tok := e.taskToken(t, "narrow", identity.TierAutonomous, "http.request:api.example.com")
	before := e.rec.len()
	resp, err := e.client(tok).Get("http://" + up.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b := body(resp)
	if resp.StatusCode != 403 || !strings.Contains(b, "outside the task's scope") {
		t.Errorf("status %d body %s, want 403 with the reason", resp.StatusCode, b)
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("the denied upstream accepted %d connections, want 0", n)
	}
	d := oneDecision(t, e.rec.since(before), audit.DecisionDeny)
	if len(d.Reasons) == 0 || d.Reasons[0].Policy != "task-scope" {
		t.Errorf("denial reasons %+v, want task-scope", d.Reasons)
	}
	if len(eventsOf(e.rec.since(before), audit.TypeActionCompleted)) != 0 {
		t.Error("a denied request has an outcome event")
	}
}

// A supervised agent's requests need approval, which the proxy does not
// wait for: refused, and the upstream never sees it.
func TestApprovalRequiredIsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{allowPrivate: loopback})
	up := newUpstream(t, false)
	tok := e.taskToken(t, "supervised", identity.TierSupervised, "http.request:"+up.addr())
	before := e.rec.len()
	resp, err := e.client(tok).Get("http://" + up.addr() + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != 403 || !strings.Contains(b, "approval required") {
		t.Errorf("status %d body %s, want 403 approval required", resp.StatusCode, b)
	}
	if up.accepted.Load() != 0 {
		t.Error("the upstream was reached")
	}
	oneDecision(t, e.rec.since(before), audit.DecisionApprovalRequired)
}

func TestConnect(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, true)
	e := newEnv(t, envOpts{allowPrivate: loopback, connectPorts: []uint16{up.port()}})
	tok := e.taskToken(t, "git", identity.TierAutonomous, "http.request:"+up.addr())
	pool := x509.NewCertPool()
	pool.AddCert(up.srv.Certificate())
	tlsClient := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}

	before := e.rec.len()
	resp, err := e.client(tok, tlsClient).Get("https://" + up.addr() + "/repo.git")
	if err != nil {
		t.Fatal(err)
	}
	if got := body(resp); resp.StatusCode != 200 || got != "hello from "+up.addr() {
		t.Fatalf("status %d body %q, want 200 through the tunnel", resp.StatusCode, got)
	}
	if up.lastRequest().Header.Get("Proxy-Authorization") != "" {
		t.Error("the upstream saw the proxy credential")
	}
	d := oneDecision(t, e.waitOutcome(t, before), audit.DecisionAllow)
	if d.Details["destination"] != "CONNECT "+up.addr() {
		t.Errorf("destination %q, want CONNECT %s (no path: it is inside TLS)", d.Details["destination"], up.addr())
	}
	o := eventsOf(e.rec.since(before), audit.TypeActionCompleted)[0]
	if o.Outcome.Status != "ok" || o.Outcome.Bytes == 0 || o.Details["bytes_sent"] == "0" || o.Details["address"] != up.addr() {
		t.Errorf("tunnel outcome %+v %+v, want ok with bytes both ways and the address dialed", o.Outcome, o.Details)
	}

	t.Run("port not allowed", func(t *testing.T) {
		other := newUpstream(t, true)
		before := e.rec.len()
		resp := e.raw(t, "CONNECT "+other.addr()+" HTTP/1.1", "Host: "+other.addr(), basic(tok))
		if b := body(resp); resp.StatusCode != 403 || !strings.Contains(b, "egress.connect_ports") {
			t.Errorf("status %d body %s, want 403 naming egress.connect_ports", resp.StatusCode, b)
		}
		if other.accepted.Load() != 0 {
			t.Error("a CONNECT to a port not allowed reached the upstream")
		}
		d := oneDecision(t, e.rec.since(before), audit.DecisionDeny)
		if d.Task == "" || d.Agent == "" || !strings.Contains(d.Reason, "port") {
			t.Errorf("refusal = %+v, want the task, the agent and the reason", d)
		}
	})
}

// waitOutcome waits for the outcome event recorded after index before
// (a tunnel records it when it closes) and returns the events since.
func (e *env) waitOutcome(t testing.TB, before int) []audit.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := e.rec.since(before)
		if len(eventsOf(evs, audit.TypeActionCompleted)) > 0 {
			return evs
		}
		if time.Now().After(deadline) {
			t.Fatalf("no outcome recorded: %+v", evs)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCredentialRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{allowPrivate: loopback})
	up := newUpstream(t, false)
	scope := "http.request:" + up.addr()
	good := e.taskToken(t, "agent", identity.TierAutonomous, scope)
	revoked := e.taskToken(t, "revoked", identity.TierAutonomous, scope)
	if err := e.auth.Tokens.Revoke(context.Background(), token.Caller{Admin: true}, revoked); err != nil {
		t.Fatal(err)
	}
	ended := e.taskToken(t, "ended", identity.TierAutonomous, scope)
	e.auth.Tokens.Revocations().RevokeTasks(task.ID(e.claims(t, ended).TaskID))
	for _, tc := range []struct {
		name, header, reason string
	}{
		{"none", "", "no Proxy-Authorization"},
		{"expired", basic(e.expiredToken(t, good)), "expired"},
		{"revoked token", basic(revoked), "revoked"},
		{"ended task", basic(ended), "no longer active"},
		{"garbage", basic("not-a-token"), "invalid_token"},
		{"no password", "Proxy-Authorization: Basic " + "YWdlbnQ=", "no password"},
		{"not base64", "Proxy-Authorization: Basic !!!", "not base64"},
		{"unknown scheme", "Proxy-Authorization: Digest x", "unsupported scheme"},
		{"two headers", basic(good) + "\r\n" + basic(good), "more than one"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.rec.len()
			lines := []string{"GET http://" + up.addr() + "/ HTTP/1.1", "Host: " + up.addr()}
			if tc.header != "" {
				lines = append(lines, tc.header)
			}
			resp := e.raw(t, lines...)
			if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") != `Basic realm="mandate"` {
				t.Fatalf("status %d, Proxy-Authenticate %q; want 407 with the Basic challenge", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
			}
			d := oneDecision(t, e.rec.since(before), audit.DecisionDeny)
			if !strings.Contains(d.Reason, tc.reason) || d.Resource != "host:"+up.addr() {
				t.Errorf("refusal = %+v, want a reason with %q for host:%s", d, tc.reason, up.addr())
			}
			if b := body(resp); strings.Contains(b, d.Reason) {
				t.Errorf("407 body %q tells the cause", b)
			}
		})
	}
	if up.accepted.Load() != 0 {
		t.Errorf("the upstream accepted %d connections from refused clients", up.accepted.Load())
	}
	// Bearer works as well as Basic.
	resp := e.raw(t, "GET http://"+up.addr()+"/ HTTP/1.1", "Host: "+up.addr(), "Proxy-Authorization: Bearer "+good)
	if resp.StatusCode != 200 {
		t.Errorf("Bearer: status %d, want 200", resp.StatusCode)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
}

// A tunnel lives no longer than its task: ending the task closes it, and
// its outcome says so.
func TestTunnelEndsWithTask(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, true)
	e := newEnv(t, envOpts{allowPrivate: loopback, connectPorts: []uint16{up.port()}})
	tok := e.taskToken(t, "long", identity.TierAutonomous, "http.request:"+up.addr())
	c, err := net.DialTimeout("tcp", e.proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	before := e.rec.len()
	fmt.Fprintf(c, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n%s\r\n\r\n", up.addr(), up.addr(), basic(tok))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, &http.Request{Method: "CONNECT"})
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("CONNECT: %v %v, want 200", resp, err)
	}
	e.auth.Tokens.Revocations().RevokeTasks(task.ID(e.claims(t, tok).TaskID))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("read from the tunnel after the task ended: %v, want EOF", err)
	}
	o := eventsOf(e.waitOutcome(t, before), audit.TypeActionCompleted)[0]
	if o.Outcome.Status != "closed" || !strings.Contains(o.Outcome.Error, "no longer active") {
		t.Errorf("outcome %+v, want closed because the task is no longer active", o.Outcome)
	}
}
