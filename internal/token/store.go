package token

import (
	"context"
	"errors"
	"time"
)

// Sentinel errors returned by Store implementations.
var (
	// ErrReplay: a one-time identifier (a client assertion's or DPoP
	// proof's jti) was already used.
	ErrReplay = errors.New("identifier already used")
	// ErrKeyExists: a signing key with that kid is already stored.
	ErrKeyExists = errors.New("signing key already exists")
	// ErrKeyChanged: ResealSigningKey found the key changed or gone.
	ErrKeyChanged = errors.New("signing key changed or deleted concurrently")
)

// SigningKey is one of the authorization server's own signing keys, as
// stored. The store never sees the private key in the clear: SealedKey is
// the private JWK sealed by package seal (purpose SealPurpose, record id
// the kid), and PublicJWK its public half, for the JWKS. (A store written
// before sealing may return a plaintext private JWK in SealedKey and no
// PublicJWK; the keyring seals such keys in place at start.)
type SigningKey struct {
	KID       string
	Algorithm string
	SealedKey []byte
	PublicJWK []byte
	CreatedAt time.Time
	// RetiredAt is when the key stopped signing (zero while current).
	RetiredAt time.Time
	// PublishUntil is when the key may be dropped from the JWKS: the
	// expiry of the last token it can have signed.
	PublishUntil time.Time
}

// Store persists the authorization server's state. Implementations are safe
// for concurrent use.
type Store interface {
	// AddSigningKey stores a new signing key; ErrKeyExists if the kid is taken.
	AddSigningKey(ctx context.Context, k SigningKey) error
	// RetireSigningKey sets RetiredAt and PublishUntil of the key with kid.
	RetireSigningKey(ctx context.Context, kid string, retiredAt, publishUntil time.Time) error
	// SigningKeys returns every stored key whose PublishUntil is zero or
	// after now, oldest first.
	SigningKeys(ctx context.Context, now time.Time) ([]SigningKey, error)
	// DeleteSigningKeys removes keys whose PublishUntil is set and not
	// after now.
	DeleteSigningKeys(ctx context.Context, now time.Time) error
	// ResealSigningKey replaces the SealedKey and PublicJWK of the key with
	// kid, provided its SealedKey is still old (compare and swap); it
	// returns ErrKeyChanged if the key is gone or holds something else.
	ResealSigningKey(ctx context.Context, kid string, old, sealed, publicJWK []byte) error

	// UseOnce records that the one-time identifier id in namespace has
	// been used; it must be remembered until expiresAt. It returns
	// ErrReplay if it was already recorded and has not expired.
	UseOnce(ctx context.Context, namespace, id string, expiresAt time.Time) error
	// PruneUsed forgets identifiers whose expiry is not after now.
	PruneUsed(ctx context.Context, now time.Time) error

	// RevokeToken records that the token with jti is revoked; it is kept
	// until expiresAt (the token's own expiry). Revoking twice is not an
	// error.
	RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error
	// RevokedTokens returns the jtis of revoked tokens that expire after now.
	RevokedTokens(ctx context.Context, now time.Time) ([]string, error)
}
