package egress_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// resolver answers from a table and counts lookups.
type resolver struct {
	names map[string][]netip.Addr
	calls atomic.Int64
}

func (r *resolver) LookupNetIP(_ context.Context, network, host string) ([]netip.Addr, error) {
	r.calls.Add(1)
	if network != "ip" {
		return nil, fmt.Errorf("network %q", network)
	}
	if a, ok := r.names[host]; ok {
		return slices.Clone(a), nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// Every spelling of an address but its canonical one is refused (never
// cleaned into an allow), and recorded; the upstream never sees a
// connection. The task's scope would allow the canonical spelling.
func TestAddressSpellingsRefused(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	port := fmt.Sprint(up.port())
	e := newEnv(t, envOpts{allowPrivate: loopback, connectPorts: []uint16{up.port()}})
	tok := e.taskToken(t, "spell", identity.TierAutonomous, "http.request:*")
	for _, host := range []string{
		"2130706433", "0177.0.0.1", "0x7f.1", "0x7f000001", "127.1", "127.0.0.01", "127.0.0.1.",
		"[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[0:0:0:0:0:0:0:1]", "[::1%25lo]", "[fe80::1%25eth0]",
	} {
		for _, req := range [][]string{
			{"GET http://" + host + ":" + port + "/ HTTP/1.1", "Host: x"},
			{"CONNECT " + host + ":" + port + " HTTP/1.1", "Host: x"},
		} {
			before := e.rec.len()
			resp := e.raw(t, append(req, basic(tok))...)
			if b := body(resp); resp.StatusCode != 400 {
				t.Errorf("%s: status %d %s, want 400", req[0], resp.StatusCode, b)
				continue
			}
			d := oneDecision(t, e.rec.since(before), audit.DecisionDeny)
			if d.Task == "" || d.Reason == "" {
				t.Errorf("%s: refusal %+v has no task or reason", req[0], d)
			}
		}
	}
	if n := up.accepted.Load(); n != 0 {
		t.Errorf("the upstream accepted %d connections", n)
	}
}

// A name is resolved once; one refused address refuses the name; the
// address dialed is the one checked.
func TestResolution(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	_, port, _ := net.SplitHostPort(up.addr())
	res := &resolver{names: map[string][]netip.Addr{
		"mixed.test":     addrs("127.0.0.1", "93.184.216.34"),
		"mixed6.test":    addrs("127.0.0.1", "::ffff:10.0.0.1"),
		"private.test":   addrs("10.0.0.7"),
		"metadata.test":  addrs("169.254.169.254"),
		"metadata6.test": addrs("fd00:ec2::254"),
		"nat64.test":     addrs("64:ff9b::a9fe:a9fe"),
		"mapped.test":    addrs("::ffff:127.0.0.1"),
		"loop.test":      addrs("127.0.0.1"),
	}}
	e := newEnv(t, envOpts{allowPrivate: []string{"127.0.0.0/8", "169.254.0.0/16"}, resolver: res, connectPorts: []uint16{up.port()}})
	tok := e.taskToken(t, "dns", identity.TierAutonomous, "http.request:*")
	for _, name := range []string{"mixed.test", "mixed6.test", "private.test", "metadata.test", "metadata6.test", "nat64.test"} {
		for _, req := range [][]string{
			{"GET http://" + name + ":" + port + "/ HTTP/1.1", "Host: " + name},
			{"CONNECT " + name + ":" + port + " HTTP/1.1", "Host: " + name},
		} {
			before := e.rec.len()
			resp := e.raw(t, append(req, basic(tok))...)
			if b := body(resp); resp.StatusCode != 403 || !strings.Contains(b, "address") {
				t.Errorf("%s: status %d %s, want 403 for the address", req[0], resp.StatusCode, b)
				continue
			}
			evs := e.waitOutcome(t, before)
			oneDecision(t, evs, audit.DecisionAllow) // the policy allowed the host...
			out := eventsOf(evs, audit.TypeActionCompleted)
			if len(out) != 1 || out[0].Outcome.Status != "refused" || !strings.Contains(out[0].Outcome.Error, name) {
				t.Errorf("%s: outcome %+v, want refused naming %s", req[0], out, name) // ...the proxy did not connect
			}
		}
	}
	if n := up.accepted.Load(); n != 0 {
		t.Fatalf("the upstream accepted %d connections for refused names", n)
	}

	// Allowed names reach the address checked, resolved exactly once.
	for _, name := range []string{"loop.test", "mapped.test"} {
		calls := res.calls.Load()
		resp := e.raw(t, "GET http://"+name+":"+port+"/x HTTP/1.1", "Host: evil.example", basic(tok))
		if b := body(resp); resp.StatusCode != 200 || b != "hello from "+name+":"+port {
			t.Errorf("%s: status %d %q, want 200 with the decided host as Host (not the client's)", name, resp.StatusCode, b)
		}
		if n := res.calls.Load() - calls; n != 1 {
			t.Errorf("%s: resolved %d times, want once", name, n)
		}
	}
	// Nothing is resolved for a host the policy denies: no DNS lookups
	// leak data about names a task may not reach.
	narrow := e.taskToken(t, "narrow", identity.TierAutonomous, "http.request:allowed.test")
	calls := res.calls.Load()
	if resp := e.raw(t, "GET http://loop.test:"+port+"/ HTTP/1.1", "Host: loop.test", basic(narrow)); resp.StatusCode != 403 {
		t.Errorf("denied host: status %d, want 403", resp.StatusCode)
	}
	if res.calls.Load() != calls {
		t.Error("a denied host was resolved")
	}
}

// Without allow_private, loopback is refused, even for a task whose
// scope allows it.
func TestLoopbackRefusedByDefault(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{})
	tok := e.taskToken(t, "ssrf", identity.TierAutonomous, "http.request:*")
	for _, target := range []string{"http://" + up.addr() + "/", "http://localhost:" + fmt.Sprint(up.port()) + "/", "http://169.254.169.254/latest/meta-data/"} {
		resp := e.raw(t, "GET "+target+" HTTP/1.1", "Host: x", basic(tok))
		if resp.StatusCode != 403 {
			t.Errorf("GET %s: status %d, want 403", target, resp.StatusCode)
		}
	}
	if up.accepted.Load() != 0 {
		t.Error("loopback was reached without allow_private")
	}
}

func TestMalformedAndOversized(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "bad", identity.TierAutonomous, "http.request:*")
	many := []string{"GET http://" + up.addr() + "/ HTTP/1.1", "Host: " + up.addr(), basic(tok)}
	for i := range 150 {
		many = append(many, fmt.Sprintf("X-H%d: v", i))
	}
	for _, tc := range []struct {
		name   string
		lines  []string
		status int
	}{
		{"origin form", []string{"GET / HTTP/1.1", "Host: " + up.addr(), basic(tok)}, 400},
		{"https absolute", []string{"GET https://" + up.addr() + "/ HTTP/1.1", "Host: " + up.addr(), basic(tok)}, 400},
		{"user info", []string{"GET http://a@" + up.addr() + "/ HTTP/1.1", "Host: x", basic(tok)}, 400},
		{"traversal", []string{"GET http://" + up.addr() + "/a/%2E%2e/admin HTTP/1.1", "Host: x", basic(tok)}, 400},
		{"connect without port", []string{"CONNECT " + up.addr()[:strings.LastIndex(up.addr(), ":")] + " HTTP/1.1", "Host: x", basic(tok)}, 400},
		{"upgrade", []string{"GET http://" + up.addr() + "/ HTTP/1.1", "Host: x", "Connection: Upgrade", "Upgrade: websocket", basic(tok)}, 400},
		{"long target", []string{"GET http://" + up.addr() + "/" + strings.Repeat("a", 9000) + " HTTP/1.1", "Host: x", basic(tok)}, 414},
		{"header count", many, 431},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := e.rec.len()
			resp := e.raw(t, tc.lines...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d %s, want %d", resp.StatusCode, body(resp), tc.status)
			}
			oneDecision(t, e.rec.since(before), audit.DecisionDeny)
		})
	}
	// A header block past MaxHeaderBytes is refused by net/http before
	// anything else (nobody authenticated, nothing to record).
	resp := e.raw(t, "GET http://"+up.addr()+"/ HTTP/1.1", "Host: x", basic(tok), "X-Big: "+strings.Repeat("b", 40<<10))
	if resp.StatusCode != 431 {
		t.Errorf("huge header: status %d, want 431", resp.StatusCode)
	}
	if up.accepted.Load() != 0 {
		t.Error("a malformed request reached the upstream")
	}
}

// A task that has read restricted data sends nothing out (the default
// policy taint-no-exfiltration), through the proxy too.
func TestTaintStopsEgress(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback})
	tok := e.taskToken(t, "leaky", identity.TierAutonomous, "http.request:*")
	if resp, err := e.client(tok).Get("http://" + up.addr() + "/before"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("before the read: %v %v, want 200", resp, err)
	}
	// What the pipeline stores when the task reads restricted data (a
	// file.read through a hook, a resource through the MCP gateway).
	now := time.Now()
	if err := e.auth.Backend.RaiseTaint(context.Background(), task.ID(e.claims(t, tok).TaskID), task.SensitivityRestricted, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	e.pipe.Forget()
	before := e.rec.len()
	resp, err := e.client(tok).Get("http://" + up.addr() + "/after")
	if err != nil {
		t.Fatal(err)
	}
	if b := body(resp); resp.StatusCode != 403 || !strings.Contains(b, "restricted") {
		t.Errorf("after the read: status %d %s, want 403 (taint)", resp.StatusCode, b)
	}
	d := oneDecision(t, e.rec.since(before), audit.DecisionDeny)
	if !slices.ContainsFunc(d.Reasons, func(r audit.PolicyReason) bool { return r.Policy == "taint-no-exfiltration" }) {
		t.Errorf("reasons %+v, want taint-no-exfiltration", d.Reasons)
	}
	if n := up.accepted.Load(); n != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (before the read only)", n)
	}
}
