package secrets

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/task"
)

// renewBefore is how close to its end a lease is no longer reused for a
// new upstream connection: one that would end moments after it opens.
const renewBefore = 5 * time.Second

// LeaseForUpstream leases to task taskID every secret delivered to MCP
// upstream — reusing the task's active lease of a secret, else asking
// for a new one (a secret.use decision each: Lease) — and returns what
// they deliver there, one Delivery per target, the latest lease of each.
// A secret that cannot be leased fails the whole: an upstream is not
// started with part of its credentials (the error is Lease's, a
// *DecisionError for a refusal).
func (b *Broker) LeaseForUpstream(ctx context.Context, taskID task.ID, upstream string) ([]Delivery, error) {
	all, err := b.cfg.Store.ListSecrets(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range all {
		if !deliversTo(s, upstream) {
			continue
		}
		if l, err := b.activeLease(ctx, taskID, s.Name); err != nil {
			return nil, err
		} else if l != nil {
			continue
		}
		if _, err := b.Lease(ctx, taskID, string(s.Name), 0); err != nil {
			return nil, err
		}
	}
	ds, err := b.ForUpstream(ctx, taskID, upstream)
	if err != nil {
		return nil, err
	}
	// The newest lease of each target wins (ListLeases is newest first).
	seen := map[Target]bool{}
	out := ds[:0]
	for _, d := range ds {
		if !seen[d.Target] {
			seen[d.Target] = true
			out = append(out, d)
		}
	}
	return out, nil
}

func deliversTo(s *Secret, upstream string) bool {
	for _, t := range s.Deliver {
		if t.Upstream == upstream && t.Host == "" {
			return true
		}
	}
	return false
}

// LeaseForHost leases to task taskID each secret of names for a request
// to host through the egress proxy (host as the proxy decides it: the
// canonical host, with its port unless it is the scheme's) — reusing the
// task's active lease of a secret, else asking for a new one (a
// secret.use decision each: Lease) — and returns one Delivery per secret,
// its latest lease's. Every secret must deliver to host ("egress:HOST"),
// checked for all before anything is leased: one that does not (or does
// not exist) fails the whole with ErrNotDeliverable, so that a value is
// never leased for a request that names it to another host.
func (b *Broker) LeaseForHost(ctx context.Context, taskID task.ID, host string, names []Name) ([]Delivery, error) {
	if len(names) == 0 {
		return nil, nil
	}
	want := map[Name]bool{}
	for _, n := range names {
		s, _, err := b.cfg.Store.GetSecret(ctx, n)
		if errors.Is(err, ErrNotFound) || err == nil && !deliversToHost(s, host) {
			return nil, fmt.Errorf("%w: secret %s is not delivered to %s", ErrNotDeliverable, n, host)
		}
		if err != nil {
			return nil, err
		}
		want[n] = true
	}
	now := b.now()
	for n := range want {
		active, err := b.cfg.Store.ListLeases(ctx, LeaseFilter{Task: taskID, Secret: n, Statuses: []LeaseStatus{LeaseActive}, Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(active) == 1 && active[0].ExpiresAt.After(now.Add(renewBefore)) {
			continue
		}
		if _, err := b.Lease(ctx, taskID, string(n), 0); err != nil {
			return nil, err
		}
	}
	ds, err := b.ForHost(ctx, taskID, host)
	if err != nil {
		return nil, err
	}
	// The newest lease of each secret wins (ListLeases is newest first).
	out := ds[:0]
	for _, d := range ds {
		if want[d.Lease.Secret] {
			delete(want, d.Lease.Secret)
			out = append(out, d)
		}
	}
	return out, nil
}

func deliversToHost(s *Secret, host string) bool {
	for _, t := range s.Deliver {
		if t.Host != "" && t.Host == host {
			return true
		}
	}
	return false
}
