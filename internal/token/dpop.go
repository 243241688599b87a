package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// DPoP limits and defaults.
const (
	// MaxDPoPProofSize is the largest DPoP proof accepted, in bytes.
	MaxDPoPProofSize = 8 << 10
	// MaxJTILen is the longest jti accepted in a proof or assertion.
	MaxJTILen = 256
	// DefaultDPoPMaxAge is how old a proof's iat may be.
	DefaultDPoPMaxAge = 60 * time.Second
	// DefaultDPoPMaxFuture is how far ahead a proof's iat may be.
	DefaultDPoPMaxFuture = 5 * time.Second
	// dpopReplayCacheSize bounds the in-memory replay cache in front of
	// Store.UseOnce.
	dpopReplayCacheSize = 1 << 16
	// NamespaceDPoP is the Store.UseOnce namespace of DPoP proof jtis.
	NamespaceDPoP = "dpop"
)

// SignatureAlgorithms is the allow-list of JWS algorithms mandate accepts
// from agents (client assertions, DPoP proofs) and in its own tokens.
var SignatureAlgorithms = []jose.SignatureAlgorithm{jose.EdDSA, jose.ES256}

// DPoPConfig configures a DPoPVerifier. Zero fields get defaults.
type DPoPConfig struct {
	// Store remembers used proof jtis across replicas and restarts. If nil,
	// replays are detected only in memory.
	Store     Store
	MaxAge    time.Duration
	MaxFuture time.Duration
	Now       func() time.Time
}

// DPoPVerifier verifies DPoP proofs (RFC 9449 §4.3). It is safe for
// concurrent use.
type DPoPVerifier struct {
	cfg DPoPConfig

	mu     sync.Mutex
	replay map[string]time.Time // thumbprint:jti → forget after
}

// NewDPoPVerifier returns a DPoPVerifier.
func NewDPoPVerifier(cfg DPoPConfig) *DPoPVerifier {
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultDPoPMaxAge
	}
	if cfg.MaxFuture <= 0 {
		cfg.MaxFuture = DefaultDPoPMaxFuture
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &DPoPVerifier{cfg: cfg, replay: make(map[string]time.Time)}
}

// DPoPRequest is what a DPoP proof is checked against.
type DPoPRequest struct {
	// Proof is the DPoP header's value.
	Proof string
	// Method and URL are the HTTP request's method and absolute URL.
	Method string
	URL    string
	// AccessToken, when set, is the access token presented with the proof:
	// the proof's ath claim must be its hash. At the token endpoint it is
	// empty.
	AccessToken string
}

// dpopProof is a parsed DPoP proof whose signature has been checked
// against its own embedded key.
type dpopProof struct {
	jkt    string
	claims dpopClaims
}

type dpopClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   *int64 `json:"iat"`
	ATH   string `json:"ath,omitempty"`
	Nonce string `json:"nonce,omitempty"`
}

// parseDPoPProof parses a proof, checks its header (typ, allowed alg, a
// public Ed25519 or P-256 jwk matching the alg) and its signature by that
// jwk, and decodes its claims. It does not check them.
func parseDPoPProof(proof string) (*dpopProof, error) {
	if proof == "" {
		return nil, errors.New("missing DPoP proof")
	}
	if len(proof) > MaxDPoPProofSize {
		return nil, errors.New("DPoP proof too large")
	}
	jws, err := jose.ParseSignedCompact(proof, SignatureAlgorithms)
	if err != nil {
		return nil, errors.New("DPoP proof is not a JWS with an allowed algorithm")
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("DPoP proof must have one signature")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != DPoPProofType {
		return nil, fmt.Errorf("DPoP proof typ must be %q", DPoPProofType)
	}
	jwk := h.JSONWebKey
	if jwk == nil || !jwk.IsPublic() || !jwk.Valid() {
		return nil, errors.New("DPoP proof must carry a public jwk")
	}
	if err := checkKeyAlg(jwk.Key, jose.SignatureAlgorithm(h.Algorithm)); err != nil {
		return nil, fmt.Errorf("DPoP proof: %w", err)
	}
	payload, err := jws.Verify(jwk)
	if err != nil {
		return nil, errors.New("DPoP proof signature does not verify")
	}
	p := &dpopProof{}
	if err := json.Unmarshal(payload, &p.claims); err != nil {
		return nil, errors.New("DPoP proof claims are not a JSON object")
	}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, errors.New("DPoP proof key has no thumbprint")
	}
	p.jkt = base64.RawURLEncoding.EncodeToString(tp)
	return p, nil
}

// checkKeyAlg accepts an Ed25519 key with EdDSA or a P-256 key with ES256.
func checkKeyAlg(key any, alg jose.SignatureAlgorithm) error {
	switch key := key.(type) {
	case ed25519.PublicKey:
		if alg == jose.EdDSA && len(key) == ed25519.PublicKeySize {
			return nil
		}
	case *ecdsa.PublicKey:
		if alg == jose.ES256 && key.Curve == elliptic.P256() {
			return nil
		}
	default:
		return fmt.Errorf("key type %T is not allowed", key)
	}
	return fmt.Errorf("algorithm %q does not match the key", alg)
}

// Verify checks a DPoP proof for r and returns the base64url SHA-256
// thumbprint of its key (RFC 7638), to compare with a token's cnf.jkt.
// Errors are *Error with code invalid_dpop_proof.
func (d *DPoPVerifier) Verify(ctx context.Context, r DPoPRequest) (string, error) {
	p, err := parseDPoPProof(r.Proof)
	if err != nil {
		return "", errInvalidDPoP(err, "%s", err.Error())
	}
	c := &p.claims
	if c.JTI == "" || len(c.JTI) > MaxJTILen {
		return "", errInvalidDPoP(nil, "DPoP proof jti is missing or too long")
	}
	if c.HTM != r.Method {
		return "", errInvalidDPoP(nil, "DPoP proof htm does not match the request method")
	}
	if !SameHTU(c.HTU, r.URL) {
		return "", errInvalidDPoP(nil, "DPoP proof htu does not match the request URL")
	}
	now := d.cfg.Now()
	if c.IAT == nil {
		return "", errInvalidDPoP(nil, "DPoP proof iat is missing")
	}
	iat := time.Unix(*c.IAT, 0)
	if iat.Before(now.Add(-d.cfg.MaxAge)) || iat.After(now.Add(d.cfg.MaxFuture)) {
		return "", errInvalidDPoP(nil, "DPoP proof iat is outside the accepted window")
	}
	if r.AccessToken != "" {
		sum := sha256.Sum256([]byte(r.AccessToken))
		want := base64.RawURLEncoding.EncodeToString(sum[:])
		if subtle.ConstantTimeCompare([]byte(c.ATH), []byte(want)) != 1 {
			return "", errInvalidDPoP(nil, "DPoP proof ath does not match the access token")
		}
	}
	// Replay: jtis are per key, so one key cannot burn another's jti.
	key := p.jkt + ":" + c.JTI
	forgetAt := iat.Add(d.cfg.MaxAge + d.cfg.MaxFuture)
	if !d.remember(key, forgetAt, now) {
		return "", errInvalidDPoP(nil, "DPoP proof jti was already used")
	}
	if d.cfg.Store != nil {
		if err := d.cfg.Store.UseOnce(ctx, NamespaceDPoP, key, forgetAt); err != nil {
			if errors.Is(err, ErrReplay) {
				return "", errInvalidDPoP(nil, "DPoP proof jti was already used")
			}
			return "", errUnavailable(fmt.Errorf("dpop replay check: %w", err))
		}
	}
	return p.jkt, nil
}

// remember records key until forgetAt and reports whether it was new.
func (d *DPoPVerifier) remember(key string, forgetAt, now time.Time) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if exp, ok := d.replay[key]; ok && exp.After(now) {
		return false
	}
	if len(d.replay) >= dpopReplayCacheSize {
		for k, exp := range d.replay {
			if !exp.After(now) {
				delete(d.replay, k)
			}
		}
		if len(d.replay) >= dpopReplayCacheSize {
			// Full of live entries: the store remains the authority, so
			// dropping arbitrary entries only costs a store round trip.
			n := 0
			for k := range d.replay {
				delete(d.replay, k)
				if n++; n >= dpopReplayCacheSize/8 {
					break
				}
			}
		}
	}
	d.replay[key] = forgetAt
	return true
}

// SameHTU compares a proof's htu with a request URL per RFC 9449 §4.3:
// scheme and host case-insensitively with default ports normalized, the
// path exactly; query and fragment are ignored.
func SameHTU(htu, requestURL string) bool {
	a, errA := url.Parse(htu)
	b, errB := url.Parse(requestURL)
	if errA != nil || errB != nil || a.Opaque != "" || b.Opaque != "" || a.User != nil {
		return false
	}
	return a.Host != "" && normScheme(a) == normScheme(b) && normHost(a) == normHost(b) && normPath(a) == normPath(b)
}

func normScheme(u *url.URL) string { return strings.ToLower(u.Scheme) }

func normHost(u *url.URL) string {
	host, port := strings.ToLower(u.Hostname()), u.Port()
	switch {
	case port == "",
		port == "443" && strings.EqualFold(u.Scheme, "https"),
		port == "80" && strings.EqualFold(u.Scheme, "http"):
		return host
	}
	return host + ":" + port
}

func normPath(u *url.URL) string {
	if u.EscapedPath() == "" {
		return "/"
	}
	return u.EscapedPath()
}
