package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/task"
)

const personIssuer = "https://idp.test"

// personFixture is a server trusting personIssuer to name people by email.
type personFixture struct {
	*sfix
	key *rsa.PrivateKey
}

func newPersonFixture(t *testing.T) *personFixture {
	t.Helper()
	f := &personFixture{sfix: newSFix(t)}
	var err error
	if f.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.key.PublicKey, KeyID: "idp1", Algorithm: "RS256", Use: "sig"}}})
	f.srv, err = NewServer(context.Background(), Config{
		Issuer: testIssuer, TrustDomain: testTD, Identities: f.st, Tasks: f.st, Entitlements: f.st, Tokens: f.st, Audit: f.rec, Sealer: sealtest.Keyring(),
		Federation: []FederatedIssuer{{Issuer: personIssuer, JWKS: jwks, Audience: testIssuer, PersonClaim: PersonClaimEmail}},
		Now:        f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.srv.DecideDelegationsWith(f.deleg)
	return f
}

// personToken signs an ID token for bob, changed by mod.
func (f *personFixture) personToken(mod func(c map[string]any)) string {
	now := f.clock.Now()
	c := map[string]any{"iss": personIssuer, "sub": "00u1bob", "aud": testIssuer, "exp": now.Add(5 * time.Minute).Unix(),
		"iat": now.Unix(), "jti": newJTI(), "email": "bob@example.org", "email_verified": true}
	if mod != nil {
		mod(c)
	}
	return signJWT(f.t, jose.RS256, f.key, map[jose.HeaderKey]any{"kid": "idp1"}, c)
}

func (f *personFixture) personReq(person, actor string, mod func(r *TokenRequest)) *TokenRequest {
	r := &TokenRequest{
		GrantType: GrantTokenExchange, SubjectToken: person, SubjectTokenType: TokenTypeIDToken,
		ActorToken: actor, ActorTokenType: TokenTypeAccessToken, Scope: "file.read:/repo/**", Purpose: "review my PR",
	}
	if mod != nil {
		mod(r)
	}
	return r
}

// A person who signed in asks an agent to start a task: the person, proven
// by their own token, is the task's principal (RFC 8693 §4.1), and their
// token starts one task only.
func TestPersonStartsTask(t *testing.T) {
	t.Parallel()
	f := newPersonFixture(t)
	ctx := context.Background()
	person := f.personToken(nil)
	resp, err := f.srv.Token(ctx, f.personReq(person, f.agentToken(agentA), nil))
	if err != nil {
		t.Fatalf("start for a person: %v", err)
	}
	c := f.claimsOf(resp.AccessToken)
	if c.Subject != "bob@example.org" || c.ClientID != agentA.String() || c.Use != UseTask {
		t.Fatalf("task token claims = %+v, want sub bob@example.org for %s", c, agentA)
	}
	tk, err := f.st.GetTask(ctx, task.ID(c.TaskID))
	if err != nil || tk.Principal != "bob@example.org" || tk.OnBehalfOf != "bob@example.org" || tk.Agent != agentA {
		t.Fatalf("task = %+v, %v", tk, err)
	}
	if _, err := f.srv.Token(ctx, f.personReq(person, f.agentToken(agentA), nil)); oauthCode(err) != CodeInvalidGrant || !strings.Contains(err.Error(), "already used") {
		t.Errorf("a person's token used twice = %v, want invalid_grant", err)
	}
}

func TestPersonTokenRefused(t *testing.T) {
	t.Parallel()
	f := newPersonFixture(t)
	ctx := context.Background()
	now := f.clock.Now()
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	for _, tc := range []struct {
		name   string
		person func() string
		mod    func(r *TokenRequest)
		code   string
	}{
		{"another audience", func() string { return f.personToken(func(c map[string]any) { c["aud"] = "https://elsewhere.test" }) }, nil, CodeInvalidGrant},
		{"expired", func() string { return f.personToken(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }) }, nil, CodeInvalidGrant},
		{"no jti", func() string { return f.personToken(func(c map[string]any) { delete(c, "jti") }) }, nil, CodeInvalidGrant},
		{"unverified email", func() string { return f.personToken(func(c map[string]any) { c["email_verified"] = false }) }, nil, CodeInvalidGrant},
		{"no email", func() string { return f.personToken(func(c map[string]any) { delete(c, "email") }) }, nil, CodeInvalidGrant},
		{"task principal", func() string {
			return f.personToken(func(c map[string]any) { c["email"] = "task:tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa" })
		}, nil, CodeInvalidGrant},
		{"control character", func() string { return f.personToken(func(c map[string]any) { c["email"] = "bob@example.org\n" }) }, nil, CodeInvalidGrant},
		{"forged signature", func() string {
			return signJWT(f.t, jose.RS256, otherKey, map[jose.HeaderKey]any{"kid": "idp1"}, map[string]any{
				"iss": personIssuer, "sub": "x", "aud": testIssuer, "exp": now.Add(time.Minute).Unix(), "jti": newJTI(), "email": "ceo@example.org"})
		}, nil, CodeInvalidGrant},
		{"someone else on behalf of", func() string { return f.personToken(nil) }, func(r *TokenRequest) { r.OnBehalfOf = "ceo@example.org" }, CodeInvalidRequest},
		{"actor is not an agent token", func() string { return f.personToken(nil) }, func(r *TokenRequest) { r.ActorToken = "garbage" }, CodeInvalidGrant},
		{"bad subject token type", func() string { return f.personToken(nil) }, func(r *TokenRequest) { r.SubjectTokenType = "urn:x" }, CodeInvalidRequest},
	} {
		person := tc.person()
		_, err := f.srv.Token(ctx, f.personReq(person, f.agentToken(agentA), tc.mod))
		if oauthCode(err) != tc.code {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.code)
		}
	}
	if n := len(f.st.tasks); n != 0 {
		t.Errorf("refused requests started %d tasks", n)
	}
	// A request refused for a reason of its own leaves the person's token
	// unspent: the corrected request succeeds with it.
	person := f.personToken(nil)
	if _, err := f.srv.Token(ctx, f.personReq(person, "garbage", nil)); err == nil {
		t.Fatal("a garbage actor token was accepted")
	}
	if _, err := f.srv.Token(ctx, f.personReq(person, f.agentToken(agentA), nil)); err != nil {
		t.Errorf("the corrected request: %v", err)
	}
}
