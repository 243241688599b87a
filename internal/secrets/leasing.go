package secrets

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// DecisionError is a secret.use decision that issued no lease: a deny
// (errors.Is ErrDenied) or a hold for approval (ErrApprovalRequired).
type DecisionError struct {
	Decision policy.Decision
	// Cause is the decider's error, if the deny came from one (an
	// inactive task, the ledger down).
	Cause error
}

func (e *DecisionError) Error() string {
	var why []string
	for _, r := range e.Decision.Reasons {
		if r.Message != "" {
			why = append(why, r.Message)
		} else {
			why = append(why, r.Policy)
		}
	}
	if e.Cause != nil {
		why = append(why, e.Cause.Error())
	}
	what := "secret use denied"
	if e.Decision.Effect == policy.ApprovalRequired {
		what = "secret use needs approval"
	}
	if len(why) == 0 {
		return what
	}
	return what + ": " + strings.Join(why, "; ")
}

// Is reports ErrDenied or ErrApprovalRequired, as the decision was.
func (e *DecisionError) Is(target error) bool {
	if e.Decision.Effect == policy.ApprovalRequired {
		return target == ErrApprovalRequired
	}
	return target == ErrDenied
}

// Unwrap returns the decider's error.
func (e *DecisionError) Unwrap() error { return e.Cause }

// Lease leases secret to task taskID for ttl (zero: until the task's
// expiry, which also caps any ttl). It first asks the Decider for a
// secret.use decision: a deny or a hold issues nothing and is returned as a
// *DecisionError. When allowed, the lease is stored (only if the task is
// still active), recorded, and, for a dynamic secret, its credential is
// created. An error after the decision issues no lease.
func (b *Broker) Lease(ctx context.Context, taskID task.ID, secret string, ttl time.Duration) (*Lease, error) {
	name, t, d, err := b.decide(ctx, taskID, secret, ttl)
	if err != nil {
		return nil, err
	}
	return b.issue(ctx, t, name, ttl, d)
}

// decide asks the Decider for the secret.use decision of secret for task
// taskID: a deny or a hold is a *DecisionError.
func (b *Broker) decide(ctx context.Context, taskID task.ID, secret string, ttl time.Duration) (Name, *task.Task, policy.Decision, error) {
	name, err := ParseName(secret)
	if err != nil {
		return "", nil, policy.Decision{}, err
	}
	if ttl < 0 {
		return "", nil, policy.Decision{}, fmt.Errorf("%w: a negative lease ttl", ErrInvalid)
	}
	t, err := b.cfg.Tasks.GetTask(ctx, taskID)
	if err != nil {
		return "", nil, policy.Decision{}, err
	}
	d, err := b.cfg.Decider.DecideSecretUse(ctx, taskID, t.Agent.String(), string(name))
	if err != nil || !d.Allowed() {
		return "", nil, d, &DecisionError{Decision: d, Cause: err}
	}
	return name, t, d, nil
}

// issue issues the lease of secret name to task t that decision d allowed.
func (b *Broker) issue(ctx context.Context, t *task.Task, name Name, ttl time.Duration, d policy.Decision) (*Lease, error) {
	taskID := t.ID
	s, sealed, err := b.cfg.Store.GetSecret(ctx, name)
	if err != nil {
		return nil, err
	}
	now := b.now()
	l := &Lease{ID: NewLeaseID(), Secret: name, Kind: s.Kind, Task: taskID, Agent: t.Agent.String(),
		IssuedAt: now, ExpiresAt: t.ExpiresAt.UTC(), Status: LeaseActive}
	if ttl > 0 && now.Add(ttl).Before(l.ExpiresAt) {
		l.ExpiresAt = now.Add(ttl)
	}
	if !l.ExpiresAt.After(now) {
		return nil, fmt.Errorf("%w: %s has expired", task.ErrNotActive, taskID)
	}
	conn, err := b.open(s, sealed)
	if err != nil {
		b.recordLater(ctx, b.failedEvent(l, "the secret's value does not open"))
		return nil, err
	}
	defer clear(conn)
	var be Backend
	var leaseSealed, value []byte
	if s.Kind != KindStatic {
		var ok bool
		if be, ok = b.cfg.Backends[s.Kind]; !ok {
			return nil, fmt.Errorf("%w: no %s backend is configured", ErrBackend, s.Kind)
		}
		if l.Handle, value, err = be.Prepare(s, conn, l); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrBackend, err)
		}
		defer clear(value)
		if leaseSealed, err = b.cfg.Sealer.Seal(SealPurposeLease, string(l.ID), value); err != nil {
			return nil, fmt.Errorf("secrets: seal lease: %w", err)
		}
	}
	// Stored before the credential exists, so that a credential is never
	// made that no lease remembers.
	if err := b.cfg.Store.CreateLease(ctx, l, leaseSealed); err != nil {
		return nil, err
	}
	ev := b.leaseEvent(TypeLeaseIssued, l)
	ev.Decision, ev.Reasons = string(d.Effect), reasons(d)
	if value != nil {
		ev.Details["value_hmac"] = b.cfg.Digester.HMAC(value)
	} else {
		ev.Details["value_hmac"] = b.cfg.Digester.HMAC(conn)
		ev.Details["version"] = fmt.Sprint(s.Version)
	}
	if err := b.record(ctx, ev); err != nil {
		// No lease the ledger does not know of is ever used.
		b.revoke(ctx, l, LeaseRevoked, "its issue could not be recorded")
		return nil, err
	}
	if be != nil {
		cctx, cancel := context.WithTimeout(ctx, b.cfg.BackendTimeout)
		err := be.Create(cctx, s, conn, l, value)
		cancel()
		if err != nil {
			b.recordLater(ctx, b.failedEvent(l, "the backend did not create the credential: "+err.Error()))
			b.revoke(ctx, l, LeaseRevoked, "its credential could not be created")
			return nil, fmt.Errorf("%w: %s: %v", ErrBackend, name, err)
		}
		// The task may have ended while the credential was made: its
		// revocation then found no credential yet.
		if cur, err := b.cfg.Store.GetLease(ctx, l.ID); err == nil && cur.Status != LeaseActive {
			b.revokeCredential(ctx, cur)
			return nil, fmt.Errorf("%w: %s ended while its lease was issued", task.ErrNotActive, taskID)
		}
	}
	return l, nil
}

func (b *Broker) failedEvent(l *Lease, reason string) audit.Event {
	ev := b.leaseEvent(TypeLeaseFailed, l)
	ev.Reason = reason
	return ev
}

func reasons(d policy.Decision) []audit.PolicyReason {
	var out []audit.PolicyReason
	for _, r := range d.Reasons {
		out = append(out, audit.PolicyReason{Policy: r.Policy, Message: r.Message})
	}
	return out
}

// Renew extends lease id to ttl from now, never past its task's expiry; a
// renewal is a new secret.use decision. It returns the renewed lease.
func (b *Broker) Renew(ctx context.Context, id LeaseID, ttl time.Duration) (*Lease, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("%w: a renewal needs a positive ttl", ErrInvalid)
	}
	l, err := b.cfg.Store.GetLease(ctx, id)
	if err != nil {
		return nil, err
	}
	now := b.now()
	if l.Status != LeaseActive || !l.ExpiresAt.After(now) {
		return nil, fmt.Errorf("%w: lease %s is %s", task.ErrNotActive, id, l.Status)
	}
	t, err := b.cfg.Tasks.GetTask(ctx, l.Task)
	if err != nil {
		return nil, err
	}
	d, err := b.cfg.Decider.DecideSecretUse(ctx, l.Task, l.Agent, string(l.Secret))
	if err != nil || !d.Allowed() {
		return nil, &DecisionError{Decision: d, Cause: err}
	}
	renewed := *l
	renewed.ExpiresAt = now.Add(ttl)
	if t.ExpiresAt.Before(renewed.ExpiresAt) {
		renewed.ExpiresAt = t.ExpiresAt.UTC()
	}
	renewed.Renewals++
	if l.Kind != KindStatic {
		if err := b.withConn(ctx, l, func(be Backend, conn []byte) error {
			cctx, cancel := context.WithTimeout(ctx, b.cfg.BackendTimeout)
			defer cancel()
			return be.Extend(cctx, conn, &renewed)
		}); err != nil {
			return nil, fmt.Errorf("%w: renew %s: %v", ErrBackend, id, err)
		}
	}
	if err := b.record(ctx, b.leaseEvent(TypeLeaseRenewed, &renewed)); err != nil {
		return nil, err
	}
	if err := b.cfg.Store.UpdateLease(ctx, &renewed, LeaseActive); err != nil {
		return nil, err
	}
	return &renewed, nil
}

// Delivery is one leased value and the target it goes to.
type Delivery struct {
	Lease  *Lease
	Target Target
	Value  Value
}

// ForUpstream returns, for the active leases of task taskID, the values
// their secrets deliver to MCP upstream (one Delivery per target there):
// what the gateway injects into that upstream's environment or headers.
func (b *Broker) ForUpstream(ctx context.Context, taskID task.ID, upstream string) ([]Delivery, error) {
	return b.deliveries(ctx, taskID, func(t Target) bool { return t.Upstream == upstream && t.Host == "" })
}

// ForHost returns, for the active leases of task taskID, the values their
// secrets deliver to requests to host through the egress proxy.
func (b *Broker) ForHost(ctx context.Context, taskID task.ID, host string) ([]Delivery, error) {
	return b.deliveries(ctx, taskID, func(t Target) bool { return t.Host != "" && t.Host == host })
}

func (b *Broker) deliveries(ctx context.Context, taskID task.ID, match func(Target) bool) ([]Delivery, error) {
	leases, err := b.cfg.Store.ListLeases(ctx, LeaseFilter{Task: taskID, Statuses: []LeaseStatus{LeaseActive}})
	if err != nil {
		return nil, err
	}
	now := b.now()
	var out []Delivery
	for _, l := range leases {
		if !l.ExpiresAt.After(now) {
			continue // the sweeper ends it
		}
		s, sealed, err := b.cfg.Store.GetSecret(ctx, l.Secret)
		if err != nil {
			return nil, err
		}
		var targets []Target
		for _, t := range s.Deliver {
			if match(t) {
				targets = append(targets, t)
			}
		}
		if len(targets) == 0 {
			continue
		}
		var v []byte
		if l.Kind == KindStatic {
			v, err = b.open(s, sealed)
		} else {
			v, err = b.leaseValue(ctx, l)
		}
		if err != nil {
			return nil, err
		}
		for _, t := range targets {
			out = append(out, Delivery{Lease: l, Target: t, Value: NewValue(v)})
		}
	}
	return out, nil
}

// leaseValue opens the credential a dynamic lease delivers.
func (b *Broker) leaseValue(ctx context.Context, l *Lease) ([]byte, error) {
	sealed, err := b.cfg.Store.LeaseValue(ctx, l.ID)
	if err != nil {
		return nil, err
	}
	if sealed == nil {
		return nil, fmt.Errorf("%w: lease %s holds no credential", ErrUnusable, l.ID)
	}
	v, err := b.cfg.Sealer.Open(SealPurposeLease, string(l.ID), sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: lease %s: %w", ErrUnusable, l.ID, err)
	}
	return v, nil
}

// withConn calls fn with the backend and the opened connection of l's
// secret.
func (b *Broker) withConn(ctx context.Context, l *Lease, fn func(Backend, []byte) error) error {
	be, ok := b.cfg.Backends[l.Kind]
	if !ok {
		return fmt.Errorf("no %s backend is configured", l.Kind)
	}
	s, sealed, err := b.cfg.Store.GetSecret(ctx, l.Secret)
	if err != nil {
		return err
	}
	conn, err := b.open(s, sealed)
	if err != nil {
		return err
	}
	defer clear(conn)
	return fn(be, conn)
}
