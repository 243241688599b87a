package egress_test

import (
	"context"
	"net/http"
	"net/url"
	"runtime"
	"testing"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
)

// BenchmarkEgressInjectedPaced is BenchmarkEgressPaced for plain HTTP
// requests that carry a secret placeholder: each is decided, the
// placeholder replaced with the task's leased secret (the lease reused
// after the first request), the injection recorded and the response
// scrubbed. proxied is the same proxy without a placeholder.
func BenchmarkEgressInjectedPaced(b *testing.B) {
	up := newUpstream(b, false)
	e := newEnv(b, envOpts{allowPrivate: loopback, secrets: true, classifier: policy.ClassifierConfig{Risks: []policy.RiskRule{
		{Match: "secret.use:gh_token", Risk: policy.RiskRead}, {Match: "http.request:*", Risk: policy.RiskRead}}}})
	if _, _, err := e.broker.Put(context.Background(), "admin", secrets.PutRequest{Name: "gh_token", Value: []byte(ghValue),
		Deliver: []secrets.Target{{Host: up.addr()}}}); err != nil {
		b.Fatal(err)
	}
	tok := e.taskToken(b, "bench", identity.TierSupervised, "http.request:"+up.addr()+" secret.use:gh_token")
	n := 16 * runtime.GOMAXPROCS(0)
	pu := &url.URL{Scheme: "http", Host: e.proxy, User: url.UserPassword("agent", tok)}
	tr := func() *http.Transport {
		return &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConns: n, MaxIdleConnsPerHost: n}
	}
	proxied := &http.Client{Transport: tr()}
	injected := &http.Client{Transport: headerRT{tr(), "Authorization", "Bearer [secret:gh_token]"}}
	target := "http://" + up.addr() + "/bench"
	for _, bc := range []struct {
		name string
		c    *http.Client
	}{{"proxied", proxied}, {"proxied-injected", injected}} {
		b.Run(bc.name, func(b *testing.B) { runPaced(b, bc.c, target) })
		bc.c.CloseIdleConnections()
	}
	if last := up.lastRequest(); last.Header.Get("Authorization") != "Bearer "+ghValue {
		b.Fatalf("the injected run did not inject: %q", last.Header.Get("Authorization"))
	}
}
