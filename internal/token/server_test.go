package token

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/google/go-cmp/cmp"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/task"
)

var (
	agentC = identity.MustParseID("spiffe://example.org/agent/gamma")   // suspended
	agentD = identity.MustParseID("spiffe://example.org/agent/delta")   // requires DPoP
	agentF = identity.MustParseID("spiffe://example.org/agent/fed")     // federated
	agentX = identity.MustParseID("spiffe://example.org/agent/unknown") // not registered
)

const fedIssuer = "https://k8s.test"

type sfix struct {
	t     testing.TB
	clock *fakeClock
	st    *memStore
	rec   *memRecorder
	srv   *Server
	keys  map[identity.ID]*dpopKey
	fedK  *rsa.PrivateKey
	deleg *recordingDecider
}

func newSFix(t testing.TB) *sfix {
	t.Helper()
	f := &sfix{t: t, clock: newClock(), st: newMemStore(), rec: &memRecorder{}, keys: map[identity.ID]*dpopKey{}}
	ctx := context.Background()
	for _, a := range []struct {
		id     identity.ID
		status identity.Status
		dpop   bool
	}{{agentA, identity.StatusActive, false}, {agentB, identity.StatusActive, false}, {agentC, identity.StatusSuspended, false}, {agentD, identity.StatusActive, true}} {
		k := newEdKey(t, "k1")
		if a.id == agentB {
			k = newECKey(t, "k1")
		}
		f.keys[a.id] = k
		ag := &identity.Agent{ID: a.id, Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: identity.TierAutonomous,
			Status: a.status, Keys: []jose.JSONWebKey{k.jwk}, RequireDPoP: a.dpop}
		if err := f.st.CreateAgent(ctx, ag); err != nil {
			t.Fatal(err)
		}
		// Entitled to anything: tests of the ceiling narrow it.
		f.entitle(a.id, "*", task.SensitivityRestricted, DefaultMaxTaskLifetime)
	}
	_ = f.st.CreateAgent(ctx, &identity.Agent{ID: agentF, Owner: "o", Escalation: "e", Tier: identity.TierAssist, Status: identity.StatusActive,
		Federations: []identity.Federation{{Issuer: fedIssuer, Subject: "system:serviceaccount:ci:builder"}}})
	var err error
	f.fedK, err = rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.fedK.PublicKey, KeyID: "fed1", Algorithm: "RS256", Use: "sig"}}})
	jwksSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(jwks) }))
	t.Cleanup(jwksSrv.Close)
	f.srv, err = NewServer(ctx, Config{
		Issuer: testIssuer, TrustDomain: testTD, Identities: f.st, Tasks: f.st, Entitlements: f.st, Tokens: f.st, Audit: f.rec, Sealer: sealtest.Keyring(),
		Federation: []FederatedIssuer{{Issuer: fedIssuer, JWKSURL: jwksSrv.URL, Audience: testIssuer}},
		// The gateway's resources, as mandate serve lists them.
		Audiences:  []string{testIssuer, testIssuer + "/mcp", testIssuer + "/mcp/go"},
		HTTPClient: jwksSrv.Client(), Now: f.clock.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	f.deleg = &recordingDecider{}
	f.srv.DecideDelegationsWith(f.deleg)
	f.rec.take()
	return f
}

// entitle sets agent's entitlement.
func (f *sfix) entitle(agent identity.ID, scope string, sens task.Sensitivity, ttl time.Duration) {
	f.t.Helper()
	sc, err := task.ParseScope(scope)
	if err != nil {
		f.t.Fatal(err)
	}
	if _, err := f.st.SetEntitlement(context.Background(), agent, &task.Entitlement{Scope: sc, MaxSensitivity: sens, MaxTaskTTL: ttl}, f.clock.Now()); err != nil {
		f.t.Fatal(err)
	}
}

type assertOpts struct {
	iss, sub, kid string
	aud           any
	exp           time.Time
	noExp         bool
	jti           string
	key           *dpopKey
	alg           jose.SignatureAlgorithm
}

func (f *sfix) assertion(id identity.ID, o assertOpts) string {
	f.t.Helper()
	now := f.clock.Now()
	k := o.key
	if k == nil {
		k = f.keys[id]
		if k == nil {
			k = newEdKey(f.t, "k1")
		}
	}
	c := map[string]any{"iss": id.String(), "sub": id.String(), "aud": testTokenURL, "exp": now.Add(time.Minute).Unix(), "iat": now.Unix(), "jti": newJTI()}
	if o.iss != "" {
		c["iss"] = o.iss
	}
	if o.sub != "" {
		c["sub"] = o.sub
	}
	if o.aud != nil {
		c["aud"] = o.aud
	}
	if !o.exp.IsZero() {
		c["exp"] = o.exp.Unix()
	}
	if o.noExp {
		delete(c, "exp")
	}
	if o.jti == "-" {
		delete(c, "jti")
	} else if o.jti != "" {
		c["jti"] = o.jti
	}
	kid := "k1"
	if o.kid != "" {
		kid = o.kid
	}
	alg := k.alg
	if o.alg != "" {
		alg = o.alg
	}
	return signJWT(f.t, alg, k.priv, map[jose.HeaderKey]any{"kid": kid}, c)
}

func (f *sfix) ccRequest(id identity.ID, o assertOpts) *TokenRequest {
	return &TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: ClientAssertionJWT, ClientAssertion: f.assertion(id, o)}
}

func (f *sfix) mustToken(r *TokenRequest) *TokenResponse {
	f.t.Helper()
	resp, err := f.srv.Token(context.Background(), r)
	if err != nil {
		f.t.Fatalf("Token(%s) = %v", r.GrantType, err)
	}
	f.rec.take()
	return resp
}

func (f *sfix) agentToken(id identity.ID) string {
	f.t.Helper()
	return f.mustToken(f.ccRequest(id, assertOpts{})).AccessToken
}

func exchange(subject string, mod func(r *TokenRequest)) *TokenRequest {
	r := &TokenRequest{GrantType: GrantTokenExchange, SubjectToken: subject, SubjectTokenType: TokenTypeAccessToken}
	if mod != nil {
		mod(r)
	}
	return r
}

func startReq(agentTok string, mod func(r *TokenRequest)) *TokenRequest {
	return exchange(agentTok, func(r *TokenRequest) {
		r.Purpose, r.Scope, r.OnBehalfOf = "fix bug 42", "file.read:/repo/** file.write:/repo/src/**", "alice@example.org"
		if mod != nil {
			mod(r)
		}
	})
}

func delegateReq(parent, actor string, mod func(r *TokenRequest)) *TokenRequest {
	return exchange(parent, func(r *TokenRequest) {
		r.ActorToken, r.ActorTokenType = actor, TokenTypeAccessToken
		if mod != nil {
			mod(r)
		}
	})
}

func (f *sfix) claimsOf(raw string) *Claims {
	f.t.Helper()
	tok, err := jwt.ParseSigned(raw, SignatureAlgorithms)
	if err != nil {
		f.t.Fatal(err)
	}
	var c Claims
	if err := tok.Claims(f.srv.Keyring().JWKS(), &c); err != nil {
		f.t.Fatalf("token does not verify against the JWKS: %v", err)
	}
	return &c
}

func (f *sfix) federated(mod func(c map[string]any), kid string, key any) string {
	now := f.clock.Now()
	c := map[string]any{"iss": fedIssuer, "sub": "system:serviceaccount:ci:builder", "aud": testIssuer, "exp": now.Add(time.Hour).Unix(), "iat": now.Unix()}
	if mod != nil {
		mod(c)
	}
	if key == nil {
		key = f.fedK
	}
	return signJWT(f.t, jose.RS256, key, map[jose.HeaderKey]any{"kid": kid}, c)
}

func eventTypes(evs []audit.Event) []audit.Type {
	var out []audit.Type
	for _, e := range evs {
		out = append(out, e.Type)
	}
	return out
}

var (
	issued  = []audit.Type{audit.TypeTokenIssued}
	refused = []audit.Type{audit.TypeTokenRefused}
)

func TestTokenEndpoint(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	now := f.clock.Now()
	tokA := f.agentToken(agentA)
	tokB := f.agentToken(agentB)
	parent := f.mustToken(startReq(tokA, nil)).AccessToken
	dk := newEdKey(t, "")
	ok := newEdKey(t, "")
	boundA := f.mustToken(func() *TokenRequest {
		r := f.ccRequest(agentA, assertOpts{})
		r.DPoPProof = dk.proof(t, now, "POST", testTokenURL, "", proofOpts{})
		return r
	}()).AccessToken
	otherKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	replayed := f.assertion(agentA, assertOpts{jti: "used-once"})
	f.mustToken(&TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: ClientAssertionJWT, ClientAssertion: replayed})
	// A token for an admin-started task.
	adminTask := &task.Task{ID: task.NewID(), Agent: agentA, OnBehalfOf: "user:bob", Principal: "user:bob", Purpose: "p",
		Scope: mustScope("file.read:/data/**"), Sensitivity: task.SensitivityInternal, Actors: []identity.ID{agentA},
		Status: task.StatusActive, CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	_ = f.st.CreateTask(context.Background(), adminTask)

	tests := []struct {
		name   string
		req    func() *TokenRequest
		want   string
		events []audit.Type
		check  func(t *testing.T, c *Claims, resp *TokenResponse)
	}{
		// Grant type.
		{"no grant type", func() *TokenRequest { return &TokenRequest{} }, CodeInvalidRequest, refused, nil},
		{"unknown grant type", func() *TokenRequest { return &TokenRequest{GrantType: "password"} }, CodeUnsupportedGrantType, refused, nil},

		// client_credentials with private_key_jwt.
		{"client credentials", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{}) }, "", issued,
			func(t *testing.T, c *Claims, resp *TokenResponse) {
				if c.Use != UseAgent || c.Subject != agentA.String() || c.ClientID != agentA.String() || !c.Audience.Contains(testIssuer) || c.Act != nil || c.Cnf != nil {
					t.Errorf("agent token claims = %+v", c)
				}
				if resp.TokenType != "Bearer" || resp.ExpiresIn != 300 {
					t.Errorf("response = %+v", resp)
				}
			}},
		{"client credentials ES256", func() *TokenRequest { return f.ccRequest(agentB, assertOpts{aud: []string{"x", testIssuer}}) }, "", issued, nil},
		{"no client auth", func() *TokenRequest { return &TokenRequest{GrantType: GrantClientCredentials} }, CodeInvalidClient, refused, nil},
		{"wrong assertion type", func() *TokenRequest {
			r := f.ccRequest(agentA, assertOpts{})
			r.ClientAssertionType = "urn:x"
			return r
		}, CodeInvalidClient, refused, nil},
		{"malformed assertion", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: ClientAssertionJWT, ClientAssertion: "x.y.z"}
		}, CodeInvalidClient, refused, nil},
		{"assertion alg none", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: ClientAssertionJWT,
				ClientAssertion: unsignedJWT(t, map[string]string{"alg": "none", "kid": "k1"}, map[string]any{"iss": agentA.String(), "sub": agentA.String(), "aud": testTokenURL, "exp": now.Add(time.Minute).Unix(), "jti": "n"})}
		}, CodeInvalidClient, refused, nil},
		{"assertion HS256", func() *TokenRequest {
			return f.ccRequest(agentA, assertOpts{key: &dpopKey{alg: jose.HS256, priv: []byte("0123456789abcdef0123456789abcdef")}})
		}, CodeInvalidClient, refused, nil},
		{"assertion wrong key", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{key: newEdKey(t, "k1")}) }, CodeInvalidClient, refused, nil},
		{"assertion unknown kid", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{kid: "k9"}) }, CodeInvalidClient, refused, nil},
		{"assertion expired", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{exp: now.Add(-time.Minute)}) }, CodeInvalidClient, refused, nil},
		{"assertion exp too far", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{exp: now.Add(time.Hour)}) }, CodeInvalidClient, refused, nil},
		{"assertion no exp", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{noExp: true}) }, CodeInvalidClient, refused, nil},
		{"assertion wrong aud", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{aud: "https://evil.test/token"}) }, CodeInvalidClient, refused, nil},
		{"assertion iss != sub", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{sub: agentB.String()}) }, CodeInvalidClient, refused, nil},
		{"assertion no jti", func() *TokenRequest { return f.ccRequest(agentA, assertOpts{jti: "-"}) }, CodeInvalidClient, refused, nil},
		{"assertion replayed jti", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantClientCredentials, ClientAssertionType: ClientAssertionJWT, ClientAssertion: replayed}
		}, CodeInvalidClient, refused, nil},
		{"client_id mismatch", func() *TokenRequest {
			r := f.ccRequest(agentA, assertOpts{})
			r.ClientID = agentB.String()
			return r
		}, CodeInvalidClient, refused, nil},
		{"unknown agent", func() *TokenRequest { return f.ccRequest(agentX, assertOpts{}) }, CodeInvalidClient, refused, nil},
		{"other trust domain", func() *TokenRequest {
			return f.ccRequest(identity.MustParseID("spiffe://evil.org/agent/alpha"), assertOpts{key: f.keys[agentA]})
		}, CodeInvalidClient, refused, nil},
		{"suspended agent", func() *TokenRequest { return f.ccRequest(agentC, assertOpts{}) }, CodeInvalidClient, refused, nil},
		{"require dpop without proof", func() *TokenRequest { return f.ccRequest(agentD, assertOpts{}) }, CodeInvalidDPoPProof, refused, nil},
		{"require dpop with proof", func() *TokenRequest {
			r := f.ccRequest(agentD, assertOpts{})
			r.DPoPProof = ok.proof(t, now, "POST", testTokenURL, "", proofOpts{})
			return r
		}, "", issued, func(t *testing.T, c *Claims, resp *TokenResponse) {
			if c.JKT() != ok.thumbprint(t) || resp.TokenType != "DPoP" {
				t.Errorf("cnf = %+v, token_type %q", c.Cnf, resp.TokenType)
			}
		}},
		{"dpop proof wrong url", func() *TokenRequest {
			r := f.ccRequest(agentA, assertOpts{})
			r.DPoPProof = ok.proof(t, now, "POST", "https://mandate.test/oauth/other", "", proofOpts{})
			return r
		}, CodeInvalidDPoPProof, refused, nil},
		{"dpop proof wrong method", func() *TokenRequest {
			r := f.ccRequest(agentA, assertOpts{})
			r.DPoPProof = ok.proof(t, now, "GET", testTokenURL, "", proofOpts{})
			return r
		}, CodeInvalidDPoPProof, refused, nil},

		// jwt-bearer (federation).
		{"federated", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(nil, "fed1", nil)}
		}, "", issued,
			func(t *testing.T, c *Claims, _ *TokenResponse) {
				if c.Subject != agentF.String() || c.Use != UseAgent {
					t.Errorf("federated token claims = %+v", c)
				}
			}},
		{"federated no assertion", func() *TokenRequest { return &TokenRequest{GrantType: GrantJWTBearer} }, CodeInvalidGrant, refused, nil},
		{"federated untrusted issuer", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(func(c map[string]any) { c["iss"] = "https://evil.test" }, "fed1", nil)}
		}, CodeInvalidGrant, refused, nil},
		{"federated wrong key", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(nil, "fed1", otherKey)}
		}, CodeInvalidGrant, refused, nil},
		{"federated unknown kid", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(nil, "fed2", nil)}
		}, CodeInvalidGrant, refused, nil},
		{"federated wrong aud", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(func(c map[string]any) { c["aud"] = "https://other.test" }, "fed1", nil)}
		}, CodeInvalidGrant, refused, nil},
		{"federated expired", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(func(c map[string]any) { c["exp"] = now.Add(-time.Hour).Unix() }, "fed1", nil)}
		}, CodeInvalidGrant, refused, nil},
		{"federated no exp", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(func(c map[string]any) { delete(c, "exp") }, "fed1", nil)}
		}, CodeInvalidGrant, refused, nil},
		{"federated unknown subject", func() *TokenRequest {
			return &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(func(c map[string]any) { c["sub"] = "someone" }, "fed1", nil)}
		}, CodeInvalidGrant, refused, nil},

		// Token exchange: start a task.
		{"start task", func() *TokenRequest { return startReq(tokA, nil) }, "", []audit.Type{audit.TypeTaskStarted, audit.TypeTokenIssued},
			func(t *testing.T, c *Claims, resp *TokenResponse) {
				if c.Use != UseTask || c.Subject != "alice@example.org" || c.ClientID != agentA.String() || c.TaskID == "" ||
					!cmp.Equal(c.Act, &Actor{Subject: agentA.String()}) || c.Scope != "file.read:/repo/** file.write:/repo/src/**" {
					t.Errorf("task token claims = %+v", c)
				}
				if resp.IssuedTokenType != TokenTypeAccessToken || resp.Scope != c.Scope {
					t.Errorf("response = %+v", resp)
				}
				tk, err := f.st.GetTask(context.Background(), task.ID(c.TaskID))
				if err != nil || tk.Principal != "alice@example.org" || tk.Depth != 0 || !tk.ExpiresAt.Equal(now.Add(time.Hour)) {
					t.Errorf("stored task = %+v, %v", tk, err)
				}
			}},
		{"start task without on_behalf_of runs for the owner", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.OnBehalfOf, r.TaskTTL = "", "90" })
		}, "", []audit.Type{audit.TypeTaskStarted, audit.TypeTokenIssued},
			func(t *testing.T, c *Claims, _ *TokenResponse) {
				if c.Subject != "alice@example.org" || !c.Expiry.Time().Equal(now.Add(90*time.Second)) {
					t.Errorf("claims = %+v, exp %v", c, c.Expiry.Time())
				}
			}},
		{"start task ttl capped", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.TaskTTL = "1000h" }) }, "",
			[]audit.Type{audit.TypeTaskStarted, audit.TypeTokenIssued}, func(t *testing.T, c *Claims, _ *TokenResponse) {
				tk, _ := f.st.GetTask(context.Background(), task.ID(c.TaskID))
				if !tk.ExpiresAt.Equal(now.Add(DefaultMaxTaskLifetime)) {
					t.Errorf("task expires %v, want capped at %v", tk.ExpiresAt, DefaultMaxTaskLifetime)
				}
			}},
		{"start task no purpose", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.Purpose = "" }) }, CodeInvalidRequest, refused, nil},
		{"start task no scope", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.Scope = "" }) }, CodeInvalidRequest, refused, nil},
		{"start task bad scope", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.Scope = "rm.rf:/" }) }, CodeInvalidScope, refused, nil},
		{"start task bad ttl", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.TaskTTL = "-5m" }) }, CodeInvalidRequest, refused, nil},
		{"start task bad budget", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.MaxActions = "-1" }) }, CodeInvalidRequest, refused, nil},
		{"start task bad sensitivity", func() *TokenRequest { return startReq(tokA, func(r *TokenRequest) { r.Sensitivity = "secret" }) }, CodeInvalidRequest, refused, nil},
		{"start task bad requested type", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.RequestedTokenType = "urn:ietf:params:oauth:token-type:id_token" })
		}, CodeInvalidRequest, refused, nil},
		{"start task foreign audience", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.Audience = "https://evil.test" })
		}, CodeInvalidTarget, refused, nil},
		{"start task for a gateway resource", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.Resource = testIssuer + "/mcp/go" })
		}, "", []audit.Type{audit.TypeTaskStarted, audit.TypeTokenIssued},
			func(t *testing.T, c *Claims, _ *TokenResponse) {
				if !cmp.Equal([]string(c.Audience), []string{testIssuer + "/mcp/go"}) {
					t.Errorf("aud = %q, want only the resource", c.Audience)
				}
			}},
		{"start task for the aggregated resource, audience and resource agreeing", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.Resource, r.Audience = testIssuer+"/mcp", testIssuer+"/mcp" })
		}, "", []audit.Type{audit.TypeTaskStarted, audit.TypeTokenIssued},
			func(t *testing.T, c *Claims, _ *TokenResponse) {
				if !cmp.Equal([]string(c.Audience), []string{testIssuer + "/mcp"}) {
					t.Errorf("aud = %q, want only the resource", c.Audience)
				}
			}},
		{"start task audience and resource disagree", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.Resource, r.Audience = testIssuer+"/mcp/go", testIssuer })
		}, CodeInvalidTarget, refused, nil},
		{"subject token missing", func() *TokenRequest { return startReq("", nil) }, CodeInvalidRequest, refused, nil},
		{"subject token bad type", func() *TokenRequest {
			return startReq(tokA, func(r *TokenRequest) { r.SubjectTokenType = "urn:ietf:params:oauth:token-type:id_token" })
		}, CodeInvalidRequest, refused, nil},
		{"subject token garbage", func() *TokenRequest { return startReq("garbage", nil) }, CodeInvalidGrant, refused, nil},
		{"subject token foreign", func() *TokenRequest {
			return startReq(signJWT(t, jose.EdDSA, newEdKey(t, "").priv, map[jose.HeaderKey]any{"typ": "at+jwt", "kid": "x"}, map[string]any{"iss": testIssuer}), nil)
		}, CodeInvalidGrant, refused, nil},
		{"subject token is an assertion", func() *TokenRequest { return startReq(f.assertion(agentA, assertOpts{}), nil) }, CodeInvalidGrant, refused, nil},

		// Join an admin-started task.
		{"join task", func() *TokenRequest {
			return exchange(tokA, func(r *TokenRequest) { r.TaskID, r.Scope = string(adminTask.ID), "file.read:/data/public/**" })
		}, "", issued, func(t *testing.T, c *Claims, _ *TokenResponse) {
			if c.TaskID != string(adminTask.ID) || c.Subject != "user:bob" || c.Scope != "file.read:/data/public/**" {
				t.Errorf("claims = %+v", c)
			}
		}},
		{"join task wider scope", func() *TokenRequest {
			return exchange(tokA, func(r *TokenRequest) { r.TaskID, r.Scope = string(adminTask.ID), "file.read:/**" })
		}, CodeInvalidScope, refused, nil},
		{"join other agent's task", func() *TokenRequest {
			return exchange(tokB, func(r *TokenRequest) { r.TaskID = string(adminTask.ID) })
		}, CodeInvalidGrant, refused, nil},
		{"join unknown task", func() *TokenRequest {
			return exchange(tokA, func(r *TokenRequest) { r.TaskID = string(task.NewID()) })
		}, CodeInvalidGrant, refused, nil},

		// Delegation.
		{"delegate", func() *TokenRequest {
			return delegateReq(parent, tokB, func(r *TokenRequest) { r.Scope = "file.read:/repo/docs/**" })
		}, "", []audit.Type{audit.TypeTaskDelegated, audit.TypeTokenIssued}, func(t *testing.T, c *Claims, _ *TokenResponse) {
			want := &Actor{Subject: agentB.String(), Act: &Actor{Subject: agentA.String()}}
			if diff := cmp.Diff(want, c.Act); diff != "" {
				t.Errorf("act (-want +got):\n%s", diff)
			}
			pc := f.claimsOf(parent)
			if c.Subject != "alice@example.org" || c.ClientID != agentB.String() || c.Scope != "file.read:/repo/docs/**" {
				t.Errorf("claims = %+v", c)
			}
			tk, _ := f.st.GetTask(context.Background(), task.ID(c.TaskID))
			if tk.Parent != task.ID(pc.TaskID) || tk.Depth != 1 || tk.OnBehalfOf != "task:"+pc.TaskID || !slices.Equal(tk.Actors, []identity.ID{agentA, agentB}) {
				t.Errorf("child task = %+v", tk)
			}
		}},
		{"delegate widens scope", func() *TokenRequest {
			return delegateReq(parent, tokB, func(r *TokenRequest) { r.Scope = "file.write:/repo/**" })
		}, CodeInvalidScope, refused, nil},
		{"delegate outlives parent", func() *TokenRequest {
			return delegateReq(parent, tokB, func(r *TokenRequest) { r.TaskTTL = "2h" })
		}, CodeInvalidGrant, refused, nil},
		{"delegate wider sensitivity", func() *TokenRequest {
			return delegateReq(parent, tokB, func(r *TokenRequest) { r.Sensitivity = "restricted" })
		}, CodeInvalidGrant, refused, nil},
		{"delegate to suspended", func() *TokenRequest {
			return delegateReq(parent, f.srv.mustSign(t, agentC, now), nil)
		}, CodeInvalidGrant, refused, nil},
		{"delegate with task actor token", func() *TokenRequest { return delegateReq(parent, parent, nil) }, CodeInvalidGrant, refused, nil},
		{"delegate from agent token", func() *TokenRequest { return delegateReq(tokA, tokB, nil) }, CodeInvalidRequest, refused, nil},
		{"delegate bad actor type", func() *TokenRequest {
			return delegateReq(parent, tokB, func(r *TokenRequest) { r.ActorTokenType = "urn:x" })
		}, CodeInvalidRequest, refused, nil},

		// Renewal.
		{"renew", func() *TokenRequest { return exchange(parent, nil) }, "", issued, func(t *testing.T, c *Claims, _ *TokenResponse) {
			pc := f.claimsOf(parent)
			if c.TaskID != pc.TaskID || c.ID == pc.ID || c.Scope != pc.Scope || c.Subject != pc.Subject {
				t.Errorf("renewed claims = %+v", c)
			}
		}},
		{"renew with purpose", func() *TokenRequest { return exchange(parent, func(r *TokenRequest) { r.Purpose = "x" }) }, CodeInvalidRequest, refused, nil},
		{"renew wider scope", func() *TokenRequest { return exchange(parent, func(r *TokenRequest) { r.Scope = "file.read:/**" }) }, CodeInvalidScope, refused, nil},

		// DPoP-bound subject tokens.
		{"bound subject without proof", func() *TokenRequest { return startReq(boundA, nil) }, CodeInvalidDPoPProof, refused, nil},
		{"bound subject proof by other key", func() *TokenRequest {
			return startReq(boundA, func(r *TokenRequest) { r.DPoPProof = ok.proof(t, now, "POST", testTokenURL, "", proofOpts{}) })
		}, CodeInvalidDPoPProof, refused, nil},
		{"bound subject with proof", func() *TokenRequest {
			return startReq(boundA, func(r *TokenRequest) { r.DPoPProof = dk.proof(t, now, "POST", testTokenURL, "", proofOpts{}) })
		}, "", []audit.Type{audit.TypeTaskStarted, audit.TypeTokenIssued}, func(t *testing.T, c *Claims, resp *TokenResponse) {
			if c.JKT() != dk.thumbprint(t) || resp.TokenType != "DPoP" {
				t.Errorf("exchanged token of a bound subject is bound to %+v", c.Cnf)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f.rec.take()
			resp, err := f.srv.Token(context.Background(), tt.req())
			if got := oauthCode(err); got != tt.want {
				t.Fatalf("Token = %q (%v), want %q", got, err, tt.want)
			}
			evs := f.rec.take()
			if diff := cmp.Diff(tt.events, eventTypes(evs)); diff != "" {
				t.Errorf("audit events (-want +got):\n%s", diff)
			}
			for _, ev := range evs {
				if _, ok := ev.Details["grant_type"]; !ok {
					t.Errorf("event %s lacks grant_type", ev.Type)
				}
				if ev.Type == audit.TypeTokenRefused && (ev.Reason == "" || ev.Details["error"] != tt.want) {
					t.Errorf("refusal event = %+v", ev)
				}
				if ev.Type == audit.TypeTokenIssued && ev.Details["jti"] == "" {
					t.Errorf("issued event lacks jti: %+v", ev)
				}
				for _, v := range ev.Details {
					if resp != nil && v == resp.AccessToken {
						t.Errorf("event %s contains the token", ev.Type)
					}
				}
			}
			if err != nil {
				var e *Error
				if !errors.As(err, &e) || e.Status < 400 || e.Status >= 500 {
					t.Errorf("error status = %d", e.Status)
				}
				return
			}
			c := f.claimsOf(resp.AccessToken)
			if _, verr := f.srv.Verifier().Verify(context.Background(), VerifyRequest{Token: resp.AccessToken, Audiences: c.Audience[:1]}); verr != nil && c.Cnf == nil {
				t.Errorf("issued token does not verify: %v", verr)
			}
			if tt.check != nil {
				tt.check(t, c, resp)
			}
		})
	}
}

// mustSign issues an agent token directly (for agents that could not get
// one through the endpoint, like a suspended one).
func (s *Server) mustSign(t testing.TB, id identity.ID, now time.Time) string {
	t.Helper()
	raw, err := s.keys.Sign(&Claims{Issuer: testIssuer, Subject: id.String(), Audience: jwt.Audience{testIssuer},
		Expiry: jwt.NewNumericDate(now.Add(time.Minute)), IssuedAt: jwt.NewNumericDate(now), ID: newJTI(), ClientID: id.String(), Use: UseAgent})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func mustScope(s string) task.Scope {
	sc, err := task.ParseScope(s)
	if err != nil {
		panic(err)
	}
	return sc
}

func TestTokenAuditFailureFailsClosed(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	tokA := f.agentToken(agentA)
	f.rec.setFail(audit.ErrUnavailable)
	for name, r := range map[string]*TokenRequest{
		"agent token": f.ccRequest(agentA, assertOpts{}),
		"start task":  startReq(tokA, nil),
	} {
		resp, err := f.srv.Token(context.Background(), r)
		var e *Error
		if resp != nil || !errors.As(err, &e) || e.Code != CodeTemporarilyUnavailable || e.Status != 503 {
			t.Errorf("%s with audit down = %+v, %v; want 503 temporarily_unavailable", name, resp, err)
		}
		if e != nil && e.Description != "the authorization server is temporarily unable to serve the request" {
			t.Errorf("%s: description leaks internals: %q", name, e.Description)
		}
	}
	tasks, _ := f.st.ListTasks(context.Background(), task.Filter{Status: task.StatusActive})
	if len(tasks) != 0 {
		t.Errorf("a task whose start could not be recorded is still active: %+v", tasks[0])
	}
}

func TestDelegationChainAndRevocation(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	tokA, tokB := f.agentToken(agentA), f.agentToken(agentB)
	parent := f.mustToken(startReq(tokA, nil)).AccessToken
	child := f.mustToken(delegateReq(parent, tokB, func(r *TokenRequest) { r.Scope = "file.read:/repo/docs/**" })).AccessToken
	admin := Caller{Admin: true}
	for _, tok := range []string{parent, child} {
		if in := f.srv.Introspect(ctx, admin, tok); !in.Active {
			t.Fatalf("Introspect before revocation = inactive")
		}
	}
	in := f.srv.Introspect(ctx, Caller{Agent: agentA}, child)
	if !in.Active || in.TaskID == "" || in.Act == nil || in.Act.Act == nil || in.Act.Act.Subject != agentA.String() || in.ClientID != agentB.String() {
		t.Errorf("Introspect(child) by the parent agent = %+v", in)
	}
	if in := f.srv.Introspect(ctx, Caller{Agent: agentD}, child); in.Active {
		t.Error("an unrelated agent can introspect the token")
	}
	// Revoke the parent task as the admin service would: store, then revocations.
	ids, err := f.st.FinishTask(ctx, task.ID(f.claimsOf(parent).TaskID), task.StatusRevoked, "test", f.clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	f.srv.Revocations().RevokeTasks(ids...)
	for _, tok := range []string{parent, child} {
		if in := f.srv.Introspect(ctx, admin, tok); in.Active {
			t.Errorf("Introspect after revoking the parent = %+v, want inactive", in)
		}
	}
	if _, err := f.srv.Token(ctx, exchange(child, nil)); oauthCode(err) != CodeInvalidGrant {
		t.Errorf("renewing a revoked child = %v, want invalid_grant", err)
	}
}

func TestRevoke(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	tokA := f.agentToken(agentA)
	tokB := f.agentToken(agentB)
	if err := f.srv.Revoke(ctx, Caller{Agent: agentB}, tokA); oauthCode(err) != CodeUnauthorizedClient {
		t.Errorf("Revoke of another agent's token = %v, want unauthorized_client", err)
	}
	if err := f.srv.Revoke(ctx, Caller{}, tokA); oauthCode(err) != CodeInvalidClient {
		t.Errorf("Revoke without a caller = %v, want invalid_client", err)
	}
	if err := f.srv.Revoke(ctx, Caller{Agent: agentA}, "garbage"); err != nil {
		t.Errorf("Revoke of garbage = %v, want success", err)
	}
	f.rec.take()
	if err := f.srv.Revoke(ctx, Caller{Agent: agentA}, tokA); err != nil {
		t.Fatalf("Revoke own token: %v", err)
	}
	if got := eventTypes(f.rec.take()); !slices.Equal(got, []audit.Type{audit.TypeTokenRevoked}) {
		t.Errorf("events = %v", got)
	}
	if _, err := f.srv.Verifier().Verify(ctx, VerifyRequest{Token: tokA}); oauthCode(err) != CodeInvalidToken {
		t.Errorf("Verify after revocation = %v", err)
	}
	if err := f.srv.Revoke(ctx, Caller{Agent: agentA}, tokA); err != nil {
		t.Errorf("revoking twice = %v", err)
	}
	if err := f.srv.Revoke(ctx, Caller{Admin: true}, tokB); err != nil {
		t.Errorf("admin revoke = %v", err)
	}
	// The revocation is in the store: a fresh replica refuses the token.
	rev := NewRevocations(f.clock.Now)
	if err := rev.Load(ctx, f.st, f.st, f.st, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if rev.check(f.claimsOf(tokB).ID, "", nil) == "" {
		t.Error("revocation not persisted")
	}
}

func TestSuspendedAgentTokensRefused(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	tokA, tokB := f.agentToken(agentA), f.agentToken(agentB)
	parent := f.mustToken(startReq(tokA, nil)).AccessToken
	child := f.mustToken(delegateReq(parent, tokB, nil)).AccessToken
	f.srv.Revocations().SetAgentActive(agentA, false)
	_, _ = f.st.SetAgentStatus(ctx, agentA, identity.StatusSuspended, f.clock.Now())
	for name, tok := range map[string]string{"agent": tokA, "task": parent, "child": child} {
		if _, err := f.srv.Verifier().Verify(ctx, VerifyRequest{Token: tok, Audiences: []string{testIssuer}}); oauthCode(err) != CodeInvalidToken {
			t.Errorf("%s token of a suspended agent: Verify = %v", name, err)
		}
	}
}

func TestMetadataAndJWKS(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	m := f.srv.Metadata()
	if m.Issuer != testIssuer || m.TokenEndpoint != testTokenURL || !slices.Contains(m.GrantTypesSupported, GrantTokenExchange) ||
		!slices.Equal(m.TokenEndpointAuthMethodsSupported, []string{"private_key_jwt"}) {
		t.Errorf("Metadata = %+v", m)
	}
	b, _ := json.Marshal(f.srv.Keyring().JWKS())
	var raw struct {
		Keys []map[string]any `json:"keys"`
	}
	_ = json.Unmarshal(b, &raw)
	if len(raw.Keys) != 1 || raw.Keys[0]["d"] != nil || raw.Keys[0]["kty"] != "OKP" || raw.Keys[0]["alg"] != "EdDSA" {
		t.Errorf("JWKS = %s", b)
	}
	_ = base64.RawURLEncoding
}

func TestFederationJWKSSources(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &f.fedK.PublicKey, KeyID: "fed1", Algorithm: "RS256", Use: "sig"}}})
	down := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "no", 500) }))
	defer down.Close()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(`{"keys":[` + string(make([]byte, MaxJWKSSize)) + `]}`))
	}))
	defer huge.Close()
	for _, tc := range []struct {
		name string
		fed  FederatedIssuer
		want string
	}{
		{"static", FederatedIssuer{Issuer: fedIssuer, JWKS: jwks, Audience: testIssuer}, ""},
		{"unreachable", FederatedIssuer{Issuer: fedIssuer, JWKSURL: down.URL, Audience: testIssuer}, CodeTemporarilyUnavailable},
		{"oversized", FederatedIssuer{Issuer: fedIssuer, JWKSURL: huge.URL, Audience: testIssuer}, CodeTemporarilyUnavailable},
	} {
		srv, err := NewServer(ctx, Config{Issuer: testIssuer, TrustDomain: testTD, Identities: f.st, Tasks: f.st, Entitlements: f.st, Tokens: f.st, Audit: f.rec, Sealer: sealtest.Keyring(),
			Federation: []FederatedIssuer{tc.fed}, Now: f.clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		_, err = srv.Token(ctx, &TokenRequest{GrantType: GrantJWTBearer, Assertion: f.federated(nil, "fed1", nil)})
		if got := oauthCode(err); got != tc.want {
			t.Errorf("%s: Token = %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestStartTaskRefusesClaimedPrincipal: an agent cannot name its own
// principal; only its owner, or none, is accepted.
func TestStartTaskRefusesClaimedPrincipal(t *testing.T) {
	for _, obo := range []string{"ceo@example.com", "task:tsk_x", "ALICE@example.org", "alice@example.org "} {
		r := &TokenRequest{OnBehalfOf: obo}
		a := &identity.Agent{Owner: "alice@example.org"}
		if _, err := principalOf(r, a); AsError(err).Code != CodeInvalidRequest {
			t.Errorf("principalOf(%q) = %v, want invalid_request", obo, err)
		}
	}
	if p, err := principalOf(&TokenRequest{}, &identity.Agent{Owner: "alice@example.org"}); err != nil || p != "alice@example.org" {
		t.Errorf("principalOf(none) = %q, %v, want the owner", p, err)
	}
}

// TestTaintedTaskEvents: a task delegated from a tainted task, or started
// by an agent within its taint window, starts tainted, and its
// task.delegated / task.started event says so.
func TestTaintedTaskEvents(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	tokA, tokB := f.agentToken(agentA), f.agentToken(agentB)
	// token returns the response to r and the event of the task it started.
	token := func(r *TokenRequest) (*TokenResponse, audit.Event) {
		t.Helper()
		resp, err := f.srv.Token(ctx, r)
		if err != nil {
			t.Fatalf("Token() = %v", err)
		}
		evs := f.rec.take()
		if len(evs) == 0 {
			t.Fatal("no event recorded")
		}
		return resp, evs[0]
	}
	parent, ev := token(startReq(tokA, nil))
	if ev.Type != audit.TypeTaskStarted || ev.Details["taint"] != "" {
		t.Fatalf("clean start: %+v", ev)
	}
	now := f.clock.Now()
	if err := f.st.RaiseTaint(ctx, task.ID(f.claimsOf(parent.AccessToken).TaskID), task.SensitivityRestricted, now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	child, ev := token(delegateReq(parent.AccessToken, tokB, nil))
	stored, err := f.st.GetTask(ctx, task.ID(f.claimsOf(child.AccessToken).TaskID))
	if err != nil || stored.Taint != task.SensitivityRestricted {
		t.Fatalf("delegated task: %+v, %v; want taint restricted", stored, err)
	}
	if ev.Type != audit.TypeTaskDelegated || ev.Details["taint"] != "restricted" {
		t.Errorf("task.delegated event = %+v, want taint restricted", ev)
	}
	// agentA is tainted for the window: its next task starts tainted.
	if _, ev := token(startReq(tokA, nil)); ev.Type != audit.TypeTaskStarted || ev.Details["taint"] != "restricted" {
		t.Errorf("task.started within agentA's window = %+v, want taint restricted", ev)
	}
	// After the window, agentA starts clean again.
	f.clock.Advance(time.Hour)
	tokA = f.agentToken(agentA)
	if _, ev := token(startReq(tokA, nil)); ev.Type != audit.TypeTaskStarted || ev.Details["taint"] != "" {
		t.Errorf("task.started after agentA's window = %+v, want no taint", ev)
	}
}
