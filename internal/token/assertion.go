package token

import (
	"errors"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Client assertion limits.
const (
	// MaxAssertionLifetime is how far in the future a client assertion's
	// exp may be.
	MaxAssertionLifetime = 5 * time.Minute
	// NamespaceClientAssertion is the Store.UseOnce namespace of client
	// assertion jtis.
	NamespaceClientAssertion = "client_assertion"
)

// assertionClaims are the claims of an RFC 7523 JWT (client assertion or
// authorization grant).
type assertionClaims struct {
	Issuer    string           `json:"iss"`
	Subject   string           `json:"sub"`
	Audience  jwt.Audience     `json:"aud"`
	Expiry    *jwt.NumericDate `json:"exp"`
	IssuedAt  *jwt.NumericDate `json:"iat"`
	NotBefore *jwt.NumericDate `json:"nbf"`
	ID        string           `json:"jti"`
}

// parsedAssertion is an RFC 7523 JWT parsed but not yet verified.
type parsedAssertion struct {
	tok    *jwt.JSONWebToken
	header jose.Header
	// unverified holds the claims read before the signature is checked,
	// only to find the key; verify replaces them.
	unverified assertionClaims
}

// parseAssertion parses an RFC 7523 JWT restricted to algs, refusing JWS
// that are not compact, have other than one signature, or are too large.
func parseAssertion(raw string, algs []jose.SignatureAlgorithm) (*parsedAssertion, error) {
	if raw == "" {
		return nil, errors.New("missing assertion")
	}
	if len(raw) > MaxAssertionSize {
		return nil, errors.New("assertion too large")
	}
	tok, err := jwt.ParseSigned(raw, algs)
	if err != nil {
		return nil, errors.New("assertion is not a JWT signed with an allowed algorithm")
	}
	if len(tok.Headers) != 1 {
		return nil, errors.New("assertion must have one signature")
	}
	p := &parsedAssertion{tok: tok, header: tok.Headers[0]}
	if err := tok.UnsafeClaimsWithoutVerification(&p.unverified); err != nil {
		return nil, errors.New("assertion claims are malformed")
	}
	return p, nil
}

// verify checks the signature with key and returns the verified claims.
func (p *parsedAssertion) verify(key any) (*assertionClaims, error) {
	var c assertionClaims
	if err := p.tok.Claims(key, &c); err != nil {
		return nil, errors.New("assertion signature does not verify")
	}
	return &c, nil
}

// checkTimes checks exp (required, not expired, at most maxAhead in the
// future when maxAhead > 0), nbf and iat, with skew.
func (c *assertionClaims) checkTimes(now time.Time, skew, maxAhead time.Duration) error {
	if c.Expiry == nil {
		return errors.New("assertion has no exp")
	}
	exp := c.Expiry.Time()
	if now.After(exp.Add(skew)) {
		return errors.New("assertion expired")
	}
	if maxAhead > 0 && exp.After(now.Add(maxAhead+skew)) {
		return errors.New("assertion exp is too far in the future")
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(skew)) {
		return errors.New("assertion not yet valid")
	}
	if c.IssuedAt != nil && c.IssuedAt.Time().After(now.Add(skew)) {
		return errors.New("assertion issued in the future")
	}
	return nil
}
