package egress

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
)

// Lease cache limits.
const (
	// leaseCacheTTL bounds how long a delivery is reused without asking
	// the broker again: the staleness allowed for a change the broker of
	// this process did not make (another replica's, on the same store).
	leaseCacheTTL = 5 * time.Second
	// maxCachedLeases bounds the cache; past it, it starts over.
	maxCachedLeases = 4096
)

// leaseCache keeps the deliveries of a task's leases per host and
// secret, so that a request naming a secret reuses its live lease
// without the broker's store lookups. An entry is used only while the
// broker's Changes counter has not moved since it was filled (a put,
// rotate, remove, or the end of any lease makes every entry stale),
// while its lease has not expired, for at most leaseCacheTTL, and while
// the task and its agents are active (the pipeline's live revocation
// state, checked on every use). The values it holds are the ones the
// proxy also keeps to scrub the task's responses.
type leaseCache struct {
	mu sync.Mutex
	m  map[leaseKey]cachedDelivery
}

type leaseKey struct {
	task task.ID
	host string
	name secrets.Name
}

type cachedDelivery struct {
	lease   *secrets.Lease
	value   []byte
	changes uint64    // the broker's Changes when the entry was filled
	until   time.Time // the lease's expiry or the fill time + leaseCacheTTL, whichever is first
}

// get returns one delivery per name for task's requests to host: from
// the cache if every name has a usable entry, else from src (whose
// answers then fill the cache). active is the pipeline's live check of
// the task and its agents.
func (c *leaseCache) get(ctx context.Context, src Secrets, active func() bool, taskID task.ID, host string, names []secrets.Name, now time.Time) ([]secrets.Delivery, error) {
	changes := src.Changes()
	if ds, ok := c.lookup(taskID, host, names, changes, now); ok && active() {
		return ds, nil
	}
	// Read before the broker is asked: a change made while it answers
	// leaves what it returned stale at once.
	ds, err := src.LeaseForHost(ctx, taskID, host, names)
	if err != nil {
		c.drop(taskID)
		return nil, err
	}
	c.fill(taskID, host, ds, changes, now)
	return ds, nil
}

func (c *leaseCache) lookup(taskID task.ID, host string, names []secrets.Name, changes uint64, now time.Time) ([]secrets.Delivery, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ds := make([]secrets.Delivery, 0, len(names))
	for _, n := range names {
		e, ok := c.m[leaseKey{taskID, host, n}]
		if !ok || e.changes != changes || !now.Before(e.until) {
			return nil, false
		}
		ds = append(ds, secrets.Delivery{Lease: e.lease, Target: secrets.Target{Host: host}, Value: secrets.NewValue(e.value)})
	}
	return ds, true
}

func (c *leaseCache) fill(taskID task.ID, host string, ds []secrets.Delivery, changes uint64, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m)+len(ds) > maxCachedLeases {
		c.m = make(map[leaseKey]cachedDelivery)
	}
	for _, d := range ds {
		until := now.Add(leaseCacheTTL)
		if d.Lease.ExpiresAt.Before(until) {
			until = d.Lease.ExpiresAt
		}
		c.m[leaseKey{taskID, host, d.Lease.Secret}] = cachedDelivery{lease: d.Lease, value: bytes.Clone(d.Value.Bytes()), changes: changes, until: until}
	}
}

// drop forgets the entries of a task (its lease was refused, say).
func (c *leaseCache) drop(taskID task.ID) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.m {
		if k.task == taskID {
			delete(c.m, k)
		}
	}
}
