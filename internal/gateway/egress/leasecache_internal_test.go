package egress

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
)

// countingSecrets is the broker's narrow boundary for the cache: it
// leases name with a lease that ends at expires, and counts the asks.
type countingSecrets struct {
	asks    int
	changes uint64
	expires time.Time
	err     error
}

var _ Secrets = (*countingSecrets)(nil)

func (s *countingSecrets) LeaseForHost(_ context.Context, id task.ID, host string, names []secrets.Name) ([]secrets.Delivery, error) {
	s.asks++
	if s.err != nil {
		return nil, s.err
	}
	var ds []secrets.Delivery
	for _, n := range names {
		l := &secrets.Lease{ID: secrets.NewLeaseID(), Secret: n, Task: id, Kind: secrets.KindStatic, ExpiresAt: s.expires, Status: secrets.LeaseActive}
		ds = append(ds, secrets.Delivery{Lease: l, Target: secrets.Target{Host: host}, Value: secrets.NewValue([]byte("value-of-" + string(n)))})
	}
	return ds, nil
}

func (s *countingSecrets) Changes() uint64 { return s.changes }

func TestLeaseCacheReuseAndExpiry(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	src := &countingSecrets{expires: t0.Add(2 * time.Second)}
	var c leaseCache
	active := true
	get := func(at time.Duration, names ...secrets.Name) ([]secrets.Delivery, error) {
		return c.get(context.Background(), src, func() bool { return active }, "task_1", "api.example.com", names, t0.Add(at))
	}
	for _, step := range []struct {
		name     string
		at       time.Duration
		before   func()
		names    []secrets.Name
		wantAsks int
	}{
		{"first use leases", 0, nil, []secrets.Name{"a"}, 1},
		{"live lease reused", time.Second, nil, []secrets.Name{"a"}, 1},
		{"a name not cached asks for all", time.Second, nil, []secrets.Name{"a", "b"}, 2},
		{"both cached", time.Second, nil, []secrets.Name{"a", "b"}, 2},
		{"lease expired: asked again", 2 * time.Second, func() { src.expires = t0.Add(time.Hour) }, []secrets.Name{"a"}, 3},
		{"new lease reused", 3 * time.Second, nil, []secrets.Name{"a"}, 3},
		{"bounded by leaseCacheTTL", 2*time.Second + leaseCacheTTL, nil, []secrets.Name{"a"}, 4},
		{"the broker changed something", 2*time.Second + leaseCacheTTL, func() { src.changes++ }, []secrets.Name{"a"}, 5},
		{"task inactive: asked again", 2*time.Second + leaseCacheTTL, func() { active = false }, []secrets.Name{"a"}, 6},
	} {
		if step.before != nil {
			step.before()
		}
		ds, err := get(step.at, step.names...)
		if err != nil || len(ds) != len(step.names) || src.asks != step.wantAsks {
			t.Fatalf("%s: get = %d deliveries, %v after %d asks; want %d deliveries after %d asks", step.name, len(ds), err, src.asks, len(step.names), step.wantAsks)
		}
		for i, d := range ds {
			if d.Lease.Secret != step.names[i] || string(d.Value.Bytes()) != "value-of-"+string(step.names[i]) {
				t.Fatalf("%s: delivery %d = %s %q, want %s's", step.name, i, d.Lease.Secret, d.Value.Bytes(), step.names[i])
			}
		}
	}
	// A refusal is returned and forgets the task's entries.
	active, src.err = true, errors.New("refused")
	src.changes++
	if _, err := get(3*time.Second+leaseCacheTTL, "a"); err == nil {
		t.Fatal("get after a refusal = nil error")
	}
	src.err = nil
	if _, err := get(3*time.Second+leaseCacheTTL, "a"); err != nil || src.asks != 8 {
		t.Fatalf("after a refusal: %v after %d asks, want a new ask (8)", err, src.asks)
	}
}
