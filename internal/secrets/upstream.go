package secrets

import (
	"context"
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
