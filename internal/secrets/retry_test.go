package secrets_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/secrets"
)

// flakyBackend is a dynamic backend at the narrowest boundary: it keeps
// credentials in a map and fails revocations while down is set. The real
// PostgreSQL backend has its own tests against the server.
type flakyBackend struct {
	mu    sync.Mutex
	down  bool
	live  map[string]bool
	calls int
}

var _ secrets.Backend = (*flakyBackend)(nil)

var errDown = errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")

func (f *flakyBackend) CheckValue([]byte) error { return nil }
func (f *flakyBackend) Prepare(_ *secrets.Secret, _ []byte, l *secrets.Lease) (string, []byte, error) {
	return "role_" + string(l.ID[4:]), []byte("postgres://role:pw-" + string(l.ID) + "@db/app"), nil
}
func (f *flakyBackend) Create(_ context.Context, _ *secrets.Secret, _ []byte, l *secrets.Lease, _ []byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return errDown
	}
	f.live[l.Handle] = true
	return nil
}
func (f *flakyBackend) Extend(context.Context, []byte, *secrets.Lease) error { return nil }
func (f *flakyBackend) Revoke(_ context.Context, _ []byte, l *secrets.Lease) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls++
	if f.down {
		return errDown
	}
	delete(f.live, l.Handle)
	return nil
}
func (f *flakyBackend) isLive(h string) bool { f.mu.Lock(); defer f.mu.Unlock(); return f.live[h] }
func (f *flakyBackend) setDown(d bool)       { f.mu.Lock(); defer f.mu.Unlock(); f.down = d }

// TestRevocationRetried: a revocation the backend cannot do is marked
// failed, shown (status, attempts, last error, metrics, ledger), retried
// with backoff by the sweeper, and succeeds once the backend is back.
func TestRevocationRetried(t *testing.T) {
	t.Parallel()
	fb := &flakyBackend{live: map[string]bool{}}
	e := newEnv(t, envOpts{backends: map[secrets.Kind]secrets.Backend{secrets.KindPostgres: fb}})
	ctx := admin.WithActor(t.Context(), "admin:test")
	if _, _, err := e.broker.Put(ctx, "admin:test", secrets.PutRequest{Name: "app-db", Kind: secrets.KindPostgres, Value: []byte("postgres://admin:pw@db/app"),
		Postgres: &secrets.PostgresConfig{MemberOf: []string{"readers"}}, Deliver: []secrets.Target{{Upstream: "db", Env: "DATABASE_URL"}}}); err != nil {
		t.Fatal(err)
	}
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "app-db")
	l, err := e.broker.Lease(ctx, tk.ID, "app-db", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !fb.isLive(l.Handle) {
		t.Fatalf("no credential made for %s", l.Handle)
	}
	ds, err := e.broker.ForUpstream(ctx, tk.ID, "db")
	if err != nil || len(ds) != 1 || string(ds[0].Value.Bytes()) != "postgres://role:pw-"+string(l.ID)+"@db/app" {
		t.Fatalf("ForUpstream(db) = %+v, %v; want the lease's own credential", ds, err)
	}

	fb.setDown(true)
	if _, _, err := e.admin.EndTask(ctx, string(tk.ID), "done"); err != nil {
		t.Fatal(err)
	}
	got := e.lease(t, l.ID)
	if got.Status != secrets.LeaseFailed || got.Attempts != 1 || got.LastError == "" || !got.NextAttempt.After(got.EndedAt) {
		t.Fatalf("lease after a failed revocation = %+v, want failed with the attempt shown", got)
	}
	failed, _ := e.broker.Leases(ctx, secrets.LeaseFilter{Statuses: []secrets.LeaseStatus{secrets.LeaseFailed}})
	if len(failed) != 1 {
		t.Errorf("failed leases = %d, want 1", len(failed))
	}
	if _, err := e.broker.Sweep(ctx); err != nil {
		t.Fatal(err)
	}
	gauges := func(active, failed, revoked int) string {
		return fmt.Sprintf(`# HELP mandate_secret_leases Secret leases by status (active, expired, revoked, failed: a revocation being retried), as of the last sweep.
# TYPE mandate_secret_leases gauge
mandate_secret_leases{status="active"} %d
mandate_secret_leases{status="expired"} 0
mandate_secret_leases{status="failed"} %d
mandate_secret_leases{status="revoked"} %d
`, active, failed, revoked)
	}
	if err := testutil.CollectAndCompare(e.broker.Collectors()[0], strings.NewReader(gauges(0, 1, 0))); err != nil {
		t.Errorf("gauges after a failed revocation: %v", err)
	}
	// Before its next attempt, the sweeper leaves it.
	calls := fb.calls
	if n, _ := e.broker.Sweep(ctx); n != 0 || fb.calls != calls {
		t.Errorf("Sweep before the next attempt: %d ended, %d revoke calls; want none", n, fb.calls-calls)
	}
	// Still down at the next attempt: the backoff doubles.
	e.clock.Advance(time.Second)
	_, _ = e.broker.Sweep(ctx)
	got = e.lease(t, l.ID)
	if got.Attempts != 2 || got.NextAttempt.Sub(e.clock.Now()) != 2*time.Second {
		t.Errorf("after a second failure: attempts %d, next in %v; want 2, 2s", got.Attempts, got.NextAttempt.Sub(e.clock.Now()))
	}
	// Back: the next sweep revokes it.
	fb.setDown(false)
	e.clock.Advance(2 * time.Second)
	if n, err := e.broker.Sweep(ctx); err != nil || n != 1 {
		t.Errorf("Sweep after the backend is back = %d, %v; want 1", n, err)
	}
	got = e.lease(t, l.ID)
	if got.Status != secrets.LeaseRevoked || fb.isLive(l.Handle) || got.Attempts != 2 {
		t.Errorf("lease after recovery = %+v (credential live: %v); want revoked, failures kept", got, fb.isLive(l.Handle))
	}
	if v, _ := e.backend.LeaseValue(ctx, l.ID); v != nil {
		t.Errorf("a revoked lease keeps its sealed credential")
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseRevokeFailed)); n != 2 {
		t.Errorf("%d revoke_failed events, want 2", n)
	}
	if evs := e.rec.ofType(secrets.TypeLeaseRevoked); len(evs) != 1 || evs[0].Details["failed_attempts"] != "2" {
		t.Errorf("revoked events = %+v, want one noting 2 failed attempts", evs)
	}
	if err := testutil.CollectAndCompare(e.broker.Collectors()[0], strings.NewReader(gauges(0, 0, 1))); err != nil {
		t.Errorf("gauges after recovery: %v", err)
	}
	noValue(t, "pw-"+string(l.ID), e.rec.text(t))
	noValue(t, "admin:pw", e.rec.text(t))
}

// TestIssueBackendDown: a dynamic lease the backend cannot make is denied
// with the reason, and no credential or active lease is left.
func TestIssueBackendDown(t *testing.T) {
	t.Parallel()
	fb := &flakyBackend{live: map[string]bool{}, down: true}
	e := newEnv(t, envOpts{backends: map[secrets.Kind]secrets.Backend{secrets.KindPostgres: fb}})
	ctx := t.Context()
	if _, _, err := e.broker.Put(ctx, "admin:test", secrets.PutRequest{Name: "app-db", Kind: secrets.KindPostgres, Value: []byte("postgres://admin:pw@db/app"),
		Postgres: &secrets.PostgresConfig{MemberOf: []string{"readers"}}}); err != nil {
		t.Fatal(err)
	}
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "app-db")
	if _, err := e.broker.Lease(ctx, tk.ID, "app-db", 0); !errors.Is(err, secrets.ErrBackend) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Lease(backend down) = %v, want ErrBackend", err)
	}
	ls, _ := e.broker.Leases(ctx, secrets.LeaseFilter{Task: tk.ID, Statuses: []secrets.LeaseStatus{secrets.LeaseActive}})
	if len(ls) != 0 {
		t.Errorf("%d active leases after a failed issue, want 0", len(ls))
	}
}
