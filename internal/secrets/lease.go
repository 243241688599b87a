package secrets

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/resource"
	"github.com/mandatehq/mandate/internal/task"
)

// LeaseID identifies a lease: "lse_" and 26 base32 characters (128
// random bits).
type LeaseID string

const leasePrefix = "lse_"

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewLeaseID returns a fresh random lease ID.
func NewLeaseID() LeaseID { return LeaseID(leasePrefix + randomID()) }

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (Go 1.24+)
	return strings.ToLower(idEncoding.EncodeToString(b[:]))
}

// ParseLeaseID validates s as a LeaseID.
func ParseLeaseID(s string) (LeaseID, error) {
	rest, ok := strings.CutPrefix(s, leasePrefix)
	if ok && len(rest) == 26 && strings.ToLower(rest) == rest {
		if _, err := idEncoding.DecodeString(strings.ToUpper(rest)); err == nil {
			return LeaseID(s), nil
		}
	}
	return "", fmt.Errorf("%w: %s is not a lease id", ErrInvalid, resource.Quote(s))
}

// LeaseStatus is where a lease is in its life.
type LeaseStatus string

// Lease statuses. Revoked and expired are final; failed is a revocation
// still being retried.
const (
	LeaseActive  LeaseStatus = "active"
	LeaseRevoked LeaseStatus = "revoked" // ended with its task, or by an admin
	LeaseExpired LeaseStatus = "expired" // reached ExpiresAt and was revoked
	// LeaseFailed: the backend could not revoke the credential; the
	// sweeper retries at NextAttempt. The credential may still work
	// (until ExpiresAt, for PostgreSQL's VALID UNTIL).
	LeaseFailed LeaseStatus = "failed"
)

// ParseLeaseStatus validates s.
func ParseLeaseStatus(s string) (LeaseStatus, error) {
	switch st := LeaseStatus(s); st {
	case LeaseActive, LeaseRevoked, LeaseExpired, LeaseFailed:
		return st, nil
	}
	return "", fmt.Errorf("%w: lease status %s: want active, revoked, expired or failed", ErrInvalid, resource.Quote(s))
}

// Final reports whether the lease has ended for good.
func (s LeaseStatus) Final() bool { return s == LeaseRevoked || s == LeaseExpired }

// Lease binds one secret to one task until ExpiresAt, which is never after
// the task's own expiry.
type Lease struct {
	ID     LeaseID `json:"id"`
	Secret Name    `json:"secret"`
	Kind   Kind    `json:"kind"`
	Task   task.ID `json:"task"`
	// Agent is the task's agent (SPIFFE ID).
	Agent     string      `json:"agent"`
	IssuedAt  time.Time   `json:"issued_at"`
	ExpiresAt time.Time   `json:"expires_at"`
	Status    LeaseStatus `json:"status"`
	// Handle is the backend's name for the credential (the PostgreSQL
	// role); empty for static secrets. Never a value.
	Handle   string `json:"handle,omitempty"`
	Renewals int    `json:"renewals,omitempty"`
	// EndedAt and Reason say when and why the lease stopped (or began to
	// be revoked, for a failed one).
	EndedAt time.Time `json:"ended_at,omitzero"`
	Reason  string    `json:"reason,omitempty"`
	// Attempts counts revocation attempts that failed; LastError is the
	// last failure; NextAttempt is when the sweeper tries again.
	Attempts    int       `json:"revoke_attempts,omitempty"`
	LastError   string    `json:"last_error,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
}

// Validate checks the lease's own fields.
func (l *Lease) Validate() error {
	if _, err := ParseLeaseID(string(l.ID)); err != nil {
		return err
	}
	if _, err := ParseName(string(l.Secret)); err != nil {
		return err
	}
	if _, err := ParseKind(string(l.Kind)); err != nil {
		return err
	}
	if _, err := task.ParseID(string(l.Task)); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if _, err := ParseLeaseStatus(string(l.Status)); err != nil {
		return err
	}
	if l.Agent == "" {
		return fmt.Errorf("%w: lease agent is required", ErrInvalid)
	}
	if !l.ExpiresAt.After(l.IssuedAt) {
		return fmt.Errorf("%w: lease expires_at must be after issued_at", ErrInvalid)
	}
	return nil
}

// LeaseFilter selects leases in Store.ListLeases. Zero fields match
// everything.
type LeaseFilter struct {
	Task   task.ID
	Secret Name
	// Statuses, if any, are the statuses matched.
	Statuses []LeaseStatus
	Limit    int
}

// Store persists secrets (their definitions and sealed values) and leases.
// It never sees a value in the clear. Implementations are safe for
// concurrent use; every method may also return a wrapped storage error
// (fault.ErrUnavailable for one an operator can fix).
type Store interface {
	// CreateSecret stores a new secret with its sealed value: ErrExists
	// if the name is taken, ErrInvalid if s does not validate.
	CreateSecret(ctx context.Context, s *Secret, sealed []byte) error
	// UpdateSecret replaces the definition of secret s.Name (its ID and
	// CreatedAt are kept) if its stored Version is prev, and its sealed
	// value too when sealed is not nil: ErrNotFound, ErrChanged (the
	// version is not prev), ErrInvalid.
	UpdateSecret(ctx context.Context, s *Secret, sealed []byte, prev int64) error
	// GetSecret returns the secret and its sealed value, or ErrNotFound.
	GetSecret(ctx context.Context, name Name) (*Secret, []byte, error)
	// ListSecrets returns every secret's definition ordered by name
	// (empty, not nil, when there are none); never a sealed value.
	ListSecrets(ctx context.Context) ([]*Secret, error)
	// DeleteSecret removes the secret (its leases stay, as history):
	// ErrNotFound.
	DeleteSecret(ctx context.Context, name Name) error
	// ReplaceSecretValue replaces the sealed value old with sealed (a
	// re-wrap under a new key-encryption key; the version is unchanged):
	// ErrNotFound, ErrChanged if the stored value is not old.
	ReplaceSecretValue(ctx context.Context, name Name, old, sealed []byte) error

	// CreateLease stores a new lease (status active) with the sealed
	// value it delivers (nil for a static secret, whose value is the
	// secret's). In the same transaction it checks that the task exists
	// (else task.ErrNotFound), is active and unexpired at l.IssuedAt and
	// belongs to l.Agent (else task.ErrNotActive), and that l.ExpiresAt
	// is not after the task's (else ErrInvalid): a lease never outlives
	// its task, nor is one issued to a task that ended meanwhile.
	// ErrExists for a taken ID.
	CreateLease(ctx context.Context, l *Lease, sealed []byte) error
	// GetLease returns a lease, or ErrLeaseNotFound.
	GetLease(ctx context.Context, id LeaseID) (*Lease, error)
	// ListLeases returns the leases matching f, newest first (empty, not
	// nil, when none match).
	ListLeases(ctx context.Context, f LeaseFilter) ([]*Lease, error)
	// UpdateLease stores l's mutable fields (Status, ExpiresAt, Renewals,
	// EndedAt, Reason, Attempts, LastError, NextAttempt) if the stored
	// status is from: ErrLeaseNotFound, ErrChanged. A lease moved to a
	// final status loses its sealed value.
	UpdateLease(ctx context.Context, l *Lease, from LeaseStatus) error
	// DueLeases returns the leases the sweeper must act on at now: active
	// ones that reached their ExpiresAt or whose task is no longer active
	// (finished, or past its own expiry), and failed ones whose
	// NextAttempt is not after now; oldest first, at most limit.
	DueLeases(ctx context.Context, now time.Time, limit int) ([]*Lease, error)
	// LeaseValue returns the lease's sealed value: nil for a static
	// secret's lease or an ended one; ErrLeaseNotFound.
	LeaseValue(ctx context.Context, id LeaseID) ([]byte, error)
	// ReplaceLeaseValue replaces the lease's sealed value old with sealed
	// (a re-wrap): ErrLeaseNotFound, ErrChanged.
	ReplaceLeaseValue(ctx context.Context, id LeaseID, old, sealed []byte) error
	// CountLeases returns how many leases there are in each status.
	CountLeases(ctx context.Context) (map[LeaseStatus]int, error)
}
