package mcpproxy_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// recorder is an audit.Recorder that keeps events in memory and can be
// made to fail.
type recorder struct {
	mu   sync.Mutex
	evs  []audit.Event
	fail bool
}

func (r *recorder) Record(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail {
		return audit.ErrUnavailable
	}
	r.evs = append(r.evs, ev)
	return nil
}

// all returns every event recorded.
func (r *recorder) all() []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]audit.Event(nil), r.evs...)
}

func (r *recorder) events(typ audit.Type) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, e := range r.evs {
		if typ == "" || e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

// waitEvents waits (briefly) until the recorder holds n events of type
// typ, and returns them. Outcomes of raw-relayed calls are recorded just
// after the answer goes out, so a test may look before they are in.
func (r *recorder) waitEvents(typ audit.Type, n int) []audit.Event {
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs := r.events(typ)
		if len(evs) >= n || time.Now().After(deadline) {
			return evs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// env is a gateway in front of upstreams, with a real authority. newEnv
// decides with mcpproxytest.Decider (scope and tier only): for unit tests
// of the gateway's own behaviour (relay, pins, sessions); newGovernedEnv
// decides as mandate serve does.
type env struct {
	auth *mcpproxytest.Authority
	gw   *mcpproxy.Gateway
	srv  *httptest.Server
	rec  *recorder
	ups  []mcpproxy.Upstream
}

func newEnv(t testing.TB, ups []mcpproxy.Upstream, mod func(*mcpproxy.Config)) *env {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	a, err := mcpproxytest.NewAuthority(ctx, t.TempDir(), base, mcpproxy.Resources(mcpproxy.Config{PublicURL: base, Upstreams: ups})...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	rec := &recorder{}
	return startGateway(t, a, rec, srv, ups, mod)
}

// newGovernedEnv is newEnv with the access pipeline (the shipped default
// policies, the classifier cls, the limits of point "mcp") as the
// gateway's Authenticator and Decider, as mandate serve wires it.
func newGovernedEnv(t testing.TB, ups []mcpproxy.Upstream, cls policy.ClassifierConfig, limits access.Limits, mod func(*mcpproxy.Config)) *env {
	t.Helper()
	ctx := context.Background()
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	a, err := mcpproxytest.NewAuthority(ctx, t.TempDir(), base, mcpproxy.Resources(mcpproxy.Config{PublicURL: base, Upstreams: ups})...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	rec := &recorder{}
	classifier, err := policy.NewClassifier(cls)
	if err != nil {
		t.Fatal(err)
	}
	p, err := a.Pipeline(access.Config{Recorder: tee{rec, a.Audit}, Classifier: classifier,
		Limits: map[string]access.Limits{mcpproxy.Point: limits}})
	if err != nil {
		t.Fatal(err)
	}
	governed := mcpproxy.NewPipeline(p)
	return startGateway(t, a, rec, srv, ups, func(c *mcpproxy.Config) {
		c.Authenticator, c.Decider = governed, governed
		if mod != nil {
			mod(c)
		}
	})
}

// newEnvSharing starts a second gateway with the same authority (and so
// the same pins) and upstreams as e, as after a restart.
func newEnvSharing(t testing.TB, e *env) *env {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	return startGateway(t, e.auth, &recorder{}, srv, e.ups, func(c *mcpproxy.Config) {
		c.PublicURL = e.auth.Issuer
	})
}

func startGateway(t testing.TB, a *mcpproxytest.Authority, rec *recorder, srv *httptest.Server, ups []mcpproxy.Upstream, mod func(*mcpproxy.Config)) *env {
	t.Helper()
	base := a.Issuer
	auth, err := a.Authenticator(tee{rec, a.Audit})
	if err != nil {
		t.Fatal(err)
	}
	cfg := mcpproxy.Config{
		Upstreams:            ups,
		Authenticator:        auth,
		Decider:              mcpproxytest.Decider{},
		Audit:                tee{rec, a.Audit},
		PublicURL:            base,
		AuthorizationServers: []string{base},
	}
	if mod != nil {
		mod(&cfg)
	}
	if cfg.Pins == nil {
		// Pins in the authority's SQLite store, as mandate serve keeps
		// them, recorded as the gateway records.
		cfg.Pins = toolpin.New(toolpin.Config{Store: a.Backend, Audit: cfg.Audit})
	}
	gw, err := mcpproxy.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = gw
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		gw.Close()
	})
	return &env{auth: a, gw: gw, srv: srv, rec: rec, ups: ups}
}

// postMessage POSTs one JSON-RPC message to the endpoint path as a
// client holding token, on session (none if ""), and returns the answer's
// status and body.
func postMessage(t testing.TB, e *env, path, token, session, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
	}
	resp, err := bearerClient(token).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// bearerClient is an HTTP client that sends token on every request.
func bearerClient(token string) *http.Client {
	return &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultTransport.RoundTrip(r)
	})}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// tee records into the in-memory recorder and the authority's SQLite
// ledger.
type tee []audit.Recorder

func (t tee) Record(ctx context.Context, ev audit.Event) error {
	for _, r := range t {
		if err := r.Record(ctx, ev); err != nil {
			return err
		}
	}
	return nil
}

// waitGoroutines fails t unless the goroutines fall back to within a few
// of base (the count before the test) within 5 seconds.
func waitGoroutines(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > base+5 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := runtime.NumGoroutine(); n > base+5 {
		buf := make([]byte, 1<<20)
		t.Errorf("%d goroutines after Close, %d before:\n%s", n, base, buf[:runtime.Stack(buf, true)])
	}
}
