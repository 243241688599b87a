package token

import (
	"context"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// FuzzParseDPoPProof: parsing arbitrary proofs never panics, and an
// accepted proof always has a thumbprint and an allowed key.
func FuzzParseDPoPProof(f *testing.F) {
	now := time.Unix(1772366400, 0)
	k := newEdKey(f, "")
	f.Add(k.proof(f, now, "POST", "https://mandate.test/oauth/token", "", proofOpts{}))
	f.Add(k.proof(f, now, "GET", "https://gw.test/x", "tok", proofOpts{typ: "JWT"}))
	f.Add(newECKey(f, "").proof(f, now, "POST", "https://mandate.test/oauth/token", "", proofOpts{}))
	f.Add(unsignedJWT(f, map[string]any{"alg": "none", "typ": "dpop+jwt"}, map[string]any{"jti": "x"}))
	f.Add("a.b.c")
	f.Add("")
	f.Fuzz(func(t *testing.T, proof string) {
		p, err := parseDPoPProof(proof)
		if err != nil {
			return
		}
		if p.jkt == "" {
			t.Fatal("accepted proof without thumbprint")
		}
		d := NewDPoPVerifier(DPoPConfig{Now: func() time.Time { return now }})
		_, _ = d.Verify(context.Background(), DPoPRequest{Proof: proof, Method: "POST", URL: "https://mandate.test/oauth/token"})
	})
}

// FuzzVerifyToken: the access-token verifier's parse path never panics and
// accepts nothing it did not sign.
func FuzzVerifyToken(f *testing.F) {
	fx := newVFix(f)
	valid := fx.sign(f, fx.taskClaims())
	f.Add(valid)
	f.Add(valid[:len(valid)-2] + "AA")
	f.Add(unsignedJWT(f, map[string]string{"alg": "none", "typ": "at+jwt"}, fx.taskClaims()))
	f.Add(signJWT(f, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), map[jose.HeaderKey]any{"typ": "at+jwt", "kid": fx.kr.CurrentKeyID()}, fx.taskClaims()))
	f.Add("eyJhbGciOiJFZERTQSJ9.e30.")
	f.Add("...")
	f.Fuzz(func(t *testing.T, raw string) {
		c, err := fx.v.Verify(context.Background(), VerifyRequest{Token: raw})
		if err != nil {
			return
		}
		if c.Issuer != testIssuer || c.ID == "" || c.Expiry == nil {
			t.Fatalf("accepted token with claims %+v", c)
		}
		if raw != valid {
			// Signatures are unforgeable; the only other acceptable inputs
			// are re-encodings of the valid token that go-jose tolerates.
			t.Logf("accepted variant %q", raw)
		}
	})
}

// FuzzParseClientAssertion: client assertion parsing never panics.
func FuzzParseClientAssertion(f *testing.F) {
	fx := newSFix(f)
	f.Add(fx.assertion(agentA, assertOpts{}))
	f.Add(fx.assertion(agentB, assertOpts{aud: []string{"a", "b"}}))
	f.Add(unsignedJWT(f, map[string]string{"alg": "none"}, map[string]any{"iss": agentA.String(), "sub": agentA.String()}))
	f.Add("x.y.z")
	f.Fuzz(func(t *testing.T, raw string) {
		p, err := parseAssertion(raw, SignatureAlgorithms)
		if err != nil {
			return
		}
		_ = p.unverified.checkTimes(time.Now(), DefaultSkew, MaxAssertionLifetime)
		_, _ = fx.srv.AuthenticateClient(context.Background(), "", ClientAssertionJWT, raw)
	})
}
