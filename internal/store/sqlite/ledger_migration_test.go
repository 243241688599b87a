package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// TestMigrateSchema1Events opens a database written before the ledger
// (schema 1, with events): its events are kept in events_v1, and the
// ledger starts empty and verifies.
func TestMigrateSchema1Events(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	init, err := os.ReadFile("migrations/0001_init.sql")
	if err != nil {
		t.Fatal(err)
	}
	raw := rawOpen(t, path)
	for _, q := range []string{
		`CREATE TABLE schema_migrations (version INTEGER NOT NULL PRIMARY KEY, name TEXT NOT NULL, applied_at INTEGER NOT NULL) STRICT`,
		string(init),
		`INSERT INTO schema_migrations VALUES (1, '0001_init.sql', 0)`,
		`INSERT INTO events (time, type, agent) VALUES (1, 'agent.registered', 'spiffe://example.org/agent/old')`,
	} {
		if _, err := raw.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	raw.Close()

	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(schema 1 database) = %v", err)
	}
	defer db.Close()
	var legacy int
	if err := rawOpen(t, path).QueryRowContext(t.Context(), `SELECT count(*) FROM events_v1 WHERE agent = 'spiffe://example.org/agent/old'`).Scan(&legacy); err != nil || legacy != 1 {
		t.Errorf("events_v1 holds %d legacy events (%v), want 1", legacy, err)
	}
	l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(t.Context(), audit.Event{Time: time.Now(), Type: audit.TypeAgentRegistered}); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(t.Context()); err != nil || !rep.OK() || rep.TreeSize != 1 {
		t.Errorf("Verify() after migrating = %+v, %v, want OK with one event", rep, err)
	}
}
