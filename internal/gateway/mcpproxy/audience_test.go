package mcpproxy_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/policy"
)

// TestResources: the resource identifiers the gateway advertises in its
// metadata are the ones Resources lists (what the authorization server
// issues tokens for), canonical, aggregated endpoint first.
func TestResources(t *testing.T) {
	t.Parallel()
	got := mcpproxy.Resources(mcpproxy.Config{PublicURL: "https://m.test/", Upstreams: []mcpproxy.Upstream{{Name: "b"}, {Name: "a"}}})
	want := []string{"https://m.test/mcp", "https://m.test/mcp/a", "https://m.test/mcp/b"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("Resources = %q, want %q", got, want)
	}
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "a", URL: up.url}, {Name: "b", URL: up.url}}, nil)
	for _, res := range mcpproxy.Resources(mcpproxy.Config{PublicURL: e.srv.URL, Upstreams: e.ups}) {
		path := strings.TrimPrefix(res, e.srv.URL)
		resp, err := http.Get(e.srv.URL + "/.well-known/oauth-protected-resource" + path)
		if err != nil {
			t.Fatal(err)
		}
		var md struct{ Resource string }
		err = json.NewDecoder(resp.Body).Decode(&md)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if md.Resource != res {
			t.Errorf("metadata of %s names resource %q, want %q", path, md.Resource, res)
		}
	}
}

// TestTokenAudience: RFC 8707 at the gateway, with real tokens. A task
// token issued for one upstream's endpoint works there and is refused
// (401 invalid_token, recorded) at another upstream's and at the
// aggregated endpoint; one for the aggregated endpoint works only there;
// one issued for the issuer (no resource indicator) works everywhere.
func TestTokenAudience(t *testing.T) {
	up := newGoUpstream(t)
	e := newGovernedEnv(t, []mcpproxy.Upstream{{Name: "a", URL: up.url}, {Name: "b", URL: up.url}}, policy.ClassifierConfig{}, access.Limits{}, nil)
	ag, err := e.auth.Register(t.Context(), "aud", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	const scope = "tool.call:a/* tool.call:b/*"
	mint := func(resource string) string {
		tok, err := e.auth.TaskTokenFor(t.Context(), ag, scope, "audience", resource, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	forA, forAll, forIssuer := mint(e.srv.URL+"/mcp/a"), mint(e.srv.URL+"/mcp"), mint("")
	for _, tc := range []struct {
		name, tok, path string
		ok              bool
	}{
		{"a at a", forA, "/mcp/a", true},
		{"a at b", forA, "/mcp/b", false},
		{"a at the aggregated endpoint", forA, "/mcp", false},
		{"aggregated at the aggregated endpoint", forAll, "/mcp", true},
		{"aggregated at a", forAll, "/mcp/a", false},
		{"issuer at a", forIssuer, "/mcp/a", true},
		{"issuer at b", forIssuer, "/mcp/b", true},
		{"issuer at the aggregated endpoint", forIssuer, "/mcp", true},
	} {
		before := len(authRefusals(e))
		resp, body := initialize(t, e, tc.path, http.Header{"Authorization": {"Bearer " + tc.tok}})
		if tc.ok {
			if resp.StatusCode != 200 || len(authRefusals(e)) != before {
				t.Errorf("%s: status %d %s, want 200 and no refusal", tc.name, resp.StatusCode, body)
			}
			continue
		}
		if resp.StatusCode != 401 {
			t.Errorf("%s: status %d %s, want 401", tc.name, resp.StatusCode, body)
			continue
		}
		if ch := resp.Header.Values("WWW-Authenticate"); len(ch) != 2 || !strings.HasSuffix(ch[0], `, error="invalid_token"`) {
			t.Errorf("%s: WWW-Authenticate %q, want a Bearer invalid_token challenge", tc.name, ch)
		}
		evs := authRefusals(e)
		if len(evs) != before+1 {
			t.Errorf("%s: %d refusals recorded, want 1", tc.name, len(evs)-before)
			continue
		}
		if ev := evs[len(evs)-1]; ev.Resource != e.srv.URL+tc.path || !strings.Contains(ev.Reason, "audience") {
			t.Errorf("%s: refusal %+v, want the endpoint and a reason naming the audience", tc.name, ev)
		}
	}
}

// TestChallenges: the exact WWW-Authenticate challenges of each refusal
// (RFC 6750 §3, RFC 9728 §5.1, RFC 9449 §7.1): resource_metadata and the
// endpoint's scope on both schemes; no error code without a credential;
// invalid_token on the Bearer challenge for a refused Bearer token; on
// the DPoP challenge, with algs, for a DPoP-bound token sent as Bearer
// (invalid_token) and for a proof that fails (invalid_dpop_proof).
func TestChallenges(t *testing.T) {
	up := newGoUpstream(t)
	e := newGovernedEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, policy.ClassifierConfig{}, access.Limits{}, nil)
	ag, err := e.auth.Register(t.Context(), "challenged", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	bound, err := e.auth.TaskTokenDPoP(t.Context(), ag, "tool.call:go/*", "challenges", key)
	if err != nil {
		t.Fatal(err)
	}
	proof := func(u string) string {
		p, err := mcpproxytest.DPoPProof(key, "POST", u, bound)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	meta := func(path string) string {
		return `resource_metadata="` + e.srv.URL + `/.well-known/oauth-protected-resource` + path + `"`
	}
	goParams := meta("/mcp/go") + `, scope="tool.call:go/* prompt.get:go/*"`
	allParams := meta("/mcp") + `, scope="tool.call prompt.get resource.read"`
	for _, tc := range []struct {
		name, path string
		h          http.Header
		want       []string
	}{
		{"no credential", "/mcp/go", nil,
			[]string{"Bearer " + goParams, "DPoP " + goParams + `, algs="EdDSA ES256"`}},
		{"no credential, aggregated", "/mcp", nil,
			[]string{"Bearer " + allParams, "DPoP " + allParams + `, algs="EdDSA ES256"`}},
		{"invalid bearer token", "/mcp/go", http.Header{"Authorization": {"Bearer not-a-token"}},
			[]string{"Bearer " + goParams + `, error="invalid_token"`, "DPoP " + goParams + `, algs="EdDSA ES256"`}},
		{"malformed header", "/mcp/go", http.Header{"Authorization": {"Basic dXNlcjpwYXNz"}},
			[]string{"Bearer " + goParams + `, error="invalid_token"`, "DPoP " + goParams + `, algs="EdDSA ES256"`}},
		{"DPoP-bound token as Bearer", "/mcp/go", http.Header{"Authorization": {"Bearer " + bound}, "Dpop": {proof(e.srv.URL + "/mcp/go")}},
			[]string{"Bearer " + goParams, "DPoP " + goParams + `, error="invalid_token", algs="EdDSA ES256"`}},
		{"DPoP without proof", "/mcp/go", http.Header{"Authorization": {"DPoP " + bound}},
			[]string{"Bearer " + goParams, "DPoP " + goParams + `, error="invalid_token", algs="EdDSA ES256"`}},
		{"DPoP proof for another URL", "/mcp/go", http.Header{"Authorization": {"DPoP " + bound}, "Dpop": {proof(e.srv.URL + "/mcp/other")}},
			[]string{"Bearer " + goParams, "DPoP " + goParams + `, error="invalid_dpop_proof", algs="EdDSA ES256"`}},
	} {
		resp, body := initialize(t, e, tc.path, tc.h)
		got := resp.Header.Values("WWW-Authenticate")
		if resp.StatusCode != 401 || strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%s: %d %s\nWWW-Authenticate %q\nwant %q", tc.name, resp.StatusCode, body, got, tc.want)
		}
	}
}
