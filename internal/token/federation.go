package token

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Federation limits.
const (
	// MaxJWKSSize bounds a fetched JWKS document.
	MaxJWKSSize = 1 << 20
	// jwksFetchTimeout bounds one JWKS fetch.
	jwksFetchTimeout = 5 * time.Second
	// jwksCacheTTL is how long a fetched JWKS is used before refetching.
	jwksCacheTTL = 10 * time.Minute
	// jwksRefetchMin bounds refetches triggered by unknown kids.
	jwksRefetchMin = 30 * time.Second
	// minRSABits is the smallest RSA key accepted from a federated issuer.
	minRSABits = 2048
)

// FederatedAlgorithms is the allow-list of algorithms accepted from
// federated issuers: RS256 is what Kubernetes and most CI OIDC providers
// sign with.
var FederatedAlgorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// FederatedIssuer is an external OIDC issuer whose JWTs authenticate
// federated agents (jwt-bearer grant, RFC 7523 §2.1).
type FederatedIssuer struct {
	// Issuer is the iss the JWTs carry.
	Issuer string
	// JWKSURL is where the issuer's keys are fetched (with a timeout, a
	// size limit and caching). Ignored when JWKS is set.
	JWKSURL string
	// JWKS is a static JWK set (JSON), for issuers that cannot be reached.
	JWKS []byte
	// Audience is the aud the JWTs must carry for this server.
	Audience string
	// PersonClaim, if set, makes the issuer's tokens proof of a person
	// too: a token of this issuer as subject_token, with an agent token as
	// actor_token, starts a task on behalf of the person its PersonClaim
	// claim names (PersonClaimEmail or PersonClaimSubject).
	PersonClaim string
}

// jwksSource supplies one federated issuer's keys.
type jwksSource struct {
	cfg    FederatedIssuer
	client *http.Client
	now    func() time.Time

	mu          sync.Mutex
	keys        *jose.JSONWebKeySet
	fetched     time.Time
	lastAttempt time.Time
}

func newJWKSSource(cfg FederatedIssuer, client *http.Client, now func() time.Time) (*jwksSource, error) {
	if cfg.Issuer == "" || cfg.Audience == "" {
		return nil, errors.New("federated issuer needs an issuer and an audience")
	}
	s := &jwksSource{cfg: cfg, client: client, now: now}
	if len(cfg.JWKS) > 0 {
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(cfg.JWKS, &set); err != nil {
			return nil, fmt.Errorf("federated issuer %s: static JWKS: %w", cfg.Issuer, err)
		}
		s.keys = &set
		return s, nil
	}
	u, err := url.Parse(cfg.JWKSURL)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("federated issuer %s: jwks url must be an absolute http(s) URL", cfg.Issuer)
	}
	return s, nil
}

// key returns the issuer's key with kid (or its only key when kid is
// empty), fetching or refetching the JWKS as needed.
func (s *jwksSource) key(ctx context.Context, kid string) (*jose.JSONWebKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	static := len(s.cfg.JWKS) > 0
	if !static && (s.keys == nil || now.Sub(s.fetched) > jwksCacheTTL) && now.Sub(s.lastAttempt) >= time.Second {
		s.refetchLocked(ctx, now)
	}
	if k := findKey(s.keys, kid); k != nil {
		return k, nil
	}
	if !static && now.Sub(s.lastAttempt) >= jwksRefetchMin {
		s.refetchLocked(ctx, now)
		if k := findKey(s.keys, kid); k != nil {
			return k, nil
		}
	}
	if s.keys == nil {
		return nil, errUnavailable(fmt.Errorf("federated issuer %s: no JWKS", s.cfg.Issuer))
	}
	return nil, errors.New("no key with that kid")
}

func findKey(set *jose.JSONWebKeySet, kid string) *jose.JSONWebKey {
	if set == nil {
		return nil
	}
	if kid == "" {
		if len(set.Keys) == 1 {
			return &set.Keys[0]
		}
		return nil
	}
	for i := range set.Keys {
		if set.Keys[i].KeyID == kid {
			return &set.Keys[i]
		}
	}
	return nil
}

// refetchLocked fetches the JWKS; on failure the previous set stays.
func (s *jwksSource) refetchLocked(ctx context.Context, now time.Time) {
	s.lastAttempt = now
	set, err := s.fetch(ctx)
	if err != nil {
		return
	}
	s.keys, s.fetched = set, now
}

func (s *jwksSource) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(ctx, jwksFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.cfg.JWKSURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json, application/jwk-set+json")
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("jwks fetch: status %d", resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxJWKSSize+1))
	if err != nil {
		return nil, err
	}
	if len(body) > MaxJWKSSize {
		return nil, errors.New("jwks too large")
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, err
	}
	return &set, nil
}

// checkFederatedKey accepts RSA (≥ 2048 bits) with RS256, P-256 with ES256
// and Ed25519 with EdDSA.
func checkFederatedKey(key any, alg jose.SignatureAlgorithm) error {
	switch key := key.(type) {
	case *rsa.PublicKey:
		if alg == jose.RS256 && key.N.BitLen() >= minRSABits {
			return nil
		}
	case *ecdsa.PublicKey:
		if alg == jose.ES256 && key.Curve == elliptic.P256() {
			return nil
		}
	case ed25519.PublicKey:
		if alg == jose.EdDSA {
			return nil
		}
	}
	return fmt.Errorf("key type %T does not allow %s", key, alg)
}
