package web

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// testIdP is an OpenID provider for the relying party's unit tests: it
// serves discovery, JWKS and a token endpoint whose ID token each test
// shapes (the end-to-end test uses a certified provider instead).
type testIdP struct {
	srv  *httptest.Server
	key  *ecdsa.PrivateKey
	mu   sync.Mutex
	mint func(claims map[string]any) (string, *ecdsa.PrivateKey)
	// nonce is what the relying party sent.
	nonce string
}

func newTestIdP(t *testing.T) *testIdP {
	p := &testIdP{}
	p.key, _ = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	mux := http.NewServeMux()
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	iss := p.srv.URL
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(map[string]any{"issuer": iss, "authorization_endpoint": iss + "/auth", "token_endpoint": iss + "/token",
			"jwks_uri": iss + "/jwks", "id_token_signing_alg_values_supported": []string{"ES256"}, "authorization_response_iss_parameter_supported": true})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "ES256", Use: "sig"}}})
	})
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		_ = r.ParseForm()
		if r.PostForm.Get("code_verifier") == "" || r.PostForm.Get("code") != "good-code" {
			http.Error(w, `{"error":"invalid_grant"}`, 400)
			return
		}
		p.mu.Lock()
		claims := map[string]any{"iss": iss, "sub": "alice-sub", "aud": "mandate-rp", "exp": time.Now().Add(time.Minute).Unix(),
			"iat": time.Now().Unix(), "nonce": p.nonce, "email": "alice@example.com", "email_verified": true, "groups": []string{"dev"}}
		raw, key := p.mint(claims)
		p.mu.Unlock()
		if key == nil {
			key = p.key
		}
		if raw == "" {
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: key}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
			raw, _ = jwt.Signed(s).Claims(claims).Serialize()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "id_token": raw, "expires_in": 60})
	})
	return p
}

type recorder struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (r *recorder) Record(_ context.Context, ev audit.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) count(typ audit.Type) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

func newSigninFixture(t *testing.T) (*testIdP, *httptest.Server, *recorder) {
	p := newTestIdP(t)
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	rec := &recorder{}
	mux := http.NewServeMux()
	front := httptest.NewServer(mux)
	t.Cleanup(front.Close)
	s, err := New(Config{People: db, Audit: rec, PublicURL: front.URL,
		IdPs: []IdP{{Name: "corp", Issuer: p.srv.URL, ClientID: "mandate-rp", ClientSecret: "s3cret"}}})
	if err != nil {
		t.Fatal(err)
	}
	s.Register(mux)
	return p, front, rec
}

// start begins a sign-in in a fresh browser and returns it with the
// state the relying party sent the IdP.
func start(t *testing.T, p *testIdP, front *httptest.Server) (*http.Client, string) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Get(front.URL + "/signin/oidc/corp?next=/me")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, _ := url.Parse(resp.Header.Get("Location"))
	q := loc.Query()
	if resp.StatusCode != http.StatusFound || q.Get("code_challenge_method") != "S256" || q.Get("nonce") == "" || q.Get("state") == "" {
		t.Fatalf("sign-in start = %d %s", resp.StatusCode, loc)
	}
	p.mu.Lock()
	p.nonce = q.Get("nonce")
	p.mu.Unlock()
	return c, q.Get("state")
}

func callback(t *testing.T, c *http.Client, front *httptest.Server, q url.Values) *http.Response {
	resp, err := c.Get(front.URL + "/signin/oidc/corp/callback?" + q.Encode())
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

func TestOIDCSignIn(t *testing.T) {
	p, front, rec := newSigninFixture(t)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	type mint = func(map[string]any) (string, *ecdsa.PrivateKey)
	with := func(k string, v any) mint {
		return func(c map[string]any) (string, *ecdsa.PrivateKey) {
			if v == nil {
				delete(c, k)
			} else {
				c[k] = v
			}
			return "", nil
		}
	}
	ok := func(map[string]any) (string, *ecdsa.PrivateKey) { return "", nil }
	cases := []struct {
		name  string
		mint  mint
		query func(state string) url.Values
		want  int
	}{
		{"good", ok, nil, http.StatusSeeOther},
		{"missing state", ok, func(string) url.Values { return url.Values{"code": {"good-code"}, "iss": {p.srv.URL}} }, 400},
		{"wrong state", ok, func(string) url.Values { return url.Values{"code": {"good-code"}, "state": {"x"}, "iss": {p.srv.URL}} }, 400},
		{"issuer mix-up", ok, func(s string) url.Values {
			return url.Values{"code": {"good-code"}, "state": {s}, "iss": {"https://attacker.example"}}
		}, 400},
		{"iss missing from a provider that sends it", ok, func(s string) url.Values { return url.Values{"code": {"good-code"}, "state": {s}} }, 400},
		{"bad signature", func(map[string]any) (string, *ecdsa.PrivateKey) { return "", other }, nil, 403},
		{"wrong audience", with("aud", "someone-else"), nil, 403},
		{"expired", with("exp", time.Now().Add(-time.Hour).Unix()), nil, 403},
		{"wrong issuer in the token", with("iss", "https://attacker.example"), nil, 403},
		{"missing nonce", with("nonce", nil), nil, 403},
		{"wrong nonce", with("nonce", "replayed-nonce"), nil, 403},
		{"email not verified", with("email_verified", false), nil, 403},
		{"alg none", func(c map[string]any) (string, *ecdsa.PrivateKey) {
			h, _ := json.Marshal(map[string]any{"alg": "none"})
			b, _ := json.Marshal(c)
			return b64(h) + "." + b64(b) + ".", nil
		}, nil, 403},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p.mu.Lock()
			p.mint = tc.mint
			p.mu.Unlock()
			signedIn := rec.count(audit.TypePersonSignedIn)
			c, state := start(t, p, front)
			q := url.Values{"code": {"good-code"}, "state": {state}, "iss": {p.srv.URL}}
			if tc.query != nil {
				q = tc.query(state)
			}
			resp := callback(t, c, front, q)
			if resp.StatusCode != tc.want {
				t.Fatalf("callback = %d, want %d", resp.StatusCode, tc.want)
			}
			if tc.want != http.StatusSeeOther {
				if rec.count(audit.TypePersonSignedIn) != signedIn {
					t.Errorf("a refused sign-in started a session")
				}
				for _, ck := range resp.Cookies() {
					if ck.Name == "mandate_session" && ck.Value != "" {
						t.Errorf("a refused sign-in set a session cookie")
					}
				}
				return
			}
			var sess *http.Cookie
			for _, ck := range resp.Cookies() {
				if ck.Name == "mandate_session" {
					sess = ck
				}
			}
			if sess == nil || !sess.HttpOnly || sess.SameSite != http.SameSiteLaxMode || resp.Header.Get("Location") != "/me" {
				t.Fatalf("session cookie = %+v, Location %q", sess, resp.Header.Get("Location"))
			}
			// The same callback again (state replay) is refused.
			if again := callback(t, c, front, q); again.StatusCode != 400 {
				t.Errorf("replayed callback = %d, want 400", again.StatusCode)
			}
		})
	}
	if rec.count(audit.TypePersonSignInRefused) < len(cases)-1 {
		t.Errorf("sign-in refusals recorded = %d, want one per bad case", rec.count(audit.TypePersonSignInRefused))
	}
}

func TestSafeNext(t *testing.T) {
	for _, n := range []string{"https://evil.example/", "//evil.example/", "/oauth/authorize?x\r\nSet-Cookie:", "/admin/v1/agents", "javascript:alert(1)", "/oauth/authorizeX",
		"/approvals/", "/approvals/apr_x", "/approvals/apr_AAAAAAAAAAAAAAAAAAAAAAAAAA", "/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa/../../me", "/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa?x", "/approvalsX"} {
		if got := safeNext(n); got != "/me" {
			t.Errorf("safeNext(%q) = %q, want /me", n, got)
		}
	}
	for _, n := range []string{"/oauth/authorize?client_id=x", "/approvals", "/approvals/apr_aaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		if got := safeNext(n); got != n {
			t.Errorf("safeNext(%q) = %q, want it kept", n, got)
		}
	}
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }
