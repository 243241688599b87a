package secrets

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
)

// Event types the broker records. A value is never in an event: the
// details' value_hmac is its keyed digest (audit.Redactor.HMAC).
const (
	TypeSecretPut     audit.Type = "secret.put"
	TypeSecretRotated audit.Type = "secret.rotated"
	TypeSecretRemoved audit.Type = "secret.removed"
	// TypeSecretsRewrapped: values sealed under an old key-encryption key
	// were sealed again under the primary one.
	TypeSecretsRewrapped audit.Type = "secret.rewrapped"
	TypeLeaseIssued      audit.Type = "secret.lease_issued"
	TypeLeaseRenewed     audit.Type = "secret.lease_renewed"
	TypeLeaseRevoked     audit.Type = "secret.lease_revoked"
	TypeLeaseExpired     audit.Type = "secret.lease_expired"
	// TypeLeaseRevokeFailed: a backend could not revoke a lease's
	// credential; it is retried at details.next_attempt.
	TypeLeaseRevokeFailed audit.Type = "secret.lease_revoke_failed"
	// TypeLeaseFailed: an allowed lease could not be issued (the value
	// does not open, the backend failed).
	TypeLeaseFailed audit.Type = "secret.lease_failed"
)

// Point is the enforcement point name the broker's events carry.
const Point = "secrets"

func (b *Broker) secretEvent(typ audit.Type, actor string, s *Secret, value []byte) audit.Event {
	ev := audit.Event{Type: typ, Actor: actor, Resource: "secret:" + string(s.Name), Point: Point,
		Details: map[string]string{"kind": string(s.Kind), "version": strconv.FormatInt(s.Version, 10), "secret_id": s.ID}}
	if value != nil {
		ev.Details["value_hmac"] = b.cfg.Digester.HMAC(value)
	}
	return ev
}

func (b *Broker) leaseEvent(typ audit.Type, l *Lease) audit.Event {
	ev := audit.Event{Type: typ, Actor: "system", Agent: l.Agent, Task: string(l.Task), Action: policy.ActionSecretUse,
		Resource: "secret:" + string(l.Secret), Point: Point,
		Details: map[string]string{"lease": string(l.ID), "kind": string(l.Kind), "expires_at": l.ExpiresAt.Format(time.RFC3339Nano)}}
	if l.Handle != "" {
		ev.Details["handle"] = l.Handle
	}
	return ev
}

// record writes ev; a failure is returned wrapping audit.ErrUnavailable.
func (b *Broker) record(ctx context.Context, ev audit.Event) error {
	if ev.Time.IsZero() {
		ev.Time = b.now()
	}
	if err := b.cfg.Recorder.Record(ctx, ev); err != nil {
		b.log.ErrorContext(ctx, "secrets event not recorded", "type", ev.Type, "err", err)
		if errors.Is(err, audit.ErrUnavailable) {
			return err
		}
		return errors.Join(audit.ErrUnavailable, err)
	}
	return nil
}

// recordLater records ev, keeping it for the next sweep if the ledger
// cannot take it now: what it tells (a revocation) has happened already.
func (b *Broker) recordLater(ctx context.Context, ev audit.Event) {
	if ev.Time.IsZero() {
		ev.Time = b.now()
	}
	if err := b.record(ctx, ev); err != nil {
		b.mu.Lock()
		if len(b.unrecorded) < maxUnrecorded {
			b.unrecorded = append(b.unrecorded, ev)
		} else {
			b.log.ErrorContext(ctx, "too many secrets events awaiting the ledger; dropping one", "type", ev.Type, "lease", ev.Details["lease"])
		}
		b.mu.Unlock()
	}
}

// maxUnrecorded bounds the events kept for the ledger's return.
const maxUnrecorded = 100_000

// flushUnrecorded retries the events the ledger could not take.
func (b *Broker) flushUnrecorded(ctx context.Context) {
	b.mu.Lock()
	evs := b.unrecorded
	b.unrecorded = nil
	b.mu.Unlock()
	for i, ev := range evs {
		if err := b.record(ctx, ev); err != nil {
			b.mu.Lock()
			b.unrecorded = append(evs[i:], b.unrecorded...)
			b.mu.Unlock()
			return
		}
	}
}
