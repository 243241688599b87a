package token

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// GrantKind says what a stored grant is.
type GrantKind string

// The kinds of grant the authorization code flow stores.
const (
	// GrantKindCode is an authorization code: single use, short-lived.
	GrantKindCode GrantKind = "code"
	// GrantKindRefresh is a refresh token: single use, rotated on every
	// use, bound to its task.
	GrantKindRefresh GrantKind = "refresh"
)

// Grant errors returned by GrantStore implementations.
var (
	// ErrGrantNotFound: no grant with that hash and kind, or it expired.
	ErrGrantNotFound = errors.New("grant not found")
	// ErrGrantSpent: the grant was already used. SpendGrant returns the
	// grant along with it, so that the caller can revoke what its first
	// use issued (RFC 9700 §2.1.1, §4.14.2).
	ErrGrantSpent = errors.New("grant already used")
	// ErrClientExists: a registered client with that ID already exists.
	ErrClientExists = errors.New("client already registered")
	// ErrClientNotFound: no registered client with that ID.
	ErrClientNotFound = errors.New("client not registered")
)

// Grant is an authorization code or refresh token as stored: never the
// secret itself, only its SHA-256 (Hash). Every grant belongs to one task
// (the one the person's consent started), so ending the task ends its
// grants; Family links the refresh tokens rotated from one code.
type Grant struct {
	Kind GrantKind
	// Hash is GrantHash of the secret the client holds.
	Hash string
	// Family is the hash of the code the chain of refresh tokens started
	// from.
	Family      string
	Task        task.ID
	Agent       identity.ID
	ClientID    string
	RedirectURI string
	// Challenge is the PKCE S256 code challenge (codes only).
	Challenge string
	// Resource is the audience the tokens are issued for (RFC 8707).
	Resource  string
	Scope     string
	CreatedAt time.Time
	ExpiresAt time.Time
	// UsedAt is when the grant was spent (zero while unused).
	UsedAt time.Time
}

// RegisteredClient is an OAuth client registered dynamically (RFC 7591).
type RegisteredClient struct {
	ClientID string
	// Metadata is the client's validated metadata (ClientMetadata), as
	// JSON.
	Metadata  []byte
	CreatedAt time.Time
}

// GrantStore persists authorization codes, refresh tokens and dynamically
// registered clients. Implementations are safe for concurrent use.
type GrantStore interface {
	// AddGrant stores a new grant. The hash is unique across kinds.
	AddGrant(ctx context.Context, g *Grant) error
	// SpendGrant marks the unexpired grant of kind with hash as used at
	// at, atomically, and returns it. It returns ErrGrantNotFound when
	// there is none (or it expired at at), and the grant together with
	// ErrGrantSpent when it was already used: only one caller ever spends
	// a grant.
	SpendGrant(ctx context.Context, kind GrantKind, hash string, at time.Time) (*Grant, error)
	// PruneGrants forgets grants that expired before now.
	PruneGrants(ctx context.Context, now time.Time) error

	// AddClient stores a registered client; ErrClientExists if its ID is
	// taken.
	AddClient(ctx context.Context, c *RegisteredClient) error
	// GetClient returns the registered client, or ErrClientNotFound.
	GetClient(ctx context.Context, clientID string) (*RegisteredClient, error)
}

// newSecret returns a fresh 256-bit random value, base64url encoded, with
// prefix: an authorization code, a refresh token or a client ID.
func newSecret(prefix string) string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return prefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// GrantHash is what a grant is stored under: the base64url SHA-256 of the
// secret the client holds. The secret itself is never stored.
func GrantHash(secret string) string {
	h := sha256.Sum256([]byte(secret))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
