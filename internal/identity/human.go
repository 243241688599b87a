package identity

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits on people's records.
const (
	MaxHumanGroups   = 256
	MaxHumanFieldLen = 320
)

// People errors returned by PeopleStore implementations.
var (
	// ErrHumanNotFound: no person with that issuer and subject.
	ErrHumanNotFound = errors.New("person not found")
	// ErrSessionNotFound: no live session with that ID.
	ErrSessionNotFound = errors.New("session not found")
)

// LocalIssuer is the issuer of the local administrator, who signs in with
// the one-time link `mandate serve` prints (no identity provider).
const LocalIssuer = "urn:mandate:local"

// Human is a person mandate knows: an owner, approver, admin or someone an
// agent acts for, identified by their identity provider (Issuer plus
// Subject) and signed in by OpenID Connect, or the local administrator of
// the zero-configuration start (Issuer LocalIssuer).
type Human struct {
	Issuer  string
	Subject string
	// Principal is how tasks name the person as on-behalf-of: their
	// email (or subject, as the identity provider's configuration says).
	Principal string
	Email     string
	Name      string
	Groups    []string
	// Admin: the person may administer mandate from the web.
	Admin     bool
	CreatedAt time.Time
	LastSeen  time.Time
}

// Key is the person's unique key, issuer and subject.
func (h *Human) Key() string { return h.Issuer + " " + h.Subject }

// Validate checks the record's fields: issuer, subject and principal
// present, every field UTF-8 and bounded. Errors wrap ErrInvalid.
func (h *Human) Validate() error {
	fields := append([]string{h.Issuer, h.Subject, h.Principal, h.Email, h.Name}, h.Groups...)
	for _, f := range fields {
		if len(f) > MaxHumanFieldLen || !utf8.ValidString(f) {
			return fmt.Errorf("%w: person fields must be UTF-8 of at most %d bytes", ErrInvalid, MaxHumanFieldLen)
		}
	}
	if strings.TrimSpace(h.Issuer) == "" || strings.TrimSpace(h.Subject) == "" || strings.TrimSpace(h.Principal) == "" {
		return fmt.Errorf("%w: a person needs an issuer, a subject and a principal", ErrInvalid)
	}
	if len(h.Groups) > MaxHumanGroups {
		return fmt.Errorf("%w: at most %d groups", ErrInvalid, MaxHumanGroups)
	}
	return nil
}

// Session is a person's signed-in browser session, kept server side. The
// browser holds only the session's secret in a cookie; the store keeps
// its hash (ID).
type Session struct {
	// ID is the SHA-256 of the cookie's secret (base64url).
	ID string
	// Human is the signed-in person's Key.
	Human string
	// CSRF is the token every state-changing form of the session must
	// carry.
	CSRF      string
	UserAgent string
	CreatedAt time.Time
	LastSeen  time.Time
	ExpiresAt time.Time
	// RevokedAt is when the session was ended (zero while live).
	RevokedAt time.Time
}

// PeopleStore persists people and their sessions. Implementations are safe
// for concurrent use.
type PeopleStore interface {
	// UpsertHuman creates the person or updates their email, name,
	// groups, principal, admin flag and LastSeen (CreatedAt is kept).
	// Errors wrap ErrInvalid for a record that fails Validate.
	UpsertHuman(ctx context.Context, h *Human) error
	// GetHuman returns the person with that issuer and subject, or
	// ErrHumanNotFound.
	GetHuman(ctx context.Context, issuer, subject string) (*Human, error)
	// CreateSession stores a new session.
	CreateSession(ctx context.Context, s *Session) error
	// GetSession returns the session with that ID if it is neither
	// revoked nor expired at now, or ErrSessionNotFound.
	GetSession(ctx context.Context, id string, now time.Time) (*Session, error)
	// TouchSession sets the session's LastSeen.
	TouchSession(ctx context.Context, id string, at time.Time) error
	// ListSessions returns the live sessions of a person (Human.Key) at
	// now, newest first.
	ListSessions(ctx context.Context, human string, now time.Time) ([]*Session, error)
	// RevokeSession ends the session with that ID if it belongs to human
	// (any person's when human is empty); ErrSessionNotFound otherwise.
	RevokeSession(ctx context.Context, id, human string, at time.Time) error
}
