package token

import (
	"context"
	"net/url"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
)

// resourceCases are resource indicators and whether CheckResource
// accepts them: the canonical form of a gateway's resource URLs, and the
// ways an attacker might spell one differently.
var resourceCases = []struct {
	s  string
	ok bool
}{
	{"https://mandate.test", true},
	{"https://mandate.test/mcp", true},
	{"https://mandate.test/mcp/go", true},
	{"http://127.0.0.1:8080/mcp/go", true},
	{"http://[::1]:8080/mcp/go", true},
	{"https://mandate.test/base/mcp/go-1_x", true},

	{"", false},
	{"/mcp/go", false},                                           // not absolute
	{"mandate.test/mcp/go", false},                               // no scheme
	{"ftp://mandate.test/mcp", false},                            // scheme
	{"HTTPS://mandate.test/mcp", false},                          // scheme case
	{"https://Mandate.test/mcp", false},                          // host case
	{"https://mandate.test/mcp/", false},                         // trailing slash
	{"https://mandate.test/", false},                             // trailing slash
	{"https://mandate.test/mcp//go", false},                      // empty segment
	{"https://mandate.test/mcp/go/../admin", false},              // dot segments
	{"https://mandate.test/mcp/./go", false},                     // dot segments
	{"https://mandate.test/mcp/go/..", false},                    // dot segments
	{"https://mandate.test/mcp%2fgo", false},                     // percent-encoding
	{"https://mandate.test/mcp/%67o", false},                     // percent-encoding of a letter
	{"https://mandate.test/mcp?x=1", false},                      // query
	{"https://mandate.test/mcp?", false},                         // empty query
	{"https://mandate.test/mcp#go", false},                       // fragment
	{"https://mandate.test/mcp#", false},                         // empty fragment
	{"https://user@mandate.test/mcp", false},                     // user info
	{"https://mandate.test:443/mcp", false},                      // default port
	{"http://mandate.test:80/mcp", false},                        // default port
	{"https://mandate.test:/mcp", false},                         // empty port
	{"https://mandate.test/mcp go", false},                       // space
	{"https://mandate.test/mcp\\go", false},                      // backslash
	{"https://mandate.test/mcp/go\x00", false},                   // control
	{"https://mandate.test/mcp/gö", false},                       // non-ASCII
	{"https:///mcp", false},                                      // no host
	{"https:mandate.test/mcp", false},                            // opaque
	{"https://mandate.test/mcp/[go]", false},                     // brackets outside the host
	{"https://mandate.test" + strings.Repeat("/a", 1100), false}, // too long
}

func TestCheckResource(t *testing.T) {
	t.Parallel()
	for _, tc := range resourceCases {
		if err := CheckResource(tc.s); (err == nil) != tc.ok {
			t.Errorf("CheckResource(%q) = %v, want ok %v", tc.s, err, tc.ok)
		}
	}
}

// FuzzCheckResource: what CheckResource accepts is an absolute http(s)
// URL that round-trips through url.Parse unchanged, with no query,
// fragment, dot segment or trailing slash.
func FuzzCheckResource(f *testing.F) {
	for _, tc := range resourceCases {
		f.Add(tc.s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if CheckResource(s) != nil {
			return
		}
		u, err := url.Parse(s)
		if err != nil || u.String() != s || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
			u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.HasSuffix(s, "/") ||
			strings.Contains(u.Path, "/./") || strings.Contains(u.Path, "/../") || strings.HasSuffix(u.Path, "/..") || strings.HasSuffix(u.Path, "/.") {
			t.Fatalf("CheckResource(%q) accepted a resource that is not canonical (%+v, %v)", s, u, err)
		}
	})
}

// TestExchangeResource: RFC 8707 on token exchange. A task token can be
// issued for a resource the server serves, named exactly; any other
// spelling of it, a prefix of it, a resource below it or another host is
// invalid_target, and recorded as a refusal.
func TestExchangeResource(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	tokA := f.agentToken(agentA)
	for _, res := range []string{
		testIssuer + "/mcp/go/../admin",
		testIssuer + "/mcp/go/",
		testIssuer + "/MCP/go",
		"https://MANDATE.test/mcp/go",
		testIssuer + "/mcp%2fgo",
		testIssuer + "/mcp/g",      // a prefix of a resource
		testIssuer + "/mcp/go/sub", // below a resource
		testIssuer + "/mcp/gopher", // a resource as a prefix
		testIssuer + "/mcp/go?x",
		testIssuer + "/mcp/go#x",
		"https://evil.test/mcp/go",
		testIssuer + "/oauth/token", // served by the server, not an audience
	} {
		_, err := f.srv.Token(context.Background(), startReq(tokA, func(r *TokenRequest) { r.Resource = res }))
		if oauthCode(err) != CodeInvalidTarget {
			t.Errorf("resource %q: Token = %v, want invalid_target", res, err)
			continue
		}
		evs := f.rec.take()
		if len(evs) != 1 || evs[0].Type != audit.TypeTokenRefused || evs[0].Details["error"] != CodeInvalidTarget {
			t.Errorf("resource %q: events %+v, want one token.refused with invalid_target", res, evs)
		}
	}
	for _, res := range []string{testIssuer + "/mcp/go", testIssuer + "/mcp", testIssuer} {
		resp, err := f.srv.Token(context.Background(), startReq(tokA, func(r *TokenRequest) { r.Resource = res }))
		if err != nil {
			t.Fatalf("resource %q: %v", res, err)
		}
		c := f.claimsOf(resp.AccessToken)
		if len(c.Audience) != 1 || c.Audience[0] != res {
			t.Errorf("resource %q: aud %q", res, c.Audience)
		}
		// The token verifies for its own audience only.
		if _, err := f.srv.Verifier().Verify(context.Background(), VerifyRequest{Token: resp.AccessToken, Audiences: []string{res}}); err != nil {
			t.Errorf("resource %q: Verify for its audience: %v", res, err)
		}
		other := testIssuer + "/mcp/other"
		if _, err := f.srv.Verifier().Verify(context.Background(), VerifyRequest{Token: resp.AccessToken, Audiences: []string{other}}); oauthCode(err) != CodeInvalidToken {
			t.Errorf("resource %q: Verify for %q = %v, want invalid_token", res, other, err)
		}
		// A task token for a resource renews, for the same resource with
		// resource named again, else for the issuer.
		for _, again := range []string{res, ""} {
			renewed, err := f.srv.Token(context.Background(), exchange(resp.AccessToken, func(r *TokenRequest) { r.Resource = again }))
			want := again
			if want == "" {
				want = testIssuer
			}
			if err != nil {
				t.Errorf("resource %q: renew with resource %q: %v", res, again, err)
			} else if c := f.claimsOf(renewed.AccessToken); len(c.Audience) != 1 || c.Audience[0] != want {
				t.Errorf("resource %q: renewed with resource %q: aud %q, want %q", res, again, c.Audience, want)
			}
		}
		f.rec.take()
	}
}

// TestServerAudiencesCanonical: the server refuses to start with an
// audience that is not a canonical resource, or one listed twice.
func TestServerAudiencesCanonical(t *testing.T) {
	t.Parallel()
	for _, auds := range [][]string{
		{testIssuer, testIssuer + "/mcp/"},
		{testIssuer, testIssuer + "/mcp/a/../b"},
		{testIssuer, "https://Mandate.test/mcp"},
		{testIssuer, testIssuer + "/mcp", testIssuer + "/mcp"},
	} {
		st := newMemStore()
		_, err := NewServer(context.Background(), Config{
			Issuer: testIssuer, TrustDomain: testTD, Identities: st, Tasks: st, Entitlements: st, Tokens: st,
			Audit: &memRecorder{}, Sealer: sealtest.Keyring(), Audiences: auds,
		})
		if err == nil {
			t.Errorf("NewServer with audiences %q: no error", auds)
		}
	}
}
