package token

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mandatehq/mandate/internal/identity"
)

// Verifier defaults and limits.
const (
	// MaxTokenSize is the largest access token accepted, in bytes.
	MaxTokenSize = 8 << 10
	// DefaultSkew is the clock skew tolerated on exp, nbf and iat, and
	// between a token's iat and the retirement of the key that signed it
	// (a token issued more than Skew after its key was retired is refused).
	DefaultSkew = 30 * time.Second
	// DefaultCacheSize bounds the cache of verified tokens.
	DefaultCacheSize = 100_000
	// maxActChain bounds the act claim's nesting.
	maxActChain = 32
)

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keyring supplies the published keys; required.
	Keyring *Keyring
	// Revocations is checked on every verification; required.
	Revocations *Revocations
	// DPoP verifies the proofs of DPoP-bound tokens; required.
	DPoP *DPoPVerifier
	// Issuer is the expected iss; required.
	Issuer string
	// Audience is the audience expected when a VerifyRequest names none;
	// required.
	Audience string
	// Skew is the clock skew tolerated (default DefaultSkew).
	Skew time.Duration
	// CacheSize bounds the cache of verified tokens (default
	// DefaultCacheSize; negative disables the cache).
	CacheSize int
	Now       func() time.Time
}

// Verifier is the one access-token verification used everywhere in
// mandate. It is safe for concurrent use.
type Verifier struct {
	cfg VerifierConfig

	mu    sync.RWMutex
	cache map[string]*verified
}

// verified is a token whose signature and claims have been checked once.
// It is immutable once cached.
type verified struct {
	claims *Claims
	exp    time.Time
	// kid is the signing key's id, and iat the token's issue time: the
	// key's retirement is checked on every use, since a replica may learn
	// of it after the token was cached.
	kid string
	iat time.Time
	// agents are the agent IDs the token names (client, actors): any one
	// inactive refuses the token.
	agents []string
}

// VerifyRequest is one presentation of an access token.
type VerifyRequest struct {
	// Token is the access token.
	Token string
	// DPoPProof is the DPoP header's value, if any. It is required when
	// the token is DPoP-bound.
	DPoPProof string
	// Method and URL are the HTTP request's method and absolute URL, for
	// the DPoP proof.
	Method string
	URL    string
	// Scheme is the Authorization scheme the token came with (FromHeader),
	// or empty for a token that did not come in an Authorization header.
	// With SchemeBearer a DPoP-bound token is refused, and with
	// SchemeDPoP a token that is not DPoP-bound is (RFC 9449 §7.1, §7.2:
	// a DPoP-bound token is presented with the DPoP scheme and its proof).
	Scheme Scheme
	// Audiences are the audiences the token may name: its aud must
	// contain one of them. Empty means the verifier's configured audience.
	// (An endpoint with a resource identifier of its own, RFC 8707,
	// accepts that identifier and, for tokens issued without a resource
	// indicator, the issuer.)
	Audiences []string
	// Use, if set, is the token_use the token must have.
	Use Use
}

// NewVerifier returns a Verifier.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if cfg.Keyring == nil || cfg.Revocations == nil || cfg.DPoP == nil {
		return nil, errors.New("token: verifier needs a keyring, revocations and a DPoP verifier")
	}
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("token: verifier needs an issuer and an audience")
	}
	if cfg.Skew <= 0 {
		cfg.Skew = DefaultSkew
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = DefaultCacheSize
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Verifier{cfg: cfg, cache: make(map[string]*verified)}, nil
}

type verifyOpts struct {
	anyAudience    bool // introspection and revocation accept any audience
	skipDPoP       bool // introspection reports cnf instead of demanding a proof
	skipRevocation bool
}

// Verify checks an access token and returns its claims: algorithm
// allow-list (EdDSA, ES256), typ "at+jwt", kid among the published keys,
// signature, iss, aud, exp/nbf/iat with skew, iat no later than the
// signing key's retirement (plus skew), then revocation state (the
// token, its task, every agent it names) and, when the token carries
// cnf.jkt, a DPoP proof for r.Method and r.URL by that key whose ath is the
// token's hash. The returned claims are shared: do not modify them.
//
// Errors are *Error with code invalid_token or invalid_dpop_proof (or
// temporarily_unavailable when the DPoP replay store fails).
func (v *Verifier) Verify(ctx context.Context, r VerifyRequest) (*Claims, error) {
	t, err := v.verify(ctx, r, verifyOpts{})
	if err != nil {
		return nil, err
	}
	return t.claims, nil
}

func (v *Verifier) verify(ctx context.Context, r VerifyRequest, o verifyOpts) (*verified, error) {
	now := v.cfg.Now()
	v.mu.RLock()
	t, hit := v.cache[r.Token]
	v.mu.RUnlock()
	if !hit {
		var err error
		if t, err = v.parse(ctx, r.Token, now); err != nil {
			return nil, err
		}
		v.store(r.Token, t, now)
	}
	c := t.claims
	if err := v.checkRetirement(t.iat, v.cfg.Keyring.RetiredAt(t.kid)); err != nil {
		return nil, errInvalidToken(nil, "%s", err.Error())
	}
	if now.After(t.exp.Add(v.cfg.Skew)) {
		if hit {
			v.mu.Lock()
			delete(v.cache, r.Token)
			v.mu.Unlock()
		}
		return nil, errInvalidToken(nil, "token expired")
	}
	if r.Use != "" && c.Use != r.Use {
		return nil, errInvalidToken(nil, "token is not a %s token", r.Use)
	}
	if !o.anyAudience {
		ok := slices.ContainsFunc(r.Audiences, c.Audience.Contains)
		if len(r.Audiences) == 0 {
			ok = c.Audience.Contains(v.cfg.Audience)
		}
		if !ok {
			return nil, errInvalidToken(nil, "token is not for this audience")
		}
	}
	if !o.skipRevocation {
		if reason := v.cfg.Revocations.check(c.ID, c.TaskID, t.agents); reason != "" {
			return nil, errInvalidToken(nil, "%s", reason)
		}
	}
	if err := checkScheme(r.Scheme, c.JKT()); err != nil {
		return nil, err
	}
	if jkt := c.JKT(); jkt != "" && !o.skipDPoP {
		if r.DPoPProof == "" {
			return nil, errInvalidToken(nil, "DPoP-bound token presented without a DPoP proof")
		}
		got, err := v.cfg.DPoP.Verify(ctx, DPoPRequest{Proof: r.DPoPProof, Method: r.Method, URL: r.URL, AccessToken: r.Token})
		if err != nil {
			return nil, err
		}
		if got != jkt {
			return nil, errInvalidDPoP(nil, "DPoP proof is not signed by the key the token is bound to")
		}
	}
	return t, nil
}

// checkScheme holds a token to the scheme it was presented with: a
// DPoP-bound token (jkt set) only with the DPoP scheme, and the DPoP
// scheme only with a DPoP-bound token.
func checkScheme(s Scheme, jkt string) error {
	var e *Error
	switch {
	case s == SchemeBearer && jkt != "":
		e = errInvalidToken(nil, "DPoP-bound token presented with the Bearer scheme; use the DPoP scheme")
	case s == SchemeDPoP && jkt == "":
		e = errInvalidToken(nil, "the DPoP scheme with a token that is not DPoP-bound")
	default:
		return nil
	}
	e.dpop = true
	return e
}

// parse does the uncached part of verification: everything that depends
// only on the token itself.
func (v *Verifier) parse(ctx context.Context, raw string, now time.Time) (*verified, error) {
	c, kid, retired, err := v.parseClaims(ctx, raw)
	if err != nil {
		return nil, errInvalidToken(err, "%s", err.Error())
	}
	if err := v.checkClaims(c, now); err != nil {
		return nil, errInvalidToken(err, "%s", err.Error())
	}
	t := &verified{claims: c, exp: c.Expiry.Time(), kid: kid, iat: c.IssuedAt.Time()}
	if err := v.checkRetirement(t.iat, retired); err != nil {
		return nil, errInvalidToken(err, "%s", err.Error())
	}
	if c.Use == UseTask {
		t.agents = append(t.agents, c.Act.Chain()...)
	} else {
		t.agents = []string{c.ClientID}
	}
	return t, nil
}

// checkRetirement refuses a token issued more than Skew after the key
// that signed it was retired: a retired key stays published only so that
// the tokens it signed before retirement verify until they expire.
func (v *Verifier) checkRetirement(iat, retired time.Time) error {
	if !retired.IsZero() && iat.After(retired.Add(v.cfg.Skew)) {
		return errors.New("token issued after its signing key was retired")
	}
	return nil
}

// parseClaims checks the JOSE layer and the signature and decodes the
// claims. It also returns the signing key's kid and retirement time.
func (v *Verifier) parseClaims(ctx context.Context, raw string) (*Claims, string, time.Time, error) {
	fail := func(msg string) (*Claims, string, time.Time, error) {
		return nil, "", time.Time{}, errors.New(msg)
	}
	if raw == "" {
		return fail("missing token")
	}
	if len(raw) > MaxTokenSize {
		return fail("token too large")
	}
	if !canonicalCompact(raw) {
		return fail("malformed token: not three canonical base64url segments")
	}
	tok, err := jwt.ParseSigned(raw, SignatureAlgorithms)
	if err != nil {
		return fail("malformed token or disallowed algorithm")
	}
	if len(tok.Headers) != 1 {
		return fail("token must have one signature")
	}
	h := tok.Headers[0]
	if !isAccessTokenType(h.ExtraHeaders[jose.HeaderType]) {
		return nil, "", time.Time{}, fmt.Errorf("token typ must be %q", AccessTokenType)
	}
	if h.KeyID == "" {
		return fail("token has no kid")
	}
	key, retired, ok := v.cfg.Keyring.publishedKey(ctx, h.KeyID)
	if !ok {
		return fail("token signed by an unknown key")
	}
	if key.Algorithm != h.Algorithm {
		return fail("token algorithm does not match its key")
	}
	var c Claims
	if err := tok.Claims(key, &c); err != nil {
		return fail("token signature or claims invalid")
	}
	return &c, h.KeyID, retired, nil
}

// canonicalCompact reports whether raw is a JWS in compact form whose
// three segments are base64url as its issuer wrote them: unpadded, and
// with the unused bits of the last character zero. A decoder that ignores
// those bits reads other strings as the same token; mandate refuses them,
// so that a token has one spelling (its cache key, a DPoP proof's ath).
func canonicalCompact(raw string) bool {
	segs := strings.Split(raw, ".")
	if len(segs) != 3 {
		return false
	}
	enc := base64.RawURLEncoding.Strict()
	for _, seg := range segs {
		if _, err := enc.DecodeString(seg); err != nil {
			return false
		}
	}
	return true
}

func isAccessTokenType(typ any) bool {
	s, _ := typ.(string)
	return strings.EqualFold(s, AccessTokenType) || strings.EqualFold(s, "application/"+AccessTokenType)
}

// checkClaims checks the claims that do not depend on the request.
func (v *Verifier) checkClaims(c *Claims, now time.Time) error {
	if c.Issuer != v.cfg.Issuer {
		return errors.New("token issuer is not this server")
	}
	if c.Expiry == nil || c.IssuedAt == nil {
		return errors.New("token lacks exp or iat")
	}
	if now.After(c.Expiry.Time().Add(v.cfg.Skew)) {
		return errors.New("token expired")
	}
	if c.IssuedAt.Time().After(now.Add(v.cfg.Skew)) {
		return errors.New("token issued in the future")
	}
	if c.NotBefore != nil && c.NotBefore.Time().After(now.Add(v.cfg.Skew)) {
		return errors.New("token not yet valid")
	}
	if c.ID == "" || len(c.ID) > MaxJTILen {
		return errors.New("token lacks a jti")
	}
	if _, err := identity.ParseID(c.ClientID); err != nil {
		return errors.New("token client_id is not an agent ID")
	}
	if c.Cnf != nil && c.Cnf.JKT == "" {
		return errors.New("token cnf lacks jkt")
	}
	switch c.Use {
	case UseAgent:
		if c.Subject != c.ClientID || c.TaskID != "" || c.Act != nil {
			return errors.New("malformed agent token")
		}
	case UseTask:
		chain := c.Act.Chain()
		if c.TaskID == "" || c.Subject == "" || len(chain) == 0 || len(chain) > maxActChain || c.Act.Subject != c.ClientID {
			return errors.New("malformed task token")
		}
		for _, a := range chain {
			if _, err := identity.ParseID(a); err != nil {
				return errors.New("malformed task token act chain")
			}
		}
	default:
		return errors.New("token has an unknown token_use")
	}
	return nil
}

// store caches t under raw, evicting expired entries (and, if the cache is
// still full, arbitrary ones) to stay within the bound.
func (v *Verifier) store(raw string, t *verified, now time.Time) {
	if v.cfg.CacheSize < 0 {
		return
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.cache) >= v.cfg.CacheSize {
		for k, e := range v.cache {
			if now.After(e.exp.Add(v.cfg.Skew)) {
				delete(v.cache, k)
			}
		}
		for k := range v.cache {
			if len(v.cache) < v.cfg.CacheSize*7/8 {
				break
			}
			delete(v.cache, k)
		}
	}
	v.cache[raw] = t
}

// Forget drops every cached verification (after a key compromise, say).
func (v *Verifier) Forget() {
	v.mu.Lock()
	clear(v.cache)
	v.mu.Unlock()
}
