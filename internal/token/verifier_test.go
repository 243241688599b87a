package token

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/task"
)

var (
	agentA = identity.MustParseID("spiffe://example.org/agent/alpha")
	agentB = identity.MustParseID("spiffe://example.org/agent/beta")
)

type vfix struct {
	clock *fakeClock
	st    *memStore
	kr    *Keyring
	rev   *Revocations
	dpop  *DPoPVerifier
	v     *Verifier
}

func newVFix(t testing.TB) *vfix {
	t.Helper()
	f := &vfix{clock: newClock(), st: newMemStore()}
	var err error
	f.kr, err = NewKeyring(context.Background(), KeyringConfig{Store: f.st, Sealer: sealtest.Keyring(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.rev = NewRevocations(f.clock.Now)
	f.dpop = NewDPoPVerifier(DPoPConfig{Store: f.st, Now: f.clock.Now})
	f.v, err = NewVerifier(VerifierConfig{Keyring: f.kr, Revocations: f.rev, DPoP: f.dpop, Issuer: testIssuer, Audience: testIssuer, Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

var jtiCounter atomic.Int64

func (f *vfix) taskClaims() *Claims {
	now := f.clock.Now()
	return &Claims{
		Issuer: testIssuer, Subject: "user:alice", Audience: jwt.Audience{testIssuer},
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ID: fmt.Sprintf("jti-%d", jtiCounter.Add(1)), ClientID: agentB.String(), Scope: "file.read:/repo/**",
		TaskID: "tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa", Tier: "autonomous", Use: UseTask,
		Act: ActorChain([]string{agentA.String(), agentB.String()}),
	}
}

func (f *vfix) sign(t testing.TB, c *Claims) string {
	t.Helper()
	raw, err := f.kr.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestVerify(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	kid := f.kr.CurrentKeyID()
	priv := currentPrivateKey(t, f.st, kid)
	other := newEdKey(t, kid)
	client := newEdKey(t, "dpop")
	now := f.clock.Now()
	hdr := func(typ string) map[jose.HeaderKey]any {
		return map[jose.HeaderKey]any{"typ": typ, "kid": kid}
	}
	mod := func(m func(c *Claims)) string {
		c := f.taskClaims()
		m(c)
		return f.sign(t, c)
	}
	revokedJTI := f.taskClaims()
	f.rev.RevokeJTI(revokedJTI.ID, now.Add(time.Hour))
	inactiveTask := f.taskClaims()
	inactiveTask.TaskID = "tsk_bbbbbbbbbbbbbbbbbbbbbbbbbb"
	f.rev.RevokeTasks(task.ID(inactiveTask.TaskID))
	suspendedRoot := f.taskClaims()
	suspendedRoot.Act = ActorChain([]string{"spiffe://example.org/agent/suspended", agentB.String()})
	f.rev.SetAgentActive(identity.MustParseID("spiffe://example.org/agent/suspended"), false)

	bound := f.taskClaims()
	bound.Cnf = &Confirmation{JKT: client.thumbprint(t)}
	boundRaw := f.sign(t, bound)
	const url = "https://gw.test/mcp"

	tests := []struct {
		name string
		req  VerifyRequest
		want string
	}{
		{"valid", VerifyRequest{Token: f.sign(t, f.taskClaims())}, ""},
		{"valid use task", VerifyRequest{Token: f.sign(t, f.taskClaims()), Use: UseTask}, ""},
		{"empty", VerifyRequest{}, CodeInvalidToken},
		{"malformed", VerifyRequest{Token: "not.a.jwt"}, CodeInvalidToken},
		{"garbage", VerifyRequest{Token: "%%%"}, CodeInvalidToken},
		{"signature respelled in its padding bits", VerifyRequest{Token: respell(f.sign(t, f.taskClaims()))}, CodeInvalidToken},
		{"padded segment", VerifyRequest{Token: f.sign(t, f.taskClaims()) + "=="}, CodeInvalidToken},
		{"too large", VerifyRequest{Token: string(make([]byte, MaxTokenSize+1))}, CodeInvalidToken},
		{"alg none", VerifyRequest{Token: unsignedJWT(t, map[string]string{"alg": "none", "typ": "at+jwt", "kid": kid}, f.taskClaims())}, CodeInvalidToken},
		{"HS256", VerifyRequest{Token: signJWT(t, jose.HS256, []byte("0123456789abcdef0123456789abcdef"), hdr("at+jwt"), f.taskClaims())}, CodeInvalidToken},
		{"wrong typ", VerifyRequest{Token: signJWT(t, jose.EdDSA, priv, hdr("JWT"), f.taskClaims())}, CodeInvalidToken},
		{"no typ", VerifyRequest{Token: signJWT(t, jose.EdDSA, priv, map[jose.HeaderKey]any{"kid": kid}, f.taskClaims())}, CodeInvalidToken},
		{"application/at+jwt", VerifyRequest{Token: signJWT(t, jose.EdDSA, priv, hdr("application/at+jwt"), f.taskClaims())}, ""},
		{"foreign key same kid", VerifyRequest{Token: signJWT(t, jose.EdDSA, other.priv, hdr("at+jwt"), f.taskClaims())}, CodeInvalidToken},
		{"unknown kid", VerifyRequest{Token: signJWT(t, jose.EdDSA, priv, map[jose.HeaderKey]any{"typ": "at+jwt", "kid": "nope"}, f.taskClaims())}, CodeInvalidToken},
		{"expired", VerifyRequest{Token: mod(func(c *Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-time.Minute)) })}, CodeInvalidToken},
		{"expired within skew", VerifyRequest{Token: mod(func(c *Claims) { c.Expiry = jwt.NewNumericDate(now.Add(-10 * time.Second)) })}, ""},
		{"no exp", VerifyRequest{Token: mod(func(c *Claims) { c.Expiry = nil })}, CodeInvalidToken},
		{"future iat", VerifyRequest{Token: mod(func(c *Claims) { c.IssuedAt = jwt.NewNumericDate(now.Add(time.Hour)) })}, CodeInvalidToken},
		{"future nbf", VerifyRequest{Token: mod(func(c *Claims) { c.NotBefore = jwt.NewNumericDate(now.Add(time.Hour)) })}, CodeInvalidToken},
		{"wrong iss", VerifyRequest{Token: mod(func(c *Claims) { c.Issuer = "https://evil.test" })}, CodeInvalidToken},
		{"wrong aud", VerifyRequest{Token: mod(func(c *Claims) { c.Audience = jwt.Audience{"https://other.test"} })}, CodeInvalidToken},
		{"requested aud", VerifyRequest{Token: mod(func(c *Claims) { c.Audience = jwt.Audience{"https://other.test"} }), Audiences: []string{"https://other.test"}}, ""},
		{"no jti", VerifyRequest{Token: mod(func(c *Claims) { c.ID = "" })}, CodeInvalidToken},
		{"bad client_id", VerifyRequest{Token: mod(func(c *Claims) { c.ClientID = "bob" })}, CodeInvalidToken},
		{"act mismatch", VerifyRequest{Token: mod(func(c *Claims) { c.Act = ActorChain([]string{agentB.String(), agentA.String()}) })}, CodeInvalidToken},
		{"task without task_id", VerifyRequest{Token: mod(func(c *Claims) { c.TaskID = "" })}, CodeInvalidToken},
		{"unknown use", VerifyRequest{Token: mod(func(c *Claims) { c.Use = "admin" })}, CodeInvalidToken},
		{"wrong use", VerifyRequest{Token: f.sign(t, f.taskClaims()), Use: UseAgent}, CodeInvalidToken},
		{"revoked jti", VerifyRequest{Token: f.sign(t, revokedJTI)}, CodeInvalidToken},
		{"inactive task", VerifyRequest{Token: f.sign(t, inactiveTask)}, CodeInvalidToken},
		{"inactive agent in chain", VerifyRequest{Token: f.sign(t, suspendedRoot)}, CodeInvalidToken},
		{"dpop bound without proof", VerifyRequest{Token: boundRaw}, CodeInvalidToken},
		{"dpop ok", VerifyRequest{Token: boundRaw, Method: "POST", URL: url,
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{})}, ""},
		{"dpop ok with the DPoP scheme", VerifyRequest{Token: boundRaw, Method: "POST", URL: url, Scheme: SchemeDPoP,
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{})}, ""},
		// RFC 9449 §7.1, §7.2: a DPoP-bound token under the Bearer scheme
		// is refused, even with a valid proof beside it.
		{"dpop bound as Bearer with a proof", VerifyRequest{Token: boundRaw, Method: "POST", URL: url, Scheme: SchemeBearer,
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{})}, CodeInvalidToken},
		{"dpop bound as Bearer", VerifyRequest{Token: boundRaw, Scheme: SchemeBearer}, CodeInvalidToken},
		{"unbound with the DPoP scheme", VerifyRequest{Token: f.sign(t, f.taskClaims()), Method: "POST", URL: url, Scheme: SchemeDPoP,
			DPoPProof: client.proof(t, now, "POST", url, f.sign(t, f.taskClaims()), proofOpts{})}, CodeInvalidToken},
		{"unbound with the Bearer scheme", VerifyRequest{Token: f.sign(t, f.taskClaims()), Scheme: SchemeBearer}, ""},
		{"dpop wrong key", VerifyRequest{Token: boundRaw, Method: "POST", URL: url,
			DPoPProof: other.proof(t, now, "POST", url, boundRaw, proofOpts{})}, CodeInvalidDPoPProof},
		{"dpop wrong method", VerifyRequest{Token: boundRaw, Method: "GET", URL: url,
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{})}, CodeInvalidDPoPProof},
		{"dpop wrong url", VerifyRequest{Token: boundRaw, Method: "POST", URL: "https://gw.test/other",
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{})}, CodeInvalidDPoPProof},
		{"dpop wrong ath", VerifyRequest{Token: boundRaw, Method: "POST", URL: url,
			DPoPProof: client.proof(t, now, "POST", url, "other-token", proofOpts{})}, CodeInvalidDPoPProof},
		{"dpop no ath", VerifyRequest{Token: boundRaw, Method: "POST", URL: url,
			DPoPProof: client.proof(t, now, "POST", url, "", proofOpts{})}, CodeInvalidDPoPProof},
		{"dpop replayed", VerifyRequest{Token: boundRaw, Method: "POST", URL: url,
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{jti: "fixed"})}, ""},
		{"dpop replayed again", VerifyRequest{Token: boundRaw, Method: "POST", URL: url,
			DPoPProof: client.proof(t, now, "POST", url, boundRaw, proofOpts{jti: "fixed"})}, CodeInvalidDPoPProof},
	}
	for _, tt := range tests {
		// Not parallel: the replay cases depend on order.
		t.Run(tt.name, func(t *testing.T) {
			for _, pass := range []string{"uncached", "cached"} {
				if pass == "cached" && tt.req.DPoPProof != "" && tt.want == "" {
					continue // a second use of the same proof is a replay
				}
				_, err := f.v.Verify(context.Background(), tt.req)
				if got := oauthCode(err); got != tt.want {
					t.Errorf("%s: Verify = %q (%v), want %q", pass, got, err, tt.want)
				}
			}
		})
	}
}

func TestVerifyRevocationHitsCache(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	ctx := context.Background()
	c := f.taskClaims()
	raw := f.sign(t, c)
	for _, revoke := range []func(){
		func() { f.rev.RevokeJTI(c.ID, c.Expiry.Time()) },
		func() { f.rev.RevokeTasks(task.ID(c.TaskID)) },
		func() { f.rev.SetAgentActive(agentA, false) },
		func() { f.rev.SetAgentActive(agentB, false) },
	} {
		f.rev = NewRevocations(f.clock.Now)
		f.v.cfg.Revocations = f.rev
		if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw}); err != nil {
			t.Fatalf("Verify before revocation: %v", err)
		}
		revoke()
		if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw}); oauthCode(err) != CodeInvalidToken {
			t.Fatalf("Verify after revocation = %v, want invalid_token", err)
		}
	}
	f.rev.SetAgentActive(agentB, true)
	if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw}); err != nil {
		t.Fatalf("Verify after resume: %v", err)
	}
}

func TestVerifyCachedExpiry(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	raw := f.sign(t, f.taskClaims())
	if _, err := f.v.Verify(context.Background(), VerifyRequest{Token: raw}); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5*time.Minute + DefaultSkew + time.Second)
	if _, err := f.v.Verify(context.Background(), VerifyRequest{Token: raw}); oauthCode(err) != CodeInvalidToken {
		t.Fatalf("Verify of expired cached token = %v, want invalid_token", err)
	}
	if len(f.v.cache) != 0 {
		t.Errorf("expired token still cached")
	}
}

func TestVerifyCacheBound(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	f.v.cfg.CacheSize = 16
	for range 100 {
		if _, err := f.v.Verify(context.Background(), VerifyRequest{Token: f.sign(t, f.taskClaims())}); err != nil {
			t.Fatal(err)
		}
	}
	if n := len(f.v.cache); n > 16 {
		t.Errorf("cache holds %d entries, want ≤ 16", n)
	}
}

func TestKeyringRotation(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	ctx := context.Background()
	old := f.kr.CurrentKeyID()
	raw := f.sign(t, f.taskClaims())
	if err := f.kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if f.kr.CurrentKeyID() == old {
		t.Fatal("Rotate kept the same key")
	}
	if n := len(f.kr.JWKS().Keys); n != 2 {
		t.Fatalf("JWKS has %d keys after rotation, want 2", n)
	}
	for _, k := range f.kr.JWKS().Keys {
		if !k.IsPublic() {
			t.Fatal("JWKS publishes a private key")
		}
	}
	f.v.Forget()
	if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw}); err != nil {
		t.Fatalf("token signed by the retired key: %v", err)
	}
	// A second keyring over the same store (another replica) sees the same keys.
	kr2, err := NewKeyring(ctx, KeyringConfig{Store: f.st, Sealer: sealtest.Keyring(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if kr2.CurrentKeyID() != f.kr.CurrentKeyID() {
		t.Errorf("replica signs with %q, want %q", kr2.CurrentKeyID(), f.kr.CurrentKeyID())
	}
	// After the retired key's publication window it is dropped.
	f.clock.Advance(DefaultMaxTokenLifetime + publishMargin + time.Second)
	if err := f.kr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(f.kr.JWKS().Keys); n != 1 {
		t.Fatalf("JWKS has %d keys after the publication window, want 1", n)
	}
	// Scheduled rotation.
	f.clock.Advance(DefaultRotateEvery)
	cur := f.kr.CurrentKeyID()
	if err := f.kr.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if f.kr.CurrentKeyID() == cur {
		t.Error("Refresh did not rotate a key older than RotateEvery")
	}
}

func TestRevocationsLoad(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	st := newMemStore()
	now := clock.Now()
	_ = st.RevokeToken(ctx, "j1", now.Add(time.Minute))
	_ = st.CreateAgent(ctx, &identity.Agent{ID: agentA, Status: identity.StatusSuspended})
	_ = st.CreateAgent(ctx, &identity.Agent{ID: agentB, Status: identity.StatusActive})
	st.tasks["tsk_cccccccccccccccccccccccccc"] = &task.Task{ID: "tsk_cccccccccccccccccccccccccc", Status: task.StatusRevoked, ExpiresAt: now.Add(time.Hour)}
	r := NewRevocations(clock.Now)
	if err := r.Load(ctx, st, st, st, now); err != nil {
		t.Fatal(err)
	}
	if r.check("j1", "", nil) == "" || !r.TaskInactive("tsk_cccccccccccccccccccccccccc") || !r.AgentInactive(agentA) || r.AgentInactive(agentB) {
		t.Error("Load did not restore the stored revocation state")
	}
	r.Prune(now, time.Hour)
	r.Prune(now.Add(2*time.Hour), time.Hour)
	if r.check("j1", "tsk_cccccccccccccccccccccccccc", nil) != "" {
		t.Error("Prune kept expired state")
	}
}

// TestRotationDoesNotStallSigning signs and verifies while rotating.
func TestRotationDoesNotStallSigning(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	ctx := context.Background()
	done := make(chan struct{})
	go func() {
		defer close(done)
		for range 5 {
			if err := f.kr.Rotate(ctx); err != nil {
				t.Error(err)
			}
		}
	}()
	for range 50 {
		raw := f.sign(t, f.taskClaims())
		if _, err := f.v.Verify(ctx, VerifyRequest{Token: raw}); err != nil {
			t.Fatalf("Verify during rotation: %v", err)
		}
	}
	<-done
}

// respell changes the unused low bits of a compact JWS's last character:
// the same signature bytes to a lax decoder, another string to mandate.
func respell(tok string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	b := []byte(tok)
	i := strings.IndexByte(alphabet, b[len(b)-1])
	// An Ed25519 signature (64 bytes) ends in a character that carries 2
	// bits: the low 4 are padding.
	b[len(b)-1] = alphabet[i|1]
	return string(b)
}
