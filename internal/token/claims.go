package token

import (
	"crypto/rand"
	"encoding/base64"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Use says what a token is for (the token_use claim).
type Use string

// Token uses.
const (
	// UseAgent marks an identity-only agent token, good only for token
	// exchange at this server.
	UseAgent Use = "agent"
	// UseTask marks a task token: the credential an agent acts with.
	UseTask Use = "task"
)

// Token type URIs (RFC 8693 §3) and access-token types.
const (
	TokenTypeAccessToken = "urn:ietf:params:oauth:token-type:access_token"
	TokenTypeJWT         = "urn:ietf:params:oauth:token-type:jwt"
	TokenTypeIDToken     = "urn:ietf:params:oauth:token-type:id_token"
	TokenTypeBearer      = "Bearer"
	TokenTypeDPoP        = "DPoP"
)

// JOSE header types.
const (
	// AccessTokenType is the typ header of mandate's access tokens (RFC 9068 §2.1).
	AccessTokenType = "at+jwt"
	// DPoPProofType is the typ header of DPoP proofs (RFC 9449 §4.2).
	DPoPProofType = "dpop+jwt"
)

// Claims are the claims of a mandate access token (RFC 9068, with the
// RFC 8693 act claim and the RFC 9449 cnf claim).
//
// For a task token, Subject is the task's principal (the human the work is
// done for, or the agent itself), ClientID is the agent using the token,
// and Act is the delegation chain with the current agent outermost. For an
// agent token, Subject and ClientID are both the agent's SPIFFE ID and Act
// is nil.
type Claims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf,omitempty"`
	ID        string           `json:"jti"`
	ClientID  string           `json:"client_id"`
	// Scope is the space-separated list of task scope patterns.
	Scope  string        `json:"scope,omitempty"`
	TaskID string        `json:"task_id,omitempty"`
	Tier   string        `json:"tier,omitempty"`
	Use    Use           `json:"token_use"`
	Act    *Actor        `json:"act,omitempty"`
	Cnf    *Confirmation `json:"cnf,omitempty"`
}

// Actor is one level of the RFC 8693 §4.1 act claim: the acting party, and
// the party that acted before it.
type Actor struct {
	Subject string `json:"sub"`
	Act     *Actor `json:"act,omitempty"`
}

// Confirmation is the RFC 7800 cnf claim; JKT is the RFC 9449 §6 SHA-256
// JWK thumbprint of the key the token is bound to.
type Confirmation struct {
	JKT string `json:"jkt"`
}

// ActorChain builds the act claim for a delegation chain given root first
// (as in task.Task.Actors): the last element becomes the outermost actor.
func ActorChain(rootFirst []string) *Actor {
	var act *Actor
	for _, sub := range rootFirst {
		act = &Actor{Subject: sub, Act: act}
	}
	return act
}

// Chain returns the act claim's actors root first; it is the inverse of
// ActorChain.
func (a *Actor) Chain() []string {
	var out []string
	for ; a != nil; a = a.Act {
		out = append(out, a.Subject)
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// JKT returns the thumbprint the token is bound to, or "".
func (c *Claims) JKT() string {
	if c.Cnf == nil {
		return ""
	}
	return c.Cnf.JKT
}

// newJTI returns a fresh random token ID (128 bits, base64url).
func newJTI() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}
