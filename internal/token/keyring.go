package token

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal"
)

// SealPurpose is the seal purpose under which signing keys are sealed (the
// record id is the kid).
const SealPurpose = "token.signing_key"

// Keyring defaults.
const (
	DefaultRotateEvery      = 24 * time.Hour
	DefaultMaxTokenLifetime = 5 * time.Minute
	// publishMargin keeps a retired key published a little longer than the
	// longest token it can have signed, for clock skew and for signatures
	// made by requests in flight at the moment of rotation.
	publishMargin = time.Minute
	// reloadMinInterval bounds how often an unknown kid makes the keyring
	// reload keys from the store (another replica may have rotated).
	reloadMinInterval = 10 * time.Second
)

// KeyringConfig configures a Keyring. Zero fields get defaults.
type KeyringConfig struct {
	// Store persists the keys; required.
	Store Store
	// Sealer seals the private keys before they reach Store; required.
	// Keys found stored in the clear (written before sealing) or sealed
	// under an old KEK are sealed again under its primary KEK.
	Sealer *seal.Keyring
	// RotateEvery is how long a key signs before a new one replaces it
	// (default DefaultRotateEvery).
	RotateEvery time.Duration
	// MaxTokenLifetime is the longest lifetime of any token the keyring
	// signs: a retired key stays in the JWKS that much longer (default
	// DefaultMaxTokenLifetime).
	MaxTokenLifetime time.Duration
	// Audit, if set, records each rotation (signing_key.rotated).
	Audit  audit.Recorder
	Logger *slog.Logger
	Now    func() time.Time
}

// Keyring holds the authorization server's signing keys: the current
// Ed25519 key that signs, and the retired keys still published in the JWKS
// until every token they signed has expired. Keys are persisted through
// Store, sealed (see KeyringConfig.Sealer), so every replica over the same
// store and KEK signs and verifies with the same set, and the store alone
// yields no private key.
//
// Keyring is safe for concurrent use. Signing and key lookups read an
// immutable snapshot through an atomic pointer, so rotation never stalls
// them.
type Keyring struct {
	cfg  KeyringConfig
	snap atomic.Pointer[keySnapshot]

	mu         sync.Mutex // serializes rotation and reloads
	lastReload atomic.Int64
}

type keySnapshot struct {
	kid       string
	alg       jose.SignatureAlgorithm
	created   time.Time
	signer    jose.Signer
	published map[string]*jose.JSONWebKey
	// retired holds the retirement time of each retired published key.
	retired map[string]time.Time
	jwks    jose.JSONWebKeySet
}

// NewKeyring loads the signing keys from cfg.Store, generating the first
// key when there is none and rotating when the current one is due.
func NewKeyring(ctx context.Context, cfg KeyringConfig) (*Keyring, error) {
	if cfg.Store == nil {
		return nil, errors.New("token: keyring needs a store")
	}
	if cfg.Sealer == nil {
		return nil, errors.New("token: keyring needs a sealer (signing keys are sealed at rest)")
	}
	if cfg.RotateEvery <= 0 {
		cfg.RotateEvery = DefaultRotateEvery
	}
	if cfg.MaxTokenLifetime <= 0 {
		cfg.MaxTokenLifetime = DefaultMaxTokenLifetime
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	k := &Keyring{cfg: cfg}
	if err := k.Refresh(ctx); err != nil {
		return nil, err
	}
	return k, nil
}

// Refresh reloads the keys from the store (picking up a rotation made by
// another replica), generates a key if there is none, rotates when the
// current key is older than RotateEvery, and deletes keys no longer
// published.
func (k *Keyring) Refresh(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	now := k.cfg.Now()
	if err := k.cfg.Store.DeleteSigningKeys(ctx, now); err != nil {
		return fmt.Errorf("token: delete expired signing keys: %w", err)
	}
	if err := k.reloadLocked(ctx, now); err != nil {
		return err
	}
	if s := k.snap.Load(); s == nil || now.Sub(s.created) >= k.cfg.RotateEvery {
		return k.rotateLocked(ctx, now)
	}
	return nil
}

// Rotate replaces the current signing key with a fresh one now. The old key
// stays published until the last token it can have signed has expired.
func (k *Keyring) Rotate(ctx context.Context) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.rotateLocked(ctx, k.cfg.Now())
}

// Run refreshes the keyring periodically (every tenth of RotateEvery, at
// most every minute) until ctx ends. Errors are logged; signing continues
// with the current key.
func (k *Keyring) Run(ctx context.Context) error {
	every := min(k.cfg.RotateEvery/10, time.Minute)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := k.Refresh(ctx); err != nil {
				k.cfg.Logger.ErrorContext(ctx, "signing key refresh failed", "err", err)
			}
		}
	}
}

func (k *Keyring) rotateLocked(ctx context.Context, now time.Time) error {
	priv, kid, err := generateSigningKey()
	if err != nil {
		return err
	}
	privJSON, err := json.Marshal(priv)
	if err != nil {
		return fmt.Errorf("token: encode signing key: %w", err)
	}
	sealed, err := k.cfg.Sealer.Seal(SealPurpose, kid, privJSON)
	clear(privJSON)
	if err != nil {
		return fmt.Errorf("token: seal signing key: %w", err)
	}
	pubJSON, err := json.Marshal(publicJWK(priv, jose.EdDSA))
	if err != nil {
		return fmt.Errorf("token: encode signing key: %w", err)
	}
	if err := k.cfg.Store.AddSigningKey(ctx, SigningKey{
		KID: kid, Algorithm: string(jose.EdDSA), SealedKey: sealed, PublicJWK: pubJSON, CreatedAt: now,
	}); err != nil {
		return fmt.Errorf("token: store signing key: %w", err)
	}
	publishUntil := now.Add(k.cfg.MaxTokenLifetime + publishMargin)
	var retired []string
	keys, err := k.cfg.Store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("token: load signing keys: %w", err)
	}
	for _, sk := range keys {
		if sk.KID != kid && sk.RetiredAt.IsZero() {
			if err := k.cfg.Store.RetireSigningKey(ctx, sk.KID, now, publishUntil); err != nil {
				return fmt.Errorf("token: retire signing key: %w", err)
			}
			retired = append(retired, sk.KID)
		}
	}
	if err := k.reloadLocked(ctx, now); err != nil {
		return err
	}
	k.cfg.Logger.InfoContext(ctx, "signing key rotated", "kid", kid, "retired", retired)
	if k.cfg.Audit != nil {
		ev := audit.Event{Time: now, Type: audit.TypeSigningKeyRotated, Actor: "system",
			Details: map[string]string{"kid": kid}}
		if len(retired) > 0 {
			ev.Details["retired"] = fmt.Sprint(retired)
		}
		if err := k.cfg.Audit.Record(ctx, ev); err != nil {
			// The rotation itself already happened and is safe; only the
			// record is missing.
			k.cfg.Logger.ErrorContext(ctx, "recording signing key rotation failed", "kid", kid, "err", err)
		}
	}
	return nil
}

// reloadLocked rebuilds the snapshot from the store. The newest key that
// is not retired signs; every stored key is published.
func (k *Keyring) reloadLocked(ctx context.Context, now time.Time) error {
	k.lastReload.Store(now.UnixNano())
	keys, err := k.cfg.Store.SigningKeys(ctx, now)
	if err != nil {
		return fmt.Errorf("token: load signing keys: %w", err)
	}
	s := &keySnapshot{published: make(map[string]*jose.JSONWebKey, len(keys)), retired: make(map[string]time.Time)}
	var current *jose.JSONWebKey
	var currentKey SigningKey
	for _, sk := range keys {
		jwk, alg, err := k.openKey(ctx, sk)
		if err != nil {
			return err
		}
		pub := publicJWK(jwk, alg)
		s.published[sk.KID] = &pub
		s.jwks.Keys = append(s.jwks.Keys, pub)
		if !sk.RetiredAt.IsZero() {
			s.retired[sk.KID] = sk.RetiredAt
		}
		if sk.RetiredAt.IsZero() && (current == nil || !sk.CreatedAt.Before(currentKey.CreatedAt)) {
			current, currentKey = &jwk, sk
			s.alg = alg
		}
	}
	if current == nil {
		if old := k.snap.Load(); old != nil {
			// Keep signing with what we have; Refresh will rotate.
			s.kid, s.alg, s.created, s.signer = old.kid, old.alg, old.created, old.signer
			if _, ok := s.published[old.kid]; !ok {
				s.published[old.kid] = old.published[old.kid]
				if t, ok := old.retired[old.kid]; ok {
					s.retired[old.kid] = t
				}
				s.jwks.Keys = append(s.jwks.Keys, *old.published[old.kid])
			}
			k.snap.Store(s)
		}
		return nil
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: *current},
		(&jose.SignerOptions{}).WithType(AccessTokenType))
	if err != nil {
		return fmt.Errorf("token: signer for key %q: %w", current.KeyID, err)
	}
	s.kid, s.created, s.signer = current.KeyID, currentKey.CreatedAt, signer
	k.snap.Store(s)
	return nil
}

// openKey unseals a stored signing key and checks that it is the private
// key its row says. A key stored in the clear (before sealing) is sealed
// in place, and one sealed under an old KEK is sealed again under the
// primary one: whoever gets there first among the replicas does it, the
// others see ErrKeyChanged and keep going. A key that does not open is an
// error: never a reason to make a new one.
func (k *Keyring) openKey(ctx context.Context, sk SigningKey) (jose.JSONWebKey, jose.SignatureAlgorithm, error) {
	fail := func(format string, args ...any) (jose.JSONWebKey, jose.SignatureAlgorithm, error) {
		return jose.JSONWebKey{}, "", fmt.Errorf("token: signing key %q: %s", sk.KID, fmt.Sprintf(format, args...))
	}
	clearText := !seal.IsSealed(sk.SealedKey)
	plain := sk.SealedKey
	if !clearText {
		var err error
		if plain, err = k.cfg.Sealer.Open(SealPurpose, sk.KID, sk.SealedKey); err != nil {
			return jose.JSONWebKey{}, "", fmt.Errorf("token: signing key %q: %w", sk.KID, err)
		}
		defer clear(plain)
	}
	var jwk jose.JSONWebKey
	if err := jwk.UnmarshalJSON(plain); err != nil {
		return fail("%v", err)
	}
	if jwk.KeyID != sk.KID || jwk.IsPublic() || !jwk.Valid() {
		return fail("stored JWK does not match")
	}
	alg, err := keyAlgorithm(jwk.Key)
	if err != nil {
		return fail("%v", err)
	}
	pub := publicJWK(jwk, alg)
	if len(sk.PublicJWK) > 0 {
		var stored jose.JSONWebKey
		if err := stored.UnmarshalJSON(sk.PublicJWK); err != nil || !stored.IsPublic() || !sameKey(&stored, &pub) {
			return fail("the stored public key is not the sealed private key's")
		}
	}
	if !clearText && !k.cfg.Sealer.NeedsReseal(sk.SealedKey) && len(sk.PublicJWK) > 0 {
		return jwk, alg, nil
	}
	sealed, err := k.cfg.Sealer.Seal(SealPurpose, sk.KID, plain)
	if err != nil {
		return fail("%v", err)
	}
	pubJSON, err := json.Marshal(pub)
	if err != nil {
		return fail("%v", err)
	}
	switch err := k.cfg.Store.ResealSigningKey(ctx, sk.KID, sk.SealedKey, sealed, pubJSON); {
	case err == nil:
		k.cfg.Logger.InfoContext(ctx, "signing key sealed under the primary key-encryption key",
			"kid", sk.KID, "kek", k.cfg.Sealer.PrimaryID(), "was_clear_text", clearText)
	case errors.Is(err, ErrKeyChanged):
		// Another replica resealed or deleted it; the key we hold is the
		// same key.
	default:
		return fail("reseal: %v", err)
	}
	return jwk, alg, nil
}

// publicJWK returns the published form of a key: public half, alg, use.
func publicJWK(jwk jose.JSONWebKey, alg jose.SignatureAlgorithm) jose.JSONWebKey {
	pub := jwk.Public()
	pub.Algorithm, pub.Use = string(alg), "sig"
	return pub
}

// sameKey reports whether two public JWKs are the same key with the same
// kid and algorithm.
func sameKey(a, b *jose.JSONWebKey) bool {
	ta, err1 := a.Thumbprint(crypto.SHA256)
	tb, err2 := b.Thumbprint(crypto.SHA256)
	return err1 == nil && err2 == nil && bytes.Equal(ta, tb) && a.KeyID == b.KeyID && a.Algorithm == b.Algorithm
}

func keyAlgorithm(key any) (jose.SignatureAlgorithm, error) {
	switch key := key.(type) {
	case ed25519.PrivateKey, ed25519.PublicKey:
		return jose.EdDSA, nil
	case *ecdsa.PrivateKey:
		if key.Curve == elliptic.P256() {
			return jose.ES256, nil
		}
	case *ecdsa.PublicKey:
		if key.Curve == elliptic.P256() {
			return jose.ES256, nil
		}
	}
	return "", fmt.Errorf("unsupported key type %T", key)
}

func generateSigningKey() (jose.JSONWebKey, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return jose.JSONWebKey{}, "", fmt.Errorf("token: generate signing key: %w", err)
	}
	jwk := jose.JSONWebKey{Key: priv, Algorithm: string(jose.EdDSA), Use: "sig"}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		return jose.JSONWebKey{}, "", fmt.Errorf("token: thumbprint: %w", err)
	}
	jwk.KeyID = base64.RawURLEncoding.EncodeToString(tp)
	return jwk, jwk.KeyID, nil
}

// Sign signs claims as a compact JWS with typ "at+jwt" and the current
// key's kid: it is the issuer of every mandate access token. The caller
// fills every claim.
func (k *Keyring) Sign(c *Claims) (string, error) {
	s := k.snap.Load()
	if s == nil || s.signer == nil {
		return "", errors.New("token: no signing key")
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("token: encode claims: %w", err)
	}
	jws, err := s.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("token: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// CurrentKeyID returns the kid of the key that signs now.
func (k *Keyring) CurrentKeyID() string {
	if s := k.snap.Load(); s != nil {
		return s.kid
	}
	return ""
}

// JWKS returns the public keys to publish: the current key and every
// retired key whose tokens may still be unexpired.
func (k *Keyring) JWKS() jose.JSONWebKeySet {
	s := k.snap.Load()
	if s == nil {
		return jose.JSONWebKeySet{Keys: []jose.JSONWebKey{}}
	}
	return jose.JSONWebKeySet{Keys: append([]jose.JSONWebKey(nil), s.jwks.Keys...)}
}

// PublicKey returns the published public key with kid. An unknown kid makes
// the keyring reload from the store (at most every few seconds), in case
// another replica rotated.
func (k *Keyring) PublicKey(ctx context.Context, kid string) (*jose.JSONWebKey, bool) {
	key, _, ok := k.publishedKey(ctx, kid)
	return key, ok
}

// RetiredAt returns when the published key kid stopped signing: zero for
// the current key or an unknown kid.
func (k *Keyring) RetiredAt(kid string) time.Time {
	if s := k.snap.Load(); s != nil {
		return s.retired[kid]
	}
	return time.Time{}
}

// publishedKey is PublicKey that also returns the key's retirement time.
func (k *Keyring) publishedKey(ctx context.Context, kid string) (*jose.JSONWebKey, time.Time, bool) {
	if s := k.snap.Load(); s != nil {
		if key, ok := s.published[kid]; ok {
			return key, s.retired[kid], true
		}
	}
	now := k.cfg.Now()
	if now.UnixNano()-k.lastReload.Load() < int64(reloadMinInterval) || !k.mu.TryLock() {
		return nil, time.Time{}, false
	}
	err := k.reloadLocked(ctx, now)
	k.mu.Unlock()
	if err != nil {
		k.cfg.Logger.ErrorContext(ctx, "signing key reload failed", "err", err)
		return nil, time.Time{}, false
	}
	s := k.snap.Load()
	if s == nil {
		return nil, time.Time{}, false
	}
	key, ok := s.published[kid]
	return key, s.retired[kid], ok
}
