package token

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestDPoPVerify(t *testing.T) {
	t.Parallel()
	clock := newClock()
	now := clock.Now()
	st := newMemStore()
	d := NewDPoPVerifier(DPoPConfig{Store: st, Now: clock.Now})
	ed := newEdKey(t, "")
	ec := newECKey(t, "")
	const u = "https://mandate.test/oauth/token"
	hs := signJWT(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), map[jose.HeaderKey]any{"typ": "dpop+jwt"},
		map[string]any{"htm": "POST", "htu": u, "iat": now.Unix(), "jti": "x"})
	none := unsignedJWT(t, map[string]any{"alg": "none", "typ": "dpop+jwt", "jwk": ed.jwk},
		map[string]any{"htm": "POST", "htu": u, "iat": now.Unix(), "jti": "y"})
	// A proof whose header carries a private key.
	privJWK := jose.JSONWebKey{Key: ed.priv}
	privHdr := unsignedJWT(t, map[string]any{"alg": "EdDSA", "typ": "dpop+jwt", "jwk": privJWK}, map[string]any{"jti": "z"})

	tests := []struct {
		name string
		req  DPoPRequest
		want string
	}{
		{"ed25519", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{}), Method: "POST", URL: u}, ""},
		{"p256", DPoPRequest{Proof: ec.proof(t, now, "POST", u, "", proofOpts{}), Method: "POST", URL: u}, ""},
		{"htu query and fragment ignored, default port, host case", DPoPRequest{Proof: ed.proof(t, now, "POST", "https://MANDATE.test:443/oauth/token?x=1#f", "", proofOpts{}), Method: "POST", URL: u + "?y=2"}, ""},
		{"with ath", DPoPRequest{Proof: ed.proof(t, now, "GET", u, "tok", proofOpts{}), Method: "GET", URL: u, AccessToken: "tok"}, ""},
		{"empty", DPoPRequest{Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"garbage", DPoPRequest{Proof: "a.b.c", Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"too large", DPoPRequest{Proof: string(make([]byte, MaxDPoPProofSize+1)), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"alg none", DPoPRequest{Proof: none, Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"HS256", DPoPRequest{Proof: hs, Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"private jwk", DPoPRequest{Proof: privHdr, Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"wrong typ", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{typ: "JWT"}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"no jwk", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{noJWK: true}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"wrong method", DPoPRequest{Proof: ed.proof(t, now, "GET", u, "", proofOpts{}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"wrong url path", DPoPRequest{Proof: ed.proof(t, now, "POST", "https://mandate.test/oauth/introspect", "", proofOpts{}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"wrong url scheme", DPoPRequest{Proof: ed.proof(t, now, "POST", "http://mandate.test/oauth/token", "", proofOpts{}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"wrong url host", DPoPRequest{Proof: ed.proof(t, now, "POST", "https://evil.test/oauth/token", "", proofOpts{}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"old", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{iat: now.Add(-2 * time.Minute)}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"future", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{iat: now.Add(time.Minute)}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"no iat", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{claims: map[string]any{"iat": nil}}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"no jti", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{claims: map[string]any{"jti": nil}}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"ath missing", DPoPRequest{Proof: ed.proof(t, now, "GET", u, "", proofOpts{}), Method: "GET", URL: u, AccessToken: "tok"}, CodeInvalidDPoPProof},
		{"ath wrong", DPoPRequest{Proof: ed.proof(t, now, "GET", u, "other", proofOpts{}), Method: "GET", URL: u, AccessToken: "tok"}, CodeInvalidDPoPProof},
		{"first use", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{jti: "once"}), Method: "POST", URL: u}, ""},
		{"replay", DPoPRequest{Proof: ed.proof(t, now, "POST", u, "", proofOpts{jti: "once"}), Method: "POST", URL: u}, CodeInvalidDPoPProof},
		{"same jti other key", DPoPRequest{Proof: ec.proof(t, now, "POST", u, "", proofOpts{jti: "once"}), Method: "POST", URL: u}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			jkt, err := d.Verify(context.Background(), tt.req)
			if got := oauthCode(err); got != tt.want {
				t.Fatalf("Verify = %q (%v), want %q", got, err, tt.want)
			}
			if err == nil && jkt != ed.thumbprint(t) && jkt != ec.thumbprint(t) {
				t.Errorf("Verify returned thumbprint %q of neither key", jkt)
			}
		})
	}
}

func TestDPoPReplayAcrossReplicas(t *testing.T) {
	t.Parallel()
	clock := newClock()
	st := newMemStore()
	d1 := NewDPoPVerifier(DPoPConfig{Store: st, Now: clock.Now})
	d2 := NewDPoPVerifier(DPoPConfig{Store: st, Now: clock.Now})
	k := newEdKey(t, "")
	const u = "https://mandate.test/x"
	p := k.proof(t, clock.Now(), "GET", u, "", proofOpts{})
	if _, err := d1.Verify(context.Background(), DPoPRequest{Proof: p, Method: "GET", URL: u}); err != nil {
		t.Fatal(err)
	}
	if _, err := d2.Verify(context.Background(), DPoPRequest{Proof: p, Method: "GET", URL: u}); oauthCode(err) != CodeInvalidDPoPProof {
		t.Fatalf("replay on another replica = %v, want invalid_dpop_proof", err)
	}
	st.failUseOnce = errors.New("disk on fire")
	p2 := k.proof(t, clock.Now(), "GET", u, "", proofOpts{})
	_, err := d2.Verify(context.Background(), DPoPRequest{Proof: p2, Method: "GET", URL: u})
	if oauthCode(err) != CodeTemporarilyUnavailable {
		t.Fatalf("store failure = %v, want temporarily_unavailable", err)
	}
}
