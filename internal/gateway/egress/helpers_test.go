package egress_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/egress"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/token"
)

// recorder keeps the events in memory besides the real ledger.
type recorder struct {
	next audit.Recorder
	mu   sync.Mutex
	evs  []audit.Event
}

func (r *recorder) Record(ctx context.Context, ev audit.Event) error {
	if err := r.next.Record(ctx, ev); err != nil {
		return err
	}
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	return nil
}

type discard struct{}

func (discard) Record(context.Context, audit.Event) error { return nil }

// since returns the events recorded at index n and after.
func (r *recorder) since(n int) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs[n:])
}

func (r *recorder) len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.evs)
}

// env is a proxy over a real authorization server, pipeline (the shipped
// default policies) and ledger.
type env struct {
	auth   *mcpproxytest.Authority
	rec    *recorder
	pipe   *access.Pipeline
	gw     *egress.Gateway
	proxy  string // host:port of the proxy
	ca     *egress.CA
	broker *secrets.Broker
}

type envOpts struct {
	allowPrivate []string
	connectPorts []uint16
	resolver     egress.Resolver
	classifier   policy.ClassifierConfig
	// noLedger records in memory only (benchmarks that separate the
	// proxy's cost from the durable ledger's).
	noLedger bool
	// intercept are egress.intercept's patterns; the CA is made in a
	// temporary directory. upstreamRoots verify intercepted hosts.
	intercept     []string
	upstreamRoots *x509.CertPool
	// policy is Cedar added to the shipped default policies.
	policy string
	// secrets wires a secrets broker over the authority's store.
	secrets bool
}

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	a, err := mcpproxytest.NewAuthority(ctx, t.TempDir(), "https://mandate.test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	rec := &recorder{next: a.Audit}
	if o.noLedger {
		rec.next = discard{}
	}
	cls, err := policy.NewClassifier(o.classifier)
	if err != nil {
		t.Fatal(err)
	}
	acfg := access.Config{Recorder: rec, Classifier: cls}
	if o.policy != "" {
		set, err := policy.Compile(append(policy.DefaultSources(), policy.Source{Name: "test.cedar", Text: []byte(o.policy)}))
		if err != nil {
			t.Fatal(err)
		}
		acfg.Engine = policy.NewEngine(set, nil)
	}
	p, err := a.Pipeline(acfg)
	if err != nil {
		t.Fatal(err)
	}
	var allow []netip.Prefix
	for _, s := range o.allowPrivate {
		allow = append(allow, netip.MustParsePrefix(s))
	}
	cfg := egress.Config{Pipeline: p, Audit: rec, Resolver: o.resolver, AllowPrivate: allow, ConnectPorts: o.connectPorts, UpstreamRoots: o.upstreamRoots}
	var ca *egress.CA
	if len(o.intercept) > 0 {
		if cfg.Intercept, err = egress.ParseInterceptPatterns(o.intercept); err != nil {
			t.Fatal(err)
		}
		if ca, _, err = egress.LoadCA(t.TempDir(), sealtest.Keyring(), cfg.Intercept.Constraints(), time.Now()); err != nil {
			t.Fatal(err)
		}
		cfg.CA = ca
	}
	var broker *secrets.Broker
	if o.secrets {
		broker, err = secrets.New(secrets.Config{Store: a.Backend, Tasks: a.Backend, Sealer: sealtest.Keyring(), Decider: p,
			Recorder: rec, Digester: a.Audit.Redactor()})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Secrets, cfg.Digester = broker, a.Audit.Redactor()
	}
	gw, err := egress.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- gw.Serve(ln) }()
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := gw.Shutdown(sctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; err != http.ErrServerClosed {
			t.Errorf("Serve = %v, want http.ErrServerClosed", err)
		}
	})
	return &env{auth: a, rec: rec, pipe: p, gw: gw, proxy: ln.Addr().String(), ca: ca, broker: broker}
}

// tlsClient is a client through the proxy with tok that trusts roots
// (mandate's CA, for intercepted hosts), one connection per request.
func (e *env) tlsClient(tok string, roots *x509.CertPool) *http.Client {
	c := e.client(tok)
	c.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: roots}
	return c
}

// caPool is a pool of mandate's CA, as a client trusting `mandate egress
// ca` has it.
func (e *env) caPool(t testing.TB) *x509.CertPool {
	t.Helper()
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(e.ca.CertPEM()) {
		t.Fatal("the CA's PEM does not parse")
	}
	return p
}

// taskToken registers an agent of tier and starts a task with scope.
func (e *env) taskToken(t testing.TB, name string, tier identity.Tier, scope string) string {
	t.Helper()
	ag, err := e.auth.Register(context.Background(), name, tier)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.auth.TaskToken(context.Background(), ag, scope, "egress test")
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// claims returns the verified claims of a task token.
func (e *env) claims(t testing.TB, tok string) *token.Claims {
	t.Helper()
	c, err := e.auth.Tokens.Verifier().Verify(context.Background(), token.VerifyRequest{Token: tok, Use: token.UseTask})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// expiredToken signs a task token for tok's task that expired a minute
// ago.
func (e *env) expiredToken(t testing.TB, tok string) string {
	t.Helper()
	c := *e.claims(t, tok)
	past := time.Now().Add(-time.Minute)
	c.ID, c.Expiry, c.IssuedAt, c.NotBefore = "expired-"+c.ID, jwt.NewNumericDate(past), jwt.NewNumericDate(past.Add(-5*time.Minute)), nil
	s, err := e.auth.Tokens.Keyring().Sign(&c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// client is an HTTP client that goes through the proxy with tok (none if
// empty) as the password, as HTTP_PROXY=http://agent:tok@proxy makes Go's.
func (e *env) client(tok string, rootCAs ...*http.Transport) *http.Client {
	u := &url.URL{Scheme: "http", Host: e.proxy}
	if tok != "" {
		u.User = url.UserPassword("agent", tok)
	}
	tr := &http.Transport{Proxy: http.ProxyURL(u), DisableKeepAlives: true}
	if len(rootCAs) > 0 {
		tr.TLSClientConfig = rootCAs[0].TLSClientConfig
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// raw sends a request head (lines without the final empty line) to the
// proxy and returns its response.
func (e *env) raw(t testing.TB, lines ...string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", e.proxy, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, strings.Join(lines, "\r\n")+"\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: strings.Fields(lines[0])[0]})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body = io.NopCloser(strings.NewReader(string(b)))
	return resp
}

func basic(tok string) string {
	return "Proxy-Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte("agent:"+tok))
}

func body(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// upstream is a loopback test server that counts the connections it
// accepts and keeps the last request's headers.
type upstream struct {
	srv      *httptest.Server
	accepted atomic.Int64
	mu       sync.Mutex
	last     *http.Request
}

func newUpstream(t testing.TB, tlsOn bool) *upstream {
	t.Helper()
	u := &upstream{}
	u.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.mu.Lock()
		u.last = r.Clone(context.Background())
		u.mu.Unlock()
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Connection", "X-Hop")
		w.Header().Set("X-Hop", "secret")
		fmt.Fprintf(w, "hello from %s", r.Host)
	}))
	u.srv.Listener = &countingListener{Listener: u.srv.Listener, n: &u.accepted}
	if tlsOn {
		u.srv.StartTLS()
	} else {
		u.srv.Start()
	}
	t.Cleanup(u.srv.Close)
	return u
}

func (u *upstream) addr() string { return u.srv.Listener.Addr().String() }

func (u *upstream) port() uint16 {
	_, p, _ := net.SplitHostPort(u.addr())
	n, _ := strconv.Atoi(p)
	return uint16(n)
}

func (u *upstream) lastRequest() *http.Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// eventsOf returns the events of type typ among evs.
func eventsOf(evs []audit.Event, typ audit.Type) []audit.Event {
	var out []audit.Event
	for _, ev := range evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// oneDecision asserts exactly one action.decided among evs, at point
// egress with decision want, and returns it.
func oneDecision(t testing.TB, evs []audit.Event, want string) audit.Event {
	t.Helper()
	ds := eventsOf(evs, audit.TypeActionDecided)
	if len(ds) != 1 {
		t.Fatalf("%d action.decided events, want 1: %+v", len(ds), evs)
	}
	d := ds[0]
	if d.Decision != want || d.Point != egress.Point || d.Action != policy.ActionHTTPRequest {
		t.Fatalf("decision event = %+v, want decision %s at point egress for http.request", d, want)
	}
	return d
}
