package identity

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"errors"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

func validAgent(t *testing.T) *Agent {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &Agent{
		ID: MustParseID("spiffe://example.org/agent/bot"), Owner: "alice@example.com",
		Escalation: "oncall@example.com", Tier: TierSupervised, Status: StatusActive,
		Labels:      map[string]string{"team": "platform"},
		Keys:        []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "EdDSA", Use: "sig"}},
		Federations: []Federation{{Issuer: "https://token.actions.example.com", Subject: "repo:org/x:ref:main"}},
	}
}

func TestAgentValidate(t *testing.T) {
	t.Parallel()
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	tests := []struct {
		name    string
		mutate  func(a *Agent)
		wantErr string // substring; "" means valid
	}{
		{name: "valid", mutate: func(*Agent) {}},
		{name: "P-256 key", mutate: func(a *Agent) { a.Keys = []jose.JSONWebKey{{Key: &ecKey.PublicKey, KeyID: "e1"}} }},
		{name: "no owner", mutate: func(a *Agent) { a.Owner = " " }, wantErr: "owner is required"},
		{name: "no escalation", mutate: func(a *Agent) { a.Escalation = "" }, wantErr: "escalation contact is required"},
		{name: "no id", mutate: func(a *Agent) { a.ID = ID{} }, wantErr: "id is required"},
		{name: "bad tier", mutate: func(a *Agent) { a.Tier = "god" }, wantErr: "unknown tier"},
		{name: "bad status", mutate: func(a *Agent) { a.Status = "zombie" }, wantErr: "unknown status"},
		{name: "bad label key", mutate: func(a *Agent) { a.Labels = map[string]string{"a b": "x"} }, wantErr: "label key"},
		{name: "long label value", mutate: func(a *Agent) { a.Labels = map[string]string{"a": strings.Repeat("x", MaxLabelLen+1)} }, wantErr: "longer than"},
		{name: "private key", mutate: func(a *Agent) { a.Keys = []jose.JSONWebKey{{Key: edPriv, KeyID: "p"}} }, wantErr: "private key"},
		{name: "P-384 key", mutate: func(a *Agent) { a.Keys = []jose.JSONWebKey{{Key: &p384.PublicKey, KeyID: "p"}} }, wantErr: "P-256"},
		{name: "RSA key", mutate: func(a *Agent) { a.Keys = []jose.JSONWebKey{{Key: &rsaKey.PublicKey, KeyID: "r"}} }, wantErr: "unsupported key type"},
		{name: "no kid", mutate: func(a *Agent) { a.Keys[0].KeyID = "" }, wantErr: "kid is required"},
		{name: "alg mismatch", mutate: func(a *Agent) { a.Keys[0].Algorithm = "ES256" }, wantErr: "does not match"},
		{name: "encryption key", mutate: func(a *Agent) { a.Keys[0].Use = "enc" }, wantErr: "signing keys"},
		{name: "duplicate kid", mutate: func(a *Agent) { a.Keys = append(a.Keys, a.Keys[0]) }, wantErr: "duplicate kid"},
		{name: "federation without https", mutate: func(a *Agent) { a.Federations[0].Issuer = "token.example.com" }, wantErr: "absolute http(s) URL"},
		{name: "federation without subject", mutate: func(a *Agent) { a.Federations[0].Subject = "" }, wantErr: "subject is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			a := validAgent(t)
			tt.mutate(a)
			err := a.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want ErrInvalid containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestAgentKey(t *testing.T) {
	t.Parallel()
	a := validAgent(t)
	if _, ok := a.Key(""); !ok {
		t.Error("Key(\"\") with one key: not found")
	}
	if _, ok := a.Key("k1"); !ok {
		t.Error("Key(k1): not found")
	}
	if _, ok := a.Key("nope"); ok {
		t.Error("Key(nope): found")
	}
	a.Keys = append(a.Keys, jose.JSONWebKey{KeyID: "k2"})
	if _, ok := a.Key(""); ok {
		t.Error("Key(\"\") with two keys must not guess")
	}
}
