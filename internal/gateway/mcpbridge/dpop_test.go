package mcpbridge_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/token"
)

// TestDPoPProof: the server's own verifier accepts DPoPProof's proofs for
// both key types it allows, bound to the request and the token; keys it
// does not allow are refused before anything is signed.
func TestDPoPProof(t *testing.T) {
	t.Parallel()
	_, ed, _ := ed25519.GenerateKey(rand.Reader)
	p256, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	const u, tok = "https://gateway.example/mcp/go", "task-token"
	for _, tc := range []struct {
		name   string
		key    crypto.Signer
		sign   string // the URL the proof is made for
		wantOK bool
	}{
		{"Ed25519", ed, u, true},
		{"P-256", p256, u, true},
		{"another URL", ed, "https://gateway.example/mcp/other", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proof, err := mcpbridge.DPoPProof(tc.key, "POST", tc.sign, tok)
			if err != nil {
				t.Fatal(err)
			}
			_, err = token.NewDPoPVerifier(token.DPoPConfig{}).Verify(t.Context(), token.DPoPRequest{Proof: proof, Method: "POST", URL: u, AccessToken: tok})
			if (err == nil) != tc.wantOK {
				t.Fatalf("Verify = %v, want ok %v", err, tc.wantOK)
			}
		})
	}
	for name, key := range map[string]crypto.Signer{"P-384": p384, "RSA": rsaKey} {
		if p, err := mcpbridge.DPoPProof(key, "POST", u, tok); err == nil {
			t.Errorf("DPoPProof(%s key) = %q, want an error", name, p)
		}
	}
}

// TestTransport: each request carries the token, Bearer without a key and
// DPoP with a fresh proof for that request's method and URL (without its
// query) with one; the caller's request is left as it was.
func TestTransport(t *testing.T) {
	t.Parallel()
	type seen struct{ authz, proof, method, url string }
	got := make(chan seen, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Header.Get("Authorization"), r.Header.Get("DPoP"), r.Method, "http://" + r.Host + r.URL.Path}
	}))
	defer srv.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	verifier := token.NewDPoPVerifier(token.DPoPConfig{})
	for _, tc := range []struct {
		name string
		key  crypto.Signer
	}{{"bearer", nil}, {"dpop", key}} {
		t.Run(tc.name, func(t *testing.T) {
			c := &http.Client{Transport: &mcpbridge.Transport{Token: "tok", DPoPKey: tc.key}}
			for range 2 { // a proof is never reused
				req, _ := http.NewRequest("POST", srv.URL+"/mcp/go?x=1", nil)
				resp, err := c.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if req.Header.Get("Authorization") != "" {
					t.Fatal("the caller's request was modified")
				}
				s := <-got
				if tc.key == nil {
					if s.authz != "Bearer tok" || s.proof != "" {
						t.Fatalf("Authorization %q, DPoP %q; want Bearer tok and no proof", s.authz, s.proof)
					}
					continue
				}
				if s.authz != "DPoP tok" {
					t.Fatalf("Authorization %q, want DPoP tok", s.authz)
				}
				if _, err := verifier.Verify(t.Context(), token.DPoPRequest{Proof: s.proof, Method: s.method, URL: s.url, AccessToken: "tok"}); err != nil {
					t.Fatalf("the proof sent does not verify for %s %s: %v", s.method, s.url, err)
				}
			}
		})
	}
}
