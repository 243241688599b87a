package secrets_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/secrets"
)

// reportPercentiles reports the p50 and p99 of ds in milliseconds.
func reportPercentiles(b *testing.B, ds []time.Duration) {
	if len(ds) == 0 {
		return
	}
	slices.Sort(ds)
	at := func(p float64) float64 { return float64(ds[int(float64(len(ds)-1)*p)]) / 1e6 }
	b.ReportMetric(at(0.50), "p50-ms")
	b.ReportMetric(at(0.99), "p99-ms")
}

// BenchmarkStaticLease is what a static secret adds to the call that
// needs it: the secret.use decision (durably recorded), the lease stored
// and recorded, and the value opened for delivery — SQLite and the real
// ledger underneath.
func BenchmarkStaticLease(b *testing.B) {
	e := newEnv(b, envOpts{})
	ctx := context.Background()
	e.put(b, "github-token", ghValue)
	tk := e.startTask(b, "builder", identity.TierSupervised, "1h", "github-token")
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		if _, err := e.broker.Lease(ctx, tk.ID, "github-token", time.Minute); err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
	}
	b.StopTimer()
	reportPercentiles(b, ds)
	if d, err := e.broker.ForUpstream(ctx, tk.ID, "github"); err != nil || len(d) == 0 {
		b.Fatal(err)
	}
}

// BenchmarkPostgresRoleCreate measures a dynamic lease end to end (decision,
// lease stored and recorded, CREATE ROLE with its grants over a fresh
// connection) against the server at MANDATE_TEST_POSTGRES_URL; each role
// is revoked outside the timing.
func BenchmarkPostgresRoleCreate(b *testing.B) {
	e := newPGEnv(b)
	ctx := context.Background()
	tk := e.startTask(b, "builder", identity.TierSupervised, "1h", "app-db")
	ds := make([]time.Duration, 0, b.N)
	for b.Loop() {
		start := time.Now()
		l, err := e.broker.Lease(ctx, tk.ID, "app-db", time.Minute)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, time.Since(start))
		b.StopTimer()
		if _, _, err := e.broker.RevokeTask(ctx, l.Task, "bench"); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	reportPercentiles(b, ds)
	if ls, _ := e.broker.Leases(ctx, secrets.LeaseFilter{Task: tk.ID, Statuses: []secrets.LeaseStatus{secrets.LeaseActive, secrets.LeaseFailed}}); len(ls) != 0 {
		b.Fatalf("%d leases left unrevoked", len(ls))
	}
}
