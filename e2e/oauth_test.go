// Package e2e holds end-to-end tests: a real mandate server (server.New on
// 127.0.0.1:0 with a temporary data directory), driven only through its
// public interfaces — the admin API on the local socket and the OAuth
// endpoints over HTTP — with tokens checked by an independent JOSE library
// (lestrrat-go/jwx) against the published JWKS.
package e2e

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
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/lestrrat-go/jwx/v3/jwk"
	"github.com/lestrrat-go/jwx/v3/jws"
	"github.com/lestrrat-go/jwx/v3/jwt"

	"github.com/mandatehq/mandate/internal/server"
)

// env is a running server and clients for it.
type env struct {
	t      *testing.T
	base   string // public URL
	meta   map[string]any
	admin  *http.Client // over the admin socket
	client *http.Client
}

// start runs a server with the defaults a user gets, changed by opts.
func start(t *testing.T, opts ...func(*server.Config)) *env {
	t.Helper()
	dir, err := os.MkdirTemp("", "mandate-e2e-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.TrustDomain = "example.org"
	for _, o := range opts {
		o(&cfg)
	}
	srv, err := server.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("server.New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	sock := srv.SocketPath()
	e := &env{
		t: t, base: srv.PublicURL(),
		admin: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}},
		client: &http.Client{Timeout: 10 * time.Second},
	}
	status, body := e.do(e.client, "GET", e.base+"/.well-known/oauth-authorization-server", "", nil)
	if status != 200 || json.Unmarshal(body, &e.meta) != nil {
		t.Fatalf("metadata: %d %s", status, body)
	}
	return e
}

func (e *env) do(c *http.Client, method, u, contentType string, body io.Reader, hdr ...string) (int, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// adminJSON calls the admin API over the local socket.
func (e *env) adminJSON(method, path string, in any) map[string]any {
	e.t.Helper()
	var body io.Reader
	if in != nil {
		b, _ := json.Marshal(in)
		body = strings.NewReader(string(b))
	}
	status, b := e.do(e.admin, method, "http://mandate"+path, "application/json", body)
	if status >= 300 {
		e.t.Fatalf("admin %s %s = %d %s", method, path, status, b)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatal(err)
	}
	return out
}

// agent is a registered agent and its private key.
type agent struct {
	id  string
	kid string
	key ed25519.PrivateKey
}

// register registers an agent entitled to any task (these tests are about
// the protocol; adversarial_entitlement_test.go narrows entitlements).
func (e *env) register(name, tier string) agent {
	e.t.Helper()
	return e.registerEntitled(name, tier, map[string]any{"scope": []string{"*"}, "max_sensitivity": "restricted", "max_task_ttl": "24h"})
}

// registerEntitled registers an agent with entitlement ent (nil: none).
func (e *env) registerEntitled(name, tier string, ent map[string]any) agent {
	e.t.Helper()
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	jwkPub := jose.JSONWebKey{Key: pub, KeyID: name + "-k1", Algorithm: "EdDSA", Use: "sig"}
	req := map[string]any{
		"name": name, "owner": "alice@example.com", "escalation": "oncall@example.com", "tier": tier,
		"keys": []any{jwkPub},
	}
	if ent != nil {
		req["entitlement"] = ent
	}
	out := e.adminJSON("POST", "/admin/v1/agents", req)
	return agent{id: out["id"].(string), kid: name + "-k1", key: priv}
}

// assertion is a private_key_jwt client assertion (RFC 7523) for a.
func (e *env) assertion(a agent) string {
	e.t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: a.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", a.kid))
	if err != nil {
		e.t.Fatal(err)
	}
	now := time.Now()
	raw, err := josejwt.Signed(sig).Claims(josejwt.Claims{
		Issuer: a.id, Subject: a.id, Audience: josejwt.Audience{e.meta["token_endpoint"].(string)},
		ID: rand.Text(), IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		e.t.Fatal(err)
	}
	return raw
}

// token posts form to the token endpoint and returns the status and JSON.
func (e *env) token(form url.Values, hdr ...string) (int, map[string]any) {
	e.t.Helper()
	status, b := e.do(e.client, "POST", e.meta["token_endpoint"].(string), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()), hdr...)
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		e.t.Fatalf("token endpoint: %d %s", status, b)
	}
	return status, out
}

func (e *env) agentToken(a agent, hdr ...string) string {
	e.t.Helper()
	status, out := e.token(url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {e.assertion(a)},
	}, hdr...)
	if status != 200 {
		e.t.Fatalf("client_credentials for %s = %d %v", a.id, status, out)
	}
	return out["access_token"].(string)
}

const (
	grantExchange   = "urn:ietf:params:oauth:grant-type:token-exchange"
	typeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
)

// verifyIndependently checks raw with jwx against the published JWKS:
// signature, typ, issuer, audience and times; it returns the claims.
func (e *env) verifyIndependently(raw string) map[string]any {
	e.t.Helper()
	status, b := e.do(e.client, "GET", e.meta["jwks_uri"].(string), "", nil)
	if status != 200 {
		e.t.Fatalf("jwks: %d", status)
	}
	set, err := jwk.Parse(b)
	if err != nil {
		e.t.Fatalf("jwx: parse JWKS: %v", err)
	}
	msg, err := jws.Parse([]byte(raw))
	if err != nil {
		e.t.Fatal(err)
	}
	if typ, _ := msg.Signatures()[0].ProtectedHeaders().Type(); typ != "at+jwt" {
		e.t.Fatalf("typ = %q, want at+jwt (RFC 9068)", typ)
	}
	tok, err := jwt.Parse([]byte(raw), jwt.WithKeySet(set), jwt.WithValidate(true), jwt.WithIssuer(e.base))
	if err != nil {
		e.t.Fatalf("jwx rejected a mandate token: %v", err)
	}
	claims := map[string]any{}
	for _, k := range tok.Keys() {
		var v any
		if err := tok.Get(k, &v); err == nil {
			claims[k] = v
		}
	}
	for _, k := range []string{"iss", "sub", "aud", "exp", "iat", "jti", "client_id"} {
		if _, ok := claims[k]; !ok {
			e.t.Errorf("token lacks RFC 9068 claim %q: %v", k, claims)
		}
	}
	return claims
}

func (e *env) introspect(caller agent, raw string) map[string]any {
	e.t.Helper()
	form := url.Values{
		"token":                 {raw},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {e.assertion(caller)},
	}
	status, b := e.do(e.client, "POST", e.meta["introspection_endpoint"].(string), "application/x-www-form-urlencoded", strings.NewReader(form.Encode()))
	var out map[string]any
	if status != 200 || json.Unmarshal(b, &out) != nil {
		e.t.Fatalf("introspect = %d %s", status, b)
	}
	return out
}

// TestAgentToTaskToDelegationToRevocation is the core authority's story
// end to end: register → private_key_jwt → agent token → token exchange →
// task token (verified independently) → delegation with narrowed scope and a
// two-level act chain → revoke the parent → both inactive.
func TestAgentToTaskToDelegationToRevocation(t *testing.T) {
	e := start(t)
	a := e.register("planner", "autonomous")
	b := e.register("coder", "supervised")

	agentTok := e.agentToken(a)
	ac := e.verifyIndependently(agentTok)
	if ac["sub"] != a.id || ac["client_id"] != a.id {
		t.Fatalf("agent token sub/client_id = %v/%v, want %s", ac["sub"], ac["client_id"], a.id)
	}

	// Delegating to the coder is in the task's scope, like any action.
	parentScope := "file.read:/repo/** file.write:/repo/src/** task.delegate:" + b.id
	status, out := e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {agentTok}, "subject_token_type": {typeAccessToken},
		"scope": {parentScope}, "purpose": {"fix the flaky test"},
		"on_behalf_of": {"alice@example.com"},
	})
	if status != 200 {
		t.Fatalf("start task = %d %v", status, out)
	}
	if out["issued_token_type"] != typeAccessToken || out["token_type"] != "Bearer" {
		t.Errorf("exchange response = %v", out)
	}
	parentTok := out["access_token"].(string)
	pc := e.verifyIndependently(parentTok)
	if pc["sub"] != "alice@example.com" || pc["client_id"] != a.id || pc["task_id"] == nil || pc["scope"] != parentScope {
		t.Fatalf("task token claims = %v", pc)
	}
	if exp, iat := pc["exp"].(time.Time), pc["iat"].(time.Time); exp.Sub(iat) > 5*time.Minute {
		t.Errorf("task token lives %v, want minutes (default 5m)", exp.Sub(iat))
	}

	// Widening is refused.
	bTok := e.agentToken(b)
	delegate := func(scope string) (int, map[string]any) {
		return e.token(url.Values{
			"grant_type": {grantExchange}, "subject_token": {parentTok}, "subject_token_type": {typeAccessToken},
			"actor_token": {bTok}, "actor_token_type": {typeAccessToken}, "scope": {scope}, "purpose": {"write the fix"},
		})
	}
	if status, out := delegate("file.write:/repo/**"); status != 400 || out["error"] != "invalid_scope" {
		t.Fatalf("widening delegation = %d %v, want 400 invalid_scope", status, out)
	}
	status, out = delegate("file.write:/repo/src/flaky/**")
	if status != 200 {
		t.Fatalf("delegate = %d %v", status, out)
	}
	childTok := out["access_token"].(string)
	cc := e.verifyIndependently(childTok)
	wantAct := map[string]any{"sub": b.id, "act": map[string]any{"sub": a.id}}
	if fmt.Sprint(cc["act"]) != fmt.Sprint(wantAct) {
		t.Fatalf("child act = %v, want %v", cc["act"], wantAct)
	}
	if cc["sub"] != "alice@example.com" || cc["client_id"] != b.id || cc["scope"] != "file.write:/repo/src/flaky/**" || cc["task_id"] == pc["task_id"] {
		t.Fatalf("child claims = %v", cc)
	}

	for name, tok := range map[string]string{"parent": parentTok, "child": childTok} {
		if in := e.introspect(a, tok); in["active"] != true {
			t.Fatalf("introspect %s before revocation = %v", name, in)
		}
	}
	revoked := e.adminJSON("POST", "/admin/v1/tasks/"+pc["task_id"].(string)+"/revoke", map[string]string{"reason": "e2e"})
	if n := len(revoked["finished"].([]any)); n != 2 {
		t.Fatalf("revoke finished %d tasks, want parent and child", n)
	}
	for name, tok := range map[string]string{"parent": parentTok, "child": childTok} {
		if in := e.introspect(a, tok); in["active"] != false || len(in) != 1 {
			t.Fatalf("introspect %s after revocation = %v, want exactly {active:false}", name, in)
		}
	}
	// A revoked task's token cannot be renewed or delegated further.
	if status, out := e.token(url.Values{"grant_type": {grantExchange}, "subject_token": {childTok}, "subject_token_type": {typeAccessToken}}); status != 400 || out["error"] != "invalid_grant" {
		t.Fatalf("renewing a revoked child = %d %v, want invalid_grant", status, out)
	}

	// The admin API lists both as revoked.
	if revokedTasks := e.adminJSONList("/admin/v1/tasks?status=revoked", "tasks"); len(revokedTasks) != 2 {
		t.Fatalf("revoked tasks listed = %d, want 2", len(revokedTasks))
	}
}

func (e *env) adminJSONList(path, key string) []any {
	e.t.Helper()
	out := e.adminJSON("GET", path, nil)
	list, _ := out[key].([]any)
	return list
}

// dpopProof is an RFC 9449 proof by key for method and URL, bound to
// accessToken when it is not empty.
func dpopProof(t *testing.T, key crypto.Signer, method, u, accessToken string) string {
	t.Helper()
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		t.Fatal(err)
	}
	claims := map[string]any{"jti": rand.Text(), "htm": method, "htu": u, "iat": time.Now().Unix()}
	if accessToken != "" {
		h := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(h[:])
	}
	raw, err := josejwt.Signed(sig).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// TestDPoPBoundToken: a token bound to a DPoP key is refused without a
// proof and with a proof by another key, and accepted with its own.
func TestDPoPBoundToken(t *testing.T) {
	e := start(t)
	a := e.register("bound", "autonomous")
	_, dpopKey, _ := ed25519.GenerateKey(rand.Reader)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	tokenURL := e.meta["token_endpoint"].(string)

	agentTok := e.agentToken(a, "DPoP", dpopProof(t, dpopKey, "POST", tokenURL, ""))
	claims := e.verifyIndependently(agentTok)
	dpopJWK := jose.JSONWebKey{Key: dpopKey.Public()}
	thumb, _ := dpopJWK.Thumbprint(crypto.SHA256)
	if cnf, _ := claims["cnf"].(map[string]any); cnf["jkt"] != base64.RawURLEncoding.EncodeToString(thumb) {
		t.Fatalf("cnf = %v, want jkt of the DPoP key", claims["cnf"])
	}
	exchange := func(hdr ...string) (int, map[string]any) {
		return e.token(url.Values{
			"grant_type": {grantExchange}, "subject_token": {agentTok}, "subject_token_type": {typeAccessToken},
			"scope": {"file.read:/tmp/**"}, "purpose": {"dpop test"},
		}, hdr...)
	}
	if status, out := exchange(); status != 400 || out["error"] != "invalid_dpop_proof" {
		t.Fatalf("bound token without proof = %d %v, want invalid_dpop_proof", status, out)
	}
	if status, out := exchange("DPoP", dpopProof(t, otherKey, "POST", tokenURL, agentTok)); status != 400 || out["error"] != "invalid_dpop_proof" {
		t.Fatalf("bound token with another key's proof = %d %v, want invalid_dpop_proof", status, out)
	}
	if status, out := exchange("DPoP", dpopProof(t, dpopKey, "GET", tokenURL, agentTok)); status != 400 || out["error"] != "invalid_dpop_proof" {
		t.Fatalf("proof for the wrong method = %d %v, want invalid_dpop_proof", status, out)
	}
	status, out := exchange("DPoP", dpopProof(t, dpopKey, "POST", tokenURL, agentTok))
	if status != 200 || out["token_type"] != "DPoP" {
		t.Fatalf("bound token with its proof = %d %v", status, out)
	}
	taskClaims := e.verifyIndependently(out["access_token"].(string))
	if fmt.Sprint(taskClaims["cnf"]) != fmt.Sprint(claims["cnf"]) {
		t.Fatalf("task token cnf = %v, want the same key as its subject token (%v)", taskClaims["cnf"], claims["cnf"])
	}
}

// TestAgentKeyRotation: an agent's key is rotated without re-registering
// it — the new key works at once, and the removed one no longer does.
func TestAgentKeyRotation(t *testing.T) {
	e := start(t)
	old := e.register("rotating", "assist")
	e.agentToken(old)

	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	newKey := agent{id: old.id, kid: "rotating-k2", key: priv}
	e.adminJSON("POST", "/admin/v1/agents/rotating/keys", jose.JSONWebKey{Key: pub, KeyID: newKey.kid, Algorithm: "EdDSA", Use: "sig"})
	e.agentToken(newKey)
	e.adminJSON("DELETE", "/admin/v1/agents/rotating/keys/"+old.kid, nil)

	status, out := e.token(url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {e.assertion(old)},
	})
	if status != 401 || out["error"] != "invalid_client" {
		t.Fatalf("assertion signed with the removed key = %d %v, want 401 invalid_client", status, out)
	}
	e.agentToken(newKey)
}
