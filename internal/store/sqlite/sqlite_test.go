package sqlite_test

import (
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/store/storetest"
)

// openTemp opens a fresh database in a temporary directory.
func openTemp(t testing.TB, opts ...sqlite.Option) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "mandate.db"), opts...)
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close() = %v", err)
		}
	})
	return db
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend { return openTemp(t) })
}

func TestContractSynchronousFull(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the contract suite a second time")
	}
	storetest.Run(t, func(t *testing.T) store.Backend { return openTemp(t, sqlite.WithSynchronousFull()) })
}

// rawOpen opens path with the driver directly, bypassing migrations.
func rawOpen(t *testing.T, path string) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

type migrationRow struct {
	Version   int
	Name      string
	AppliedAt int64
}

func migrationRows(t *testing.T, path string) []migrationRow {
	t.Helper()
	rows, err := rawOpen(t, path).QueryContext(t.Context(), `SELECT version, name, applied_at FROM schema_migrations ORDER BY version`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []migrationRow
	for rows.Next() {
		var r migrationRow
		if err := rows.Scan(&r.Version, &r.Name, &r.AppliedAt); err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func testAgent(name string) *identity.Agent {
	return &identity.Agent{
		ID:         identity.MustParseID("spiffe://example.org/agent/" + name),
		Owner:      "alice@example.org",
		Escalation: "oncall@example.org",
		Tier:       identity.TierAssist,
		Status:     identity.StatusActive,
		Federations: []identity.Federation{
			{Issuer: "https://issuer.example", Subject: name},
		},
		CreatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		UpdatedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
	}
}

var idComparer = cmp.Comparer(func(a, b identity.ID) bool { return a == b })

func TestReopenKeepsDataAndMigrations(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	a := testAgent("keeper")
	if err := db.CreateAgent(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	before := migrationRows(t, path)
	if len(before) != sqlite.SchemaVersion() {
		t.Fatalf("after the first Open, schema_migrations has %d rows, want %d", len(before), sqlite.SchemaVersion())
	}

	db, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("reopening: Open() = %v", err)
	}
	defer db.Close()
	got, err := db.GetAgent(t.Context(), a.ID)
	if err != nil {
		t.Fatalf("GetAgent after reopening = %v", err)
	}
	if diff := cmp.Diff(a, got, idComparer); diff != "" {
		t.Errorf("GetAgent after reopening mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(before, migrationRows(t, path)); diff != "" {
		t.Errorf("reopening changed schema_migrations (migrations re-run?) (-before +after):\n%s", diff)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	future := sqlite.SchemaVersion() + 1
	if _, err := rawOpen(t, path).ExecContext(t.Context(), `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, 'from_the_future.sql', 0)`, future); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(t.Context(), path)
	if err == nil {
		db.Close()
		t.Fatalf("Open(database at schema version %d) = nil error, want ErrSchemaTooNew", future)
	}
	if !errors.Is(err, sqlite.ErrSchemaTooNew) {
		t.Errorf("Open(database at schema version %d) = %v, want ErrSchemaTooNew", future, err)
	}
}

func TestTimesRoundTripExactly(t *testing.T) {
	db := openTemp(t)
	zone := time.FixedZone("odd", -(3*3600 + 17*60))
	in := time.Date(2026, 7, 8, 9, 10, 11, 987654321, zone)
	a := testAgent("clock")
	a.CreatedAt, a.UpdatedAt = in, in.Add(time.Nanosecond)
	if err := db.CreateAgent(t.Context(), a); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetAgent(t.Context(), a.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name      string
		got, want time.Time
	}{
		{"CreatedAt", got.CreatedAt, a.CreatedAt},
		{"UpdatedAt", got.UpdatedAt, a.UpdatedAt},
	} {
		// == (not Equal): same instant, UTC location, no monotonic reading.
		if c.got != c.want.UTC() {
			t.Errorf("%s = %v, want exactly %v", c.name, c.got, c.want.UTC())
		}
	}

	// The ledger keeps event times to the microsecond (what every backend
	// stores), so that leaf hashes do not depend on the backend.
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	if err := led.Record(t.Context(), audit.Event{Time: in, Type: audit.TypeAgentRegistered}); err != nil {
		t.Fatal(err)
	}
	inUS := in.UTC().Truncate(time.Microsecond)
	evs, err := db.ListEvents(t.Context(), audit.Query{Since: inUS, Until: inUS.Add(time.Microsecond)})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Time != inUS {
		t.Errorf("ListEvents([in, in+1µs)) = %v, want the one event at %v", evs, inUS)
	}

	// Times beyond what unix nanoseconds can hold are refused, not wrapped.
	far := testAgent("far")
	far.CreatedAt = time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := db.CreateAgent(t.Context(), far); !errors.Is(err, identity.ErrInvalid) {
		t.Errorf("CreateAgent(created in year 3000) = %v, want ErrInvalid", err)
	}
}

func TestOpenCreatesPrivateFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	path := filepath.Join(dir, "mandate.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.CreateAgent(t.Context(), testAgent("perm")); err != nil {
		t.Fatal(err)
	}
	if db.Path() != path {
		t.Errorf("Path() = %q, want %q", db.Path(), path)
	}
	for _, c := range []struct {
		path string
		want os.FileMode
	}{
		{dir, 0o700 | os.ModeDir},
		{path, 0o600},
		{path + "-wal", 0o600},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Errorf("Stat(%s) = %v", c.path, err)
			continue
		}
		if fi.Mode() != c.want {
			t.Errorf("mode of %s = %v, want %v", c.path, fi.Mode(), c.want)
		}
	}
	var mode string
	if err := rawOpen(t, path).QueryRowContext(t.Context(), `PRAGMA journal_mode`).Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("journal_mode = %q, want wal", mode)
	}
}

func TestOpenRefused(t *testing.T) {
	notDir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notDir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path string
	}{
		{"empty", ""},
		{"in-memory", ":memory:"},
		{"URI", "file:x.db?mode=memory"},
		{"parent is a file", filepath.Join(notDir, "mandate.db")},
		{"path is a directory", t.TempDir()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			db, err := sqlite.Open(t.Context(), tc.path)
			if err == nil {
				db.Close()
				t.Fatalf("Open(%q) = nil error, want an error", tc.path)
			}
		})
	}
}

func TestPing(t *testing.T) {
	db := openTemp(t)
	if err := db.Ping(t.Context()); err != nil {
		t.Errorf("Ping() = %v", err)
	}
}
