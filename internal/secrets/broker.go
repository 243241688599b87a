package secrets

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/task"
)

// Seal purposes: a secret's value is sealed for its secret's ID, a lease's
// credential for the lease's ID.
const (
	SealPurposeValue = "secrets.value"
	SealPurposeLease = "secrets.lease"
)

// Decider decides secret.use: the one decision pipeline
// (access.Pipeline.DecideSecretUse) satisfies it. The decision is recorded
// by the decider; an error comes with a deny.
type Decider interface {
	DecideSecretUse(ctx context.Context, taskID task.ID, agent, secret string) (policy.Decision, error)
}

// Digester is the ledger's keyed digest (audit.Redactor): the ledger
// holds the HMAC of a value, never the value.
type Digester interface {
	HMAC(b []byte) string
}

// Backend makes and ends the credentials of a dynamic kind of secret. conn
// is the secret's value (the connection the backend administers with), in
// the clear only for the call. Implementations are safe for concurrent use.
type Backend interface {
	// CheckValue validates a secret's value without connecting.
	CheckValue(conn []byte) error
	// Prepare makes lease l's credential without I/O: its handle (a role
	// name) and the value to deliver (a connection URL with a fresh
	// random password).
	Prepare(s *Secret, conn []byte, l *Lease) (handle string, value []byte, err error)
	// Create creates the prepared credential, valid until l.ExpiresAt.
	Create(ctx context.Context, s *Secret, conn []byte, l *Lease, value []byte) error
	// Extend moves the credential's end to l.ExpiresAt.
	Extend(ctx context.Context, conn []byte, l *Lease) error
	// Revoke ends l's credential: no new logins, its sessions ended, the
	// credential dropped. A credential that is already gone is no error.
	Revoke(ctx context.Context, conn []byte, l *Lease) error
}

// Config configures a Broker.
type Config struct {
	Store Store
	Tasks interface {
		GetTask(context.Context, task.ID) (*task.Task, error)
	}
	Sealer   *seal.Keyring
	Decider  Decider
	Recorder audit.Recorder
	Digester Digester
	// Backends are the dynamic kinds' backends (KindPostgres); a secret
	// of a kind without one cannot be put or leased.
	Backends map[Kind]Backend
	// SweepEvery is how often Run sweeps (default DefaultSweepEvery).
	SweepEvery time.Duration
	// RetryMin and RetryMax bound the backoff between revocation attempts
	// (defaults DefaultRetryMin, DefaultRetryMax).
	RetryMin, RetryMax time.Duration
	// BackendTimeout bounds each call to a backend (default
	// DefaultBackendTimeout).
	BackendTimeout time.Duration
	Now            func() time.Time
	Logger         *slog.Logger
}

// Defaults.
const (
	DefaultSweepEvery     = time.Second
	DefaultRetryMin       = time.Second
	DefaultRetryMax       = 5 * time.Minute
	DefaultBackendTimeout = 5 * time.Second
)

// Broker keeps secrets and issues, delivers and revokes their leases. It
// is safe for concurrent use.
type Broker struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	mu         sync.Mutex
	unrecorded []audit.Event // revocation events the ledger could not take yet

	// changes counts the changes to secrets and leases (Changes).
	changes atomic.Uint64
}

// New returns a Broker, filling defaults.
func New(cfg Config) (*Broker, error) {
	if cfg.Store == nil || cfg.Tasks == nil || cfg.Sealer == nil || cfg.Decider == nil || cfg.Recorder == nil || cfg.Digester == nil {
		return nil, errors.New("secrets: a store, tasks, a sealer, a decider, a recorder and a digester are required")
	}
	if cfg.SweepEvery <= 0 {
		cfg.SweepEvery = DefaultSweepEvery
	}
	if cfg.RetryMin <= 0 {
		cfg.RetryMin = DefaultRetryMin
	}
	if cfg.RetryMax < cfg.RetryMin {
		cfg.RetryMax = max(DefaultRetryMax, cfg.RetryMin)
	}
	if cfg.BackendTimeout <= 0 {
		cfg.BackendTimeout = DefaultBackendTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Broker{cfg: cfg, log: log, metrics: newMetrics()}, nil
}

func (b *Broker) now() time.Time { return b.cfg.Now().UTC() }

// Changes is a counter that moves after every change this broker makes
// to a secret (put, rotate, remove) or ends a lease (revoked, expired,
// failed): a holder of leased values, such as the egress proxy's lease
// cache, reuses them only while it has not moved. It moves once the
// change is stored.
func (b *Broker) Changes() uint64 { return b.changes.Load() }

// PutRequest is the input to Put. Value is required when the secret is
// created, optional when it is replaced (nil keeps the value).
type PutRequest struct {
	Name        string            `json:"-"`
	Kind        Kind              `json:"kind,omitempty"`
	Description string            `json:"description,omitempty"`
	Deliver     []Target          `json:"deliver,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Postgres    *PostgresConfig   `json:"postgres,omitempty"`
	Value       []byte            `json:"-"`
}

// Put creates the secret req names, or replaces its definition (and its
// value, if req has one). created reports a new secret. The change is
// recorded (with the value's HMAC) before it is stored.
func (b *Broker) Put(ctx context.Context, actor string, req PutRequest) (s *Secret, created bool, err error) {
	name, err := ParseName(req.Name)
	if err != nil {
		return nil, false, err
	}
	if req.Kind == "" {
		req.Kind = KindStatic
	}
	if req.Value != nil {
		if err := b.checkValue(req.Kind, req.Value); err != nil {
			return nil, false, err
		}
	}
	now := b.now()
	cur, _, err := b.cfg.Store.GetSecret(ctx, name)
	switch {
	case errors.Is(err, ErrNotFound):
		if req.Value == nil {
			return nil, false, fmt.Errorf("%w: a new secret needs its value", ErrInvalid)
		}
		s = &Secret{ID: "sec_" + randomID(), Name: name, Version: 1, CreatedAt: now}
	case err != nil:
		return nil, false, err
	default:
		if cur.Kind != req.Kind {
			return nil, false, fmt.Errorf("%w: %s is a %s secret; remove it to make it %s", ErrInvalid, name, cur.Kind, req.Kind)
		}
		cp := *cur
		s = &cp
		if req.Value != nil {
			s.Version++
		}
	}
	s.Kind, s.Description, s.Deliver, s.Labels, s.Postgres = req.Kind, req.Description, req.Deliver, req.Labels, req.Postgres
	s.UpdatedAt, s.UpdatedBy = now, actor
	if s.Deliver == nil {
		s.Deliver = []Target{}
	}
	if err := s.Validate(); err != nil {
		return nil, false, err
	}
	var sealed []byte
	if req.Value != nil {
		if sealed, err = b.cfg.Sealer.Seal(SealPurposeValue, s.ID, req.Value); err != nil {
			return nil, false, fmt.Errorf("secrets: seal %s: %w", name, err)
		}
	}
	ev := b.secretEvent(TypeSecretPut, actor, s, req.Value)
	if cur == nil {
		ev.Details["operation"] = "create"
	} else {
		ev.Details["operation"] = "update"
	}
	if err := b.record(ctx, ev); err != nil {
		return nil, false, err
	}
	defer b.changes.Add(1)
	if cur == nil {
		return s, true, b.cfg.Store.CreateSecret(ctx, s, sealed)
	}
	return s, false, b.cfg.Store.UpdateSecret(ctx, s, sealed, cur.Version)
}

// Rotate replaces the value of secret name (a new version). Leases of a
// static secret deliver the new value from now on; a dynamic secret's
// value is its connection, used for the leases issued and revoked next.
func (b *Broker) Rotate(ctx context.Context, actor, name string, value []byte) (*Secret, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	cur, _, err := b.cfg.Store.GetSecret(ctx, n)
	if err != nil {
		return nil, err
	}
	if err := b.checkValue(cur.Kind, value); err != nil {
		return nil, err
	}
	s := *cur
	s.Version++
	s.UpdatedAt, s.UpdatedBy = b.now(), actor
	sealed, err := b.cfg.Sealer.Seal(SealPurposeValue, s.ID, value)
	if err != nil {
		return nil, fmt.Errorf("secrets: seal %s: %w", n, err)
	}
	if err := b.record(ctx, b.secretEvent(TypeSecretRotated, actor, &s, value)); err != nil {
		return nil, err
	}
	defer b.changes.Add(1)
	if err := b.cfg.Store.UpdateSecret(ctx, &s, sealed, cur.Version); err != nil {
		return nil, err
	}
	return &s, nil
}

// Remove revokes every lease of secret name that has not ended and then
// deletes the secret. If a revocation fails (it is retried by the
// sweeper), the secret stays and the error wraps ErrInUse: its connection
// is needed to finish revoking.
func (b *Broker) Remove(ctx context.Context, actor, name string) error {
	n, err := ParseName(name)
	if err != nil {
		return err
	}
	s, _, err := b.cfg.Store.GetSecret(ctx, n)
	if err != nil {
		return err
	}
	leases, err := b.cfg.Store.ListLeases(ctx, LeaseFilter{Secret: n, Statuses: []LeaseStatus{LeaseActive, LeaseFailed}})
	if err != nil {
		return err
	}
	defer b.changes.Add(1)
	pending := 0
	for _, l := range leases {
		if !b.revoke(ctx, l, LeaseRevoked, "its secret was removed by "+actor) {
			pending++
		}
	}
	if pending > 0 {
		return fmt.Errorf("%w: %d lease(s) of %s could not be revoked yet; they are retried (mandate secret lease list --failed); remove it again once they are revoked", ErrInUse, pending, n)
	}
	if err := b.record(ctx, b.secretEvent(TypeSecretRemoved, actor, s, nil)); err != nil {
		return err
	}
	return b.cfg.Store.DeleteSecret(ctx, n)
}

// Get returns secret name's definition (never its value).
func (b *Broker) Get(ctx context.Context, name string) (*Secret, error) {
	n, err := ParseName(name)
	if err != nil {
		return nil, err
	}
	s, _, err := b.cfg.Store.GetSecret(ctx, n)
	return s, err
}

// List returns every secret's definition.
func (b *Broker) List(ctx context.Context) ([]*Secret, error) { return b.cfg.Store.ListSecrets(ctx) }

// Leases returns the leases matching f.
func (b *Broker) Leases(ctx context.Context, f LeaseFilter) ([]*Lease, error) {
	return b.cfg.Store.ListLeases(ctx, f)
}

func (b *Broker) checkValue(kind Kind, value []byte) error {
	if len(value) == 0 {
		return fmt.Errorf("%w: the value is empty", ErrInvalid)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("%w: the value is %d bytes, over the %d-byte limit", ErrInvalid, len(value), MaxValueSize)
	}
	if kind == KindStatic {
		return nil
	}
	be, ok := b.cfg.Backends[kind]
	if !ok {
		return fmt.Errorf("%w: no %s backend is configured", ErrInvalid, kind)
	}
	if err := be.CheckValue(value); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// open opens a secret's sealed value; one that does not open is
// ErrUnusable (an unknown key-encryption key is reported as such).
func (b *Broker) open(s *Secret, sealed []byte) ([]byte, error) {
	v, err := b.cfg.Sealer.Open(SealPurposeValue, s.ID, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrUnusable, s.Name, err)
	}
	return v, nil
}
