package egress_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/url"
	"runtime"
	"testing"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
)

// headerRT adds a header to every request (the agent's placeholder).
type headerRT struct {
	rt          http.RoundTripper
	name, value string
}

func (h headerRT) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set(h.name, h.value)
	return h.rt.RoundTrip(r)
}

// BenchmarkEgressInterceptPaced is BenchmarkEgressPaced for HTTPS: GETs
// at 1,000 per second to a loopback TLS server, direct and through an
// intercepting proxy (TLS terminated with mandate's CA, each request
// decided by the real pipeline and recorded in the SQLite ledger, then
// sent over verified TLS), in the same run; intercepted-injected also
// replaces a placeholder with a leased secret (the lease reused) and
// scrubs the response. Keep-alive clients: the TLS handshakes happen
// before the timer starts, as an agent's long-lived client has them.
func BenchmarkEgressInterceptPaced(b *testing.B) {
	up := newUpstream(b, true)
	roots := x509.NewCertPool()
	roots.AddCert(up.srv.Certificate())
	o := envOpts{allowPrivate: loopback, connectPorts: []uint16{up.port()}, intercept: []string{"127.0.0.1"}, upstreamRoots: roots,
		secrets: true, classifier: policy.ClassifierConfig{Risks: []policy.RiskRule{
			{Match: "secret.use:gh_token", Risk: policy.RiskRead}, {Match: "http.request:*", Risk: policy.RiskRead}}}}
	e := newEnv(b, o)
	if _, _, err := e.broker.Put(context.Background(), "admin", secrets.PutRequest{Name: "gh_token", Value: []byte(ghValue),
		Deliver: []secrets.Target{{Host: up.addr()}}}); err != nil {
		b.Fatal(err)
	}
	tok := e.taskToken(b, "bench", identity.TierSupervised, "http.request:"+up.addr()+" secret.use:gh_token")
	n := 16 * runtime.GOMAXPROCS(0)
	transport := func(proxy string, roots *x509.CertPool) *http.Transport {
		tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, TLSClientConfig: &tls.Config{RootCAs: roots}}
		if proxy != "" {
			tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: proxy, User: url.UserPassword("agent", tok)})
		}
		return tr
	}
	direct := &http.Client{Transport: transport("", roots)}
	intercepted := &http.Client{Transport: transport(e.proxy, e.caPool(b))}
	injected := &http.Client{Transport: headerRT{transport(e.proxy, e.caPool(b)), "Authorization", "Bearer [secret:gh_token]"}}
	target := "https://" + up.addr() + "/bench"
	for _, bc := range []struct {
		name string
		c    *http.Client
	}{{"direct-tls", direct}, {"intercepted", intercepted}, {"intercepted-injected", injected}} {
		b.Run(bc.name, func(b *testing.B) { runPaced(b, bc.c, target) })
		bc.c.CloseIdleConnections()
	}
	if last := up.lastRequest(); last.Header.Get("Authorization") != "Bearer "+ghValue {
		b.Fatalf("the injected run did not inject: %q", last.Header.Get("Authorization"))
	}
}
