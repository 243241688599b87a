package secrets

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/mandatehq/mandate/internal/task"
)

// maxErrorLen bounds the error text kept on a lease.
const maxErrorLen = 512

// RevokeTask revokes every active lease of task taskID at once, with
// reason. A dynamic lease whose credential cannot be revoked now is marked
// failed and retried by the sweeper; RevokeTask reports how many leases
// ended and how many are pending.
func (b *Broker) RevokeTask(ctx context.Context, taskID task.ID, reason string) (ended, pending int, err error) {
	leases, err := b.cfg.Store.ListLeases(ctx, LeaseFilter{Task: taskID, Statuses: []LeaseStatus{LeaseActive}})
	if err != nil {
		return 0, 0, err
	}
	for _, l := range leases {
		if b.revoke(ctx, l, LeaseRevoked, reason) {
			ended++
		} else {
			pending++
		}
	}
	return ended, pending, nil
}

// RevokeTaskLeases revokes the leases of every task in ids: the task
// lifecycle calls it for each task it stops (ended, revoked, expired, or
// with its agent's suspension). Failures are marked on the leases and
// retried; a store that cannot list them now leaves them to the sweeper,
// which finds every active lease of a task that is no longer active.
func (b *Broker) RevokeTaskLeases(ctx context.Context, ids []task.ID) {
	// Finished even if the caller that stopped the tasks goes away.
	ctx = context.WithoutCancel(ctx)
	for _, id := range ids {
		if _, pending, err := b.RevokeTask(ctx, id, "its task stopped"); err != nil || pending > 0 {
			b.log.WarnContext(ctx, "task's leases not all revoked yet; the sweeper retries", "task", id, "pending", pending, "err", err)
		}
	}
}

// revoke ends lease l (active or failed) as status to: for a dynamic
// secret it first revokes the credential, and on failure marks the lease
// failed with the next attempt's time. It reports whether the lease ended.
// Each outcome is recorded.
func (b *Broker) revoke(ctx context.Context, l *Lease, to LeaseStatus, reason string) bool {
	from := l.Status
	if from.Final() {
		return true
	}
	defer b.changes.Add(1)
	now := b.now()
	u := *l
	if u.EndedAt.IsZero() {
		u.EndedAt = now
	}
	if from == LeaseActive {
		u.Reason = reason
	}
	if l.Kind != KindStatic {
		if err := b.revokeCredential(ctx, l); err != nil {
			u.Status, u.Attempts = LeaseFailed, u.Attempts+1
			u.LastError = truncate(err.Error(), maxErrorLen)
			u.NextAttempt = now.Add(b.backoff(u.Attempts))
			b.metrics.revokeFailures.Inc()
			if err := b.cfg.Store.UpdateLease(ctx, &u, from); err != nil {
				b.log.ErrorContext(ctx, "lease revocation failed and could not be marked; the sweeper retries", "lease", l.ID, "err", err)
				return false
			}
			ev := b.leaseEvent(TypeLeaseRevokeFailed, &u)
			ev.Reason = u.Reason
			ev.Details["attempts"] = strconv.Itoa(u.Attempts)
			ev.Details["error"] = u.LastError
			ev.Details["next_attempt"] = u.NextAttempt.Format(time.RFC3339Nano)
			b.recordLater(ctx, ev)
			b.log.WarnContext(ctx, "lease revocation failed; retrying", "lease", l.ID, "attempts", u.Attempts, "next_attempt", u.NextAttempt, "err", u.LastError)
			return false
		}
	}
	u.Status, u.NextAttempt = to, time.Time{}
	if err := b.cfg.Store.UpdateLease(ctx, &u, from); err != nil {
		if errors.Is(err, ErrChanged) {
			return true // another revocation (the hook, the sweeper, a replica) got there first
		}
		b.log.ErrorContext(ctx, "lease revoked but not stored; the sweeper retries", "lease", l.ID, "err", err)
		return false
	}
	typ := TypeLeaseRevoked
	if to == LeaseExpired {
		typ = TypeLeaseExpired
	}
	ev := b.leaseEvent(typ, &u)
	ev.Reason = u.Reason
	if u.Attempts > 0 {
		ev.Details["failed_attempts"] = strconv.Itoa(u.Attempts)
	}
	b.recordLater(ctx, ev)
	return true
}

// revokeCredential asks l's backend to end its credential.
func (b *Broker) revokeCredential(ctx context.Context, l *Lease) error {
	return b.withConn(ctx, l, func(be Backend, conn []byte) error {
		cctx, cancel := context.WithTimeout(ctx, b.cfg.BackendTimeout)
		defer cancel()
		return be.Revoke(cctx, conn, l)
	})
}

// backoff is the wait after the n-th failed attempt: RetryMin doubled
// each time, at most RetryMax.
func (b *Broker) backoff(n int) time.Duration {
	d := b.cfg.RetryMin
	for i := 1; i < n && d < b.cfg.RetryMax; i++ {
		d *= 2
	}
	return min(d, b.cfg.RetryMax)
}

// Sweep acts on every lease due now (see Store.DueLeases): an expired
// one is revoked as expired, one whose task stopped as revoked, a failed
// one is tried again. It retries the events the ledger could not take
// and refreshes the lease gauges. It returns how many leases it ended.
func (b *Broker) Sweep(ctx context.Context) (int, error) {
	b.flushUnrecorded(ctx)
	now := b.now()
	due, err := b.cfg.Store.DueLeases(ctx, now, 0)
	if err != nil {
		return 0, fmt.Errorf("secrets: sweep: %w", err)
	}
	ended := 0
	for _, l := range due {
		to, reason := LeaseRevoked, "its task is no longer active"
		if !l.ExpiresAt.After(now) && (l.Status == LeaseActive || !l.ExpiresAt.After(l.EndedAt)) {
			to, reason = LeaseExpired, "it expired"
		}
		if b.revoke(ctx, l, to, reason) {
			ended++
		}
	}
	b.refreshGauges(ctx)
	return ended, nil
}

func (b *Broker) refreshGauges(ctx context.Context) {
	counts, err := b.cfg.Store.CountLeases(ctx)
	if err != nil {
		return
	}
	for _, s := range []LeaseStatus{LeaseActive, LeaseExpired, LeaseRevoked, LeaseFailed} {
		b.metrics.leases.WithLabelValues(string(s)).Set(float64(counts[s]))
	}
}

// Run sweeps every SweepEvery until ctx is done.
func (b *Broker) Run(ctx context.Context) error {
	t := time.NewTicker(b.cfg.SweepEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if _, err := b.Sweep(ctx); err != nil && ctx.Err() == nil {
				b.log.ErrorContext(ctx, "lease sweep failed", "err", err)
			}
		}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
