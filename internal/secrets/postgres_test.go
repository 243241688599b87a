package secrets_test

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/secrets/postgres"
)

// postgresURL returns MANDATE_TEST_POSTGRES_URL, skipping when it is
// unset and failing when it is set but the server does not answer: under
// CI the test must run.
func postgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("MANDATE_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("MANDATE_TEST_POSTGRES_URL is not set")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("MANDATE_TEST_POSTGRES_URL is set but the server does not answer: %v", err)
	}
	_ = c.Close(ctx)
	return u
}

// switchDialer dials normally until down is set, then refuses, as a
// database that went away does.
type switchDialer struct{ down atomic.Bool }

func (d *switchDialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	if d.down.Load() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: errors.New("connection refused (database taken away by the test)")}
	}
	var nd net.Dialer
	return nd.DialContext(ctx, network, addr)
}

type pgEnv struct {
	*env
	url    string
	dialer *switchDialer
}

func newPGEnv(t testing.TB) *pgEnv {
	t.Helper()
	u := postgresURL(t)
	d := &switchDialer{}
	e := newEnv(t, envOpts{backends: map[secrets.Kind]secrets.Backend{secrets.KindPostgres: postgres.New(postgres.Config{Dial: d.dial, ConnectTimeout: time.Second})}})
	if _, _, err := e.broker.Put(context.Background(), "admin:test", secrets.PutRequest{Name: "app-db", Kind: secrets.KindPostgres, Value: []byte(u),
		Postgres: &secrets.PostgresConfig{Grants: []string{"USAGE ON SCHEMA public", "SELECT ON ALL TABLES IN SCHEMA public"}},
		Deliver:  []secrets.Target{{Upstream: "db", Env: "DATABASE_URL"}}}); err != nil {
		t.Fatal(err)
	}
	return &pgEnv{env: e, url: u, dialer: d}
}

// roleExists asks the server as the admin.
func (e *pgEnv) roleExists(t testing.TB, role string) (exists bool, sessions int) {
	t.Helper()
	c, err := pgx.Connect(t.Context(), e.url)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	if err := c.QueryRow(t.Context(), `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1), (SELECT count(*) FROM pg_stat_activity WHERE usename = $1)`, role).Scan(&exists, &sessions); err != nil {
		t.Fatal(err)
	}
	return exists, sessions
}

// TestPostgresLease: the credential logs in while its task runs; within
// a second of the task's end it cannot log in and its open sessions are
// gone.
func TestPostgresLease(t *testing.T) {
	e := newPGEnv(t)
	ctx := admin.WithActor(t.Context(), "admin:test")
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "app-db")
	l, err := e.broker.Lease(ctx, tk.ID, "app-db", 0)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	ds, err := e.broker.ForUpstream(ctx, tk.ID, "db")
	if err != nil || len(ds) != 1 {
		t.Fatalf("ForUpstream(db) = %v, %v", ds, err)
	}
	cred := string(ds[0].Value.Bytes())
	session, err := pgx.Connect(ctx, cred)
	if err != nil {
		t.Fatalf("the leased credential does not log in: %v", err)
	}
	defer session.Close(context.Background())
	var who string
	if err := session.QueryRow(ctx, `SELECT current_user`).Scan(&who); err != nil || who != l.Handle {
		t.Errorf("logged in as %q (%v), want the lease's role %s", who, err, l.Handle)
	}
	// The password reached the server only as a SCRAM verifier, and the
	// role ends with the lease.
	admin, err := pgx.Connect(ctx, e.url)
	if err != nil {
		t.Fatal(err)
	}
	var verifier string
	var until time.Time
	if err := admin.QueryRow(ctx, `SELECT rolpassword, rolvaliduntil FROM pg_authid WHERE rolname = $1`, l.Handle).Scan(&verifier, &until); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close(ctx)
	if !strings.HasPrefix(verifier, "SCRAM-SHA-256$4096:") || until.Sub(l.ExpiresAt).Abs() > time.Millisecond {
		t.Errorf("role stored %q valid until %v; want a SCRAM verifier, until the lease's end %v", verifier[:20], until, l.ExpiresAt)
	}

	start := time.Now()
	if _, _, err := e.admin.EndTask(ctx, string(tk.ID), "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := pgx.Connect(ctx, cred); err == nil {
		t.Errorf("the credential still logs in after its task ended")
	}
	if err := session.Ping(ctx); err == nil {
		t.Errorf("the credential's open session survived its task's end")
	}
	exists, sessions := e.roleExists(t, l.Handle)
	if took := time.Since(start); took > time.Second || exists || sessions != 0 {
		t.Errorf("after the task's end (%v): role exists %v, %d sessions; want gone within 1s", took, exists, sessions)
	}
	if got := e.lease(t, l.ID); got.Status != secrets.LeaseRevoked {
		t.Errorf("lease = %s, want revoked", got.Status)
	}
	noValue(t, cred[strings.Index(cred, ":")+3:strings.Index(cred, "@")], e.rec.text(t))
}

// TestPostgresUnreachable: with the database away, a lease is denied
// with the reason, and a revocation fails, shows, and succeeds once the
// database is back.
func TestPostgresUnreachable(t *testing.T) {
	e := newPGEnv(t)
	ctx := admin.WithActor(t.Context(), "admin:test")
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "app-db")
	l, err := e.broker.Lease(ctx, tk.ID, "app-db", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.dialer.down.Store(true)
	if _, err := e.broker.Lease(ctx, tk.ID, "app-db", 0); !errors.Is(err, secrets.ErrBackend) || !strings.Contains(err.Error(), "connection refused") {
		t.Errorf("Lease(database away) = %v, want ErrBackend with the reason", err)
	}
	if _, _, err := e.admin.EndTask(ctx, string(tk.ID), "done"); err != nil {
		t.Fatal(err)
	}
	got := e.lease(t, l.ID)
	if got.Status != secrets.LeaseFailed || !strings.Contains(got.LastError, "connection refused") {
		t.Fatalf("lease with the database away = %s (%q), want failed with the reason", got.Status, got.LastError)
	}
	if exists, _ := e.roleExists(t, l.Handle); !exists {
		t.Fatalf("role %s gone although the revocation could not reach the database", l.Handle)
	}
	// Two: this one, and the one whose credential could not be made (it
	// cannot be known whether the role exists, so it is revoked too).
	if ls, _ := e.broker.Leases(ctx, secrets.LeaseFilter{Statuses: []secrets.LeaseStatus{secrets.LeaseFailed}}); len(ls) != 2 {
		t.Errorf("failed leases = %d, want 2", len(ls))
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseRevokeFailed)); n != 2 {
		t.Errorf("%d revoke_failed events, want 2", n)
	}
	e.dialer.down.Store(false)
	e.clock.Advance(time.Second)
	if n, err := e.broker.Sweep(ctx); err != nil || n != 2 {
		t.Errorf("Sweep(database back) = %d, %v; want the lease revoked", n, err)
	}
	if got := e.lease(t, l.ID); got.Status != secrets.LeaseRevoked || got.Attempts != 1 {
		t.Errorf("lease after the database came back = %+v, want revoked (1 failed attempt kept)", got)
	}
	if exists, _ := e.roleExists(t, l.Handle); exists {
		t.Errorf("role %s still exists after the retried revocation", l.Handle)
	}
}
