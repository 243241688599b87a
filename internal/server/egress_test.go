package server

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
)

// acceptCounter counts the connections a listener accepts.
type acceptCounter struct {
	net.Listener
	n atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

func countingServer(t *testing.T) (*httptest.Server, *acceptCounter) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream "+r.Host)
	}))
	l := &acceptCounter{Listener: srv.Listener}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, l
}

// mandate serve with egress.listen: an agent's task token, as its
// password in HTTP_PROXY, reaches the host its task allows and not the
// other; both decisions and the outcome are in the ledger.
func TestEgressProxyServed(t *testing.T) {
	allowed, _ := countingServer(t)
	denied, deniedAccepts := countingServer(t)
	allowedHost := strings.TrimPrefix(allowed.URL, "http://")

	cfg := testConfig(t)
	cfg.TrustDomain = "example.org"
	cfg.Egress.Listen = "127.0.0.1:0"
	cfg.Egress.AllowPrivate = []string{"127.0.0.0/8"} // the test servers are on loopback
	s, _ := startServer(t, cfg)
	if s.EgressAddr() == nil {
		t.Fatal("no egress listener")
	}

	_, tok := agentTask(t, s, harness.Registration{Name: "curl", Tier: string(identity.TierAutonomous), Entitle: []string{"http.request:*"}},
		harness.Task{Scope: "http.request:" + allowedHost, Purpose: "fetch"})
	proxy := &url.URL{Scheme: "http", Host: s.EgressAddr().String(), User: url.UserPassword("agent", tok)}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}

	if code, body := get(t, client, allowed.URL+"/a"); code != 200 || body != "upstream "+allowedHost {
		t.Errorf("allowed host: %d %q, want 200 from it", code, body)
	}
	if code, body := get(t, client, denied.URL+"/b"); code != 403 || !strings.Contains(body, "scope") {
		t.Errorf("denied host: %d %q, want 403 with the reason", code, body)
	}
	if n := deniedAccepts.n.Load(); n != 0 {
		t.Errorf("the denied host accepted %d connections", n)
	}

	evs, err := s.ledger.Events(t.Context(), audit.Query{Type: audit.TypeActionDecided})
	if err != nil {
		t.Fatal(err)
	}
	var allows, denies int
	for _, ev := range evs {
		if ev.Point == "egress" && ev.Decision == audit.DecisionAllow && ev.Resource == "host:"+allowedHost {
			allows++
		}
		if ev.Point == "egress" && ev.Decision == audit.DecisionDeny && ev.Resource == "host:"+strings.TrimPrefix(denied.URL, "http://") {
			denies++
		}
	}
	if allows != 1 || denies != 1 {
		t.Errorf("ledger has %d egress allows and %d denies, want 1 and 1", allows, denies)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, err := s.ledger.Events(t.Context(), audit.Query{Type: audit.TypeActionCompleted})
		if err != nil {
			t.Fatal(err)
		}
		if len(out) == 1 && out[0].Outcome != nil && out[0].Outcome.Status == "ok" && out[0].Point == "egress" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outcome events %+v, want one ok from egress", out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEgressConfigValidated(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"non-loopback without TLS", func(c *Config) { c.Egress.Listen = "0.0.0.0:3128" }, "egress.listen"},
		{"bad port", func(c *Config) { c.Egress.ConnectPorts = []string{"443", "0"} }, "egress.connect_ports[1]"},
		{"bad prefix", func(c *Config) { c.Egress.AllowPrivate = []string{"10.0.0.0/33"} }, "egress.allow_private[0]"},
		{"host bits", func(c *Config) { c.Egress.AllowPrivate = []string{"10.0.0.1/8"} }, "host bits"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t)
			c.complete(func(string) string { return "" })
			tc.mod(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	c := testConfig(t)
	c.complete(func(string) string { return "" })
	c.Egress = EgressConfig{Listen: "0.0.0.0:3128", ConnectPorts: []string{"443", "8443"}, AllowPrivate: []string{"10.0.0.0/8", "169.254.169.254"}}
	c.AllowInsecureListen = true
	if err := c.Validate(); err != nil {
		t.Errorf("Validate() = %v for a valid egress configuration", err)
	}
}
