package httpapi_test

import (
	"context"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

const adminSecret = "admin-secret"

type env struct {
	t    *testing.T
	db   *sqlite.DB
	srv  *token.Server
	http *httptest.Server
	keys map[string]ed25519.PrivateKey
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "mandate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	ledger := mustLedger(t, db)
	srv, err := token.NewServer(ctx, token.Config{
		Sealer: sealtest.Keyring(),
		Issuer: ts.URL, TrustDomain: "example.org",
		Identities: db, Tasks: db, Entitlements: db, Tokens: db, Audit: ledger,
	})
	if err != nil {
		t.Fatal(err)
	}
	// Delegations are decided by the real pipeline with the shipped policies.
	set, err := policy.Compile(policy.DefaultSources())
	if err != nil {
		t.Fatal(err)
	}
	classes, err := policy.NewClassifier(policy.ClassifierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	pipeline, err := access.New(access.Config{
		Verifier: srv.Verifier(), Revocations: srv.Revocations(), Tasks: db, Agents: db,
		Engine: policy.NewEngine(set, nil), Classifier: classes, Recorder: ledger, MaxDelegationDepth: task.DefaultMaxDepth,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.DecideDelegationsWith(pipeline)
	httpapi.NewOAuth(httpapi.OAuthConfig{
		Server:    srv,
		AdminAuth: func(r *http.Request) bool { return r.Header.Get("Authorization") == "Bearer "+adminSecret },
	}).Register(mux)
	e := &env{t: t, db: db, srv: srv, http: ts, keys: map[string]ed25519.PrivateKey{}}
	return e
}

func (e *env) register(name string, requireDPoP bool) identity.ID {
	e.t.Helper()
	id, _ := identity.NewID("example.org", name)
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	e.keys[id.String()] = priv
	now := time.Now()
	err := e.db.CreateAgent(context.Background(), &identity.Agent{
		ID: id, Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: identity.TierAutonomous,
		Status: identity.StatusActive, Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}},
		RequireDPoP: requireDPoP, CreatedAt: now, UpdatedAt: now,
	})
	if err != nil {
		e.t.Fatal(err)
	}
	// Entitled to anything: these tests are about the protocol.
	all, _ := task.ParseScope("*")
	if _, err := e.db.SetEntitlement(context.Background(), id, &task.Entitlement{Scope: all, MaxSensitivity: task.SensitivityRestricted, MaxTaskTTL: 24 * time.Hour}, now); err != nil {
		e.t.Fatal(err)
	}
	return id
}

func (e *env) assertion(id identity.ID, aud string) string {
	e.t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: e.keys[id.String()]}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		e.t.Fatal(err)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	raw, err := jwt.Signed(s).Claims(jwt.Claims{Issuer: id.String(), Subject: id.String(), Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(time.Now().Add(time.Minute)), ID: base64.RawURLEncoding.EncodeToString(jti)}).Serialize()
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

func (e *env) clientAuth(id identity.ID, aud string) url.Values {
	return url.Values{"client_assertion_type": {token.ClientAssertionJWT}, "client_assertion": {e.assertion(id, aud)}}
}

// post sends a form and decodes the JSON answer.
func (e *env) post(path string, form url.Values, hdr http.Header) (int, map[string]any, http.Header) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.http.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	resp, err := e.http.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(body) > 0 {
		if err := json.Unmarshal(body, &m); err != nil {
			e.t.Fatalf("POST %s: non-JSON body %q", path, body)
		}
	}
	return resp.StatusCode, m, resp.Header
}

func (e *env) token(form url.Values, hdr http.Header) string {
	e.t.Helper()
	status, m, h := e.post(httpapi.PathOAuthToken, form, hdr)
	if status != http.StatusOK {
		e.t.Fatalf("token request = %d %v", status, m)
	}
	if h.Get("Cache-Control") != "no-store" {
		e.t.Errorf("token response Cache-Control = %q", h.Get("Cache-Control"))
	}
	return m["access_token"].(string)
}

func (e *env) agentToken(id identity.ID, hdr http.Header) string {
	f := e.clientAuth(id, e.http.URL+httpapi.PathOAuthToken)
	f.Set("grant_type", token.GrantClientCredentials)
	return e.token(f, hdr)
}

func exchangeForm(subject string, kv ...string) url.Values {
	f := url.Values{"grant_type": {token.GrantTokenExchange}, "subject_token": {subject}, "subject_token_type": {token.TokenTypeAccessToken}}
	for i := 0; i+1 < len(kv); i += 2 {
		f.Set(kv[i], kv[i+1])
	}
	return f
}

func (e *env) introspect(tok string, hdr http.Header, auth url.Values) map[string]any {
	e.t.Helper()
	f := url.Values{"token": {tok}}
	for k, v := range auth {
		f[k] = v
	}
	status, m, _ := e.post(httpapi.PathOAuthIntrospect, f, hdr)
	if status != http.StatusOK {
		e.t.Fatalf("introspect = %d %v", status, m)
	}
	return m
}

var adminHdr = http.Header{"Authorization": {"Bearer " + adminSecret}}

// TestOAuthEndToEnd: register → private_key_jwt → agent token → token
// exchange → task token verified against the published JWKS → delegation
// with narrowed scope and a two-level act chain → revoke the parent →
// introspection says inactive for parent and child.
func TestOAuthEndToEnd(t *testing.T) {
	e := newEnv(t)
	alpha, beta := e.register("alpha", false), e.register("beta", false)

	// Discovery.
	resp, err := http.Get(e.http.URL + httpapi.PathOAuthMetadata)
	if err != nil {
		t.Fatal(err)
	}
	var meta token.Metadata
	_ = json.NewDecoder(resp.Body).Decode(&meta)
	resp.Body.Close()
	if meta.Issuer != e.http.URL || meta.TokenEndpoint != e.http.URL+"/oauth/token" || meta.JWKSURI != e.http.URL+"/oauth/jwks" {
		t.Fatalf("metadata = %+v", meta)
	}

	agentTok := e.agentToken(alpha, nil)
	taskTok := e.token(exchangeForm(agentTok, "scope", "file.read:/repo/** file.write:/repo/src/** task.delegate:"+beta.String(), "purpose", "fix bug 42", "on_behalf_of", "alice@example.org"), nil)

	// Verify the task token independently against the JWKS served over HTTP.
	resp, err = http.Get(meta.JWKSURI)
	if err != nil {
		t.Fatal(err)
	}
	var jwks jose.JSONWebKeySet
	if err := json.NewDecoder(resp.Body).Decode(&jwks); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	parsed, err := jwt.ParseSigned(taskTok, []jose.SignatureAlgorithm{jose.EdDSA})
	if err != nil {
		t.Fatal(err)
	}
	if typ := parsed.Headers[0].ExtraHeaders["typ"]; typ != "at+jwt" {
		t.Errorf("typ = %v", typ)
	}
	var std jwt.Claims
	var ext struct {
		ClientID string       `json:"client_id"`
		Scope    string       `json:"scope"`
		TaskID   string       `json:"task_id"`
		Act      *token.Actor `json:"act"`
	}
	if err := parsed.Claims(jwks, &std, &ext); err != nil {
		t.Fatalf("task token does not verify against the JWKS: %v", err)
	}
	if err := std.ValidateWithLeeway(jwt.Expected{Issuer: meta.Issuer, AnyAudience: jwt.Audience{meta.Issuer}}, 0); err != nil {
		t.Fatal(err)
	}
	if std.Subject != "alice@example.org" || ext.ClientID != alpha.String() || ext.TaskID == "" || ext.Act == nil || ext.Act.Subject != alpha.String() {
		t.Fatalf("task token claims = %+v %+v", std, ext)
	}

	// A task whose scope does not name the delegate cannot delegate: the
	// pipeline decides task.delegate like any action.
	betaTok := e.agentToken(beta, nil)
	noDelegate := e.token(exchangeForm(e.agentToken(alpha, nil), "scope", "file.read:/repo/**", "purpose", "read"), nil)
	if status, m, _ := e.post(httpapi.PathOAuthToken, exchangeForm(noDelegate, "actor_token", betaTok, "actor_token_type", token.TokenTypeAccessToken), nil); status != http.StatusBadRequest || m["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(m["error_description"]), "delegation denied") {
		t.Errorf("delegating outside the task's scope = %d %v, want 400 invalid_grant", status, m)
	}

	// Delegate to beta with a narrower scope.
	childTok := e.token(exchangeForm(taskTok, "actor_token", betaTok, "actor_token_type", token.TokenTypeAccessToken, "scope", "file.read:/repo/docs/**"), nil)
	child := e.introspect(childTok, nil, e.clientAuth(alpha, meta.IntrospectionEndpoint))
	actJSON, _ := json.Marshal(child["act"])
	var act token.Actor
	_ = json.Unmarshal(actJSON, &act)
	if child["active"] != true || !slices.Equal(act.Chain(), []string{alpha.String(), beta.String()}) || child["scope"] != "file.read:/repo/docs/**" || child["sub"] != "alice@example.org" {
		t.Fatalf("introspect(child) = %v", child)
	}

	// Widening is refused with invalid_scope.
	status, m, _ := e.post(httpapi.PathOAuthToken, exchangeForm(taskTok, "actor_token", betaTok, "actor_token_type", token.TokenTypeAccessToken, "scope", "file.write:/**"), nil)
	if status != 400 || m["error"] != "invalid_scope" {
		t.Errorf("widening delegation = %d %v", status, m)
	}

	// Revoke the parent task as the admin service does: store, then the
	// in-memory revocation state.
	ids, err := e.db.FinishTask(context.Background(), task.ID(ext.TaskID), task.StatusRevoked, "test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e.srv.Revocations().RevokeTasks(ids...)
	for name, tok := range map[string]string{"parent": taskTok, "child": childTok} {
		if in := e.introspect(tok, adminHdr, nil); in["active"] != false || len(in) != 1 {
			t.Errorf("introspect(%s) after revoking the parent = %v, want {active:false}", name, in)
		}
	}

	// Every issue and refusal is in the audit log.
	evs, err := e.db.ListEvents(context.Background(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var types []audit.Type
	for _, ev := range evs {
		types = append(types, ev.Type)
		if b, _ := json.Marshal(ev); strings.Contains(string(b), taskTok) || strings.Contains(string(b), agentTok) {
			t.Errorf("event %s contains a token", ev.Type)
		}
	}
	for _, want := range []audit.Type{audit.TypeTokenIssued, audit.TypeTaskStarted, audit.TypeTaskDelegated, audit.TypeTokenRefused} {
		if !slices.Contains(types, want) {
			t.Errorf("audit log lacks %s: %v", want, types)
		}
	}
}

type dpopSigner struct {
	priv ed25519.PrivateKey
	jkt  string
}

func newDPoP(t *testing.T) *dpopSigner {
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	k := jose.JSONWebKey{Key: pub}
	tp, err := k.Thumbprint(cryptoSHA256)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopSigner{priv: priv, jkt: base64.RawURLEncoding.EncodeToString(tp)}
}

func (d *dpopSigner) proof(t *testing.T, method, u, accessToken string) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: d.priv}, (&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	c := map[string]any{"htm": method, "htu": u, "iat": time.Now().Unix(), "jti": base64.RawURLEncoding.EncodeToString(jti)}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	raw, err := jwt.Signed(s).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestOAuthDPoP: a DPoP-bound token is refused without its proof and with a
// proof signed by another key.
func TestOAuthDPoP(t *testing.T) {
	e := newEnv(t)
	delta := e.register("delta", true)
	tokenURL := e.http.URL + httpapi.PathOAuthToken
	f := e.clientAuth(delta, tokenURL)
	f.Set("grant_type", token.GrantClientCredentials)
	if status, m, _ := e.post(httpapi.PathOAuthToken, f, nil); status != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("RequireDPoP agent without proof = %d %v", status, m)
	}
	key, other := newDPoP(t), newDPoP(t)
	agentTok := e.agentToken(delta, http.Header{"Dpop": {key.proof(t, "POST", tokenURL, "")}})
	start := exchangeForm(agentTok, "scope", "tool.call:github/*", "purpose", "triage")
	if status, m, _ := e.post(httpapi.PathOAuthToken, start, nil); status != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("exchange of a bound token without proof = %d %v", status, m)
	}
	if status, m, _ := e.post(httpapi.PathOAuthToken, start, http.Header{"Dpop": {other.proof(t, "POST", tokenURL, "")}}); status != 400 || m["error"] != "invalid_dpop_proof" {
		t.Fatalf("exchange with another key's proof = %d %v", status, m)
	}
	taskTok := e.token(start, http.Header{"Dpop": {key.proof(t, "POST", tokenURL, "")}})
	in := e.introspect(taskTok, adminHdr, nil)
	if cnf, _ := in["cnf"].(map[string]any); in["token_type"] != "DPoP" || cnf["jkt"] != key.jkt {
		t.Fatalf("introspect(bound) = %v", in)
	}
	const rs = "https://gateway.example/mcp"
	ctx := context.Background()
	v := e.srv.Verifier()
	for name, tc := range map[string]struct {
		proof string
		want  string
	}{
		"no proof":     {"", token.CodeInvalidToken},
		"other key":    {other.proof(t, "POST", rs, taskTok), token.CodeInvalidDPoPProof},
		"wrong method": {key.proof(t, "GET", rs, taskTok), token.CodeInvalidDPoPProof},
		"wrong url":    {key.proof(t, "POST", "https://gateway.example/other", taskTok), token.CodeInvalidDPoPProof},
		"right key":    {key.proof(t, "POST", rs, taskTok), ""},
	} {
		_, err := v.Verify(ctx, token.VerifyRequest{Token: taskTok, DPoPProof: tc.proof, Method: "POST", URL: rs})
		got := ""
		if err != nil {
			got = token.AsError(err).Code
		}
		if got != tc.want {
			t.Errorf("%s: Verify = %v, want %q", name, err, tc.want)
		}
	}
}

func TestOAuthBadRequests(t *testing.T) {
	e := newEnv(t)
	alpha := e.register("alpha", false)
	do := func(method, path, ctype, body string, hdr http.Header) (int, map[string]any, http.Header) {
		req, _ := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, vs := range hdr {
			req.Header[k] = vs
		}
		resp, err := e.http.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return resp.StatusCode, m, resp.Header
	}
	const form = "application/x-www-form-urlencoded"
	tests := []struct {
		name, path, ctype, body string
		hdr                     http.Header
		status                  int
		code                    string
	}{
		{"json body", "/oauth/token", "application/json", `{"grant_type":"client_credentials"}`, nil, 400, "invalid_request"},
		{"no content type", "/oauth/token", "", "grant_type=client_credentials", nil, 400, "invalid_request"},
		{"oversized body", "/oauth/token", form, "grant_type=client_credentials&x=" + strings.Repeat("a", httpapi.MaxOAuthBodySize), nil, 413, "invalid_request"},
		{"repeated parameter", "/oauth/token", form, "grant_type=client_credentials&grant_type=password", nil, 400, "invalid_request"},
		{"query parameters", "/oauth/token?grant_type=client_credentials", form, "", nil, 400, "invalid_request"},
		{"bad encoding", "/oauth/token", form, "grant_type=%zz", nil, 400, "invalid_request"},
		{"no grant type", "/oauth/token", form, "", nil, 400, "invalid_request"},
		{"unsupported grant", "/oauth/token", form, "grant_type=password&username=a&password=b", nil, 400, "unsupported_grant_type"},
		{"basic auth", "/oauth/token", form, "grant_type=client_credentials", http.Header{"Authorization": {"Basic YTpi"}}, 401, "invalid_client"},
		{"no client auth", "/oauth/token", form, "grant_type=client_credentials", nil, 401, "invalid_client"},
		{"two dpop headers", "/oauth/token", form, url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {token.ClientAssertionJWT}, "client_assertion": {e.assertion(alpha, e.http.URL)}}.Encode(),
			http.Header{"Dpop": {"a", "b"}}, 400, "invalid_dpop_proof"},
		{"garbage dpop", "/oauth/token", form, url.Values{"grant_type": {"client_credentials"}, "client_assertion_type": {token.ClientAssertionJWT}, "client_assertion": {e.assertion(alpha, e.http.URL)}}.Encode(),
			http.Header{"Dpop": {"garbage"}}, 400, "invalid_dpop_proof"},
		{"introspect unauthenticated", "/oauth/introspect", form, "token=abc", nil, 401, "invalid_client"},
		{"introspect wrong admin secret", "/oauth/introspect", form, "token=abc", http.Header{"Authorization": {"Bearer nope"}}, 401, "invalid_client"},
		{"introspect no token", "/oauth/introspect", form, "", adminHdr, 400, "invalid_request"},
		{"revoke unauthenticated", "/oauth/revoke", form, "token=abc", nil, 401, "invalid_client"},
		{"revoke no token", "/oauth/revoke", form, "", adminHdr, 400, "invalid_request"},
		// RFC 6749 Appendix B: parameters are UTF-8; nothing else is recorded.
		{"grant type not UTF-8", "/oauth/token", form, "grant_type=%FF", nil, 400, "invalid_request"},
		{"client id not UTF-8", "/oauth/token", form, "grant_type=client_credentials&client_id=%FF%FE", nil, 400, "invalid_request"},
		{"parameter name not UTF-8", "/oauth/token", form, "grant_type=client_credentials&%FF=1", nil, 400, "invalid_request"},
		{"purpose not UTF-8", "/oauth/token", form, "grant_type=" + url.QueryEscape(token.GrantTokenExchange) + "&purpose=fix%C3", nil, 400, "invalid_request"},
		{"introspect client id not UTF-8", "/oauth/introspect", form, "token=abc&client_id=%FF%FE", nil, 400, "invalid_request"},
		{"revoke token not UTF-8", "/oauth/revoke", form, "token=%C3%28", adminHdr, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, m, h := do(http.MethodPost, tt.path, tt.ctype, tt.body, tt.hdr)
			if status != tt.status || m["error"] != tt.code {
				t.Fatalf("POST %s = %d %v, want %d %s", tt.path, status, m, tt.status, tt.code)
			}
			if h.Get("Cache-Control") != "no-store" || h.Get("Content-Type") != "application/json" {
				t.Errorf("headers = %v", h)
			}
		})
	}
	if status, _, _ := do(http.MethodGet, "/oauth/token", "", "", nil); status != http.StatusMethodNotAllowed {
		t.Errorf("GET /oauth/token = %d, want 405", status)
	}
	// Garbage tokens: introspection inactive, revocation succeeds (RFC 7009).
	if in := e.introspect("garbage", adminHdr, nil); in["active"] != false {
		t.Errorf("introspect(garbage) = %v", in)
	}
	if status, _, _ := e.post("/oauth/revoke", url.Values{"token": {"garbage"}}, adminHdr); status != 200 {
		t.Errorf("revoke(garbage) = %d", status)
	}
}

func TestOAuthRevokeEndpoint(t *testing.T) {
	e := newEnv(t)
	alpha, beta := e.register("alpha", false), e.register("beta", false)
	tok := e.agentToken(alpha, nil)
	revokeURL := e.http.URL + httpapi.PathOAuthRevoke
	f := e.clientAuth(beta, revokeURL)
	f.Set("token", tok)
	if status, m, _ := e.post(httpapi.PathOAuthRevoke, f, nil); status != 400 || m["error"] != "unauthorized_client" {
		t.Errorf("revoke by another agent = %d %v", status, m)
	}
	f = e.clientAuth(alpha, revokeURL)
	f.Set("token", tok)
	if status, m, _ := e.post(httpapi.PathOAuthRevoke, f, nil); status != 200 {
		t.Fatalf("revoke own token = %d %v", status, m)
	}
	if in := e.introspect(tok, adminHdr, nil); in["active"] != false {
		t.Errorf("introspect after revoke = %v", in)
	}
}

// TestOAuthRevokeEndTask: end_task=true on the revocation endpoint ends
// the task a task token is for, and answers what happened as JSON; any
// other value of end_task, or a reason without it, is refused and leaves
// the task as it was.
func TestOAuthRevokeEndTask(t *testing.T) {
	e := newEnv(t)
	alpha, beta := e.register("alpha", false), e.register("beta", false)
	tok := e.token(exchangeForm(e.agentToken(alpha, nil), "purpose", "p", "scope", "file.read:/r/**"), nil)
	revokeURL := e.http.URL + httpapi.PathOAuthRevoke
	for _, tc := range []struct {
		name  string
		as    identity.ID
		extra url.Values
		want  int
		code  string
	}{
		{"end_task not true", alpha, url.Values{"end_task": {"1"}}, 400, "invalid_request"},
		{"end_task empty", alpha, url.Values{"end_task": {""}}, 400, "invalid_request"},
		{"reason without end_task", alpha, url.Values{"reason": {"x"}}, 400, "invalid_request"},
		{"another agent", beta, url.Values{"end_task": {"true"}}, 400, "unauthorized_client"},
	} {
		f := e.clientAuth(tc.as, revokeURL)
		f.Set("token", tok)
		for k, v := range tc.extra {
			f[k] = v
		}
		if status, m, _ := e.post(httpapi.PathOAuthRevoke, f, nil); status != tc.want || m["error"] != tc.code {
			t.Errorf("%s: revoke = %d %v, want %d %s", tc.name, status, m, tc.want, tc.code)
		}
	}
	if in := e.introspect(tok, adminHdr, nil); in["active"] != true {
		t.Fatalf("a refused end_task changed the token: %v", in)
	}
	f := e.clientAuth(alpha, revokeURL)
	f.Set("token", tok)
	f.Set("end_task", "true")
	f.Set("reason", "work done")
	status, m, _ := e.post(httpapi.PathOAuthRevoke, f, nil)
	if status != 200 || m["status"] != "ended" || m["task_id"] == nil {
		t.Fatalf("end_task = %d %v, want 200 and status ended", status, m)
	}
	if in := e.introspect(tok, adminHdr, nil); in["active"] != false {
		t.Errorf("introspect after end_task = %v", in)
	}
}

var cryptoSHA256 = crypto.SHA256
