package sqlite_test

import (
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
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
	l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring()})
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

// TestMigrateLedgerHashesSize opens a ledger written at schema 4, whose
// ledger_hashes has a UNIQUE index on size: migration 0005 rebuilds the
// table without it, keeping every row, so that the old checkpoint still
// verifies and the ledger keeps growing.
func TestMigrateLedgerHashesSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		if err := l.Record(t.Context(), audit.Event{Type: audit.TypeActionDecided, RequestID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	old, err := l.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	// Back to schema 4: the same rows in the table as 0002 created it.
	raw := rawOpen(t, path)
	for _, q := range []string{
		// Before 0012 (people)...
		`DROP TABLE oauth_clients`,
		`DROP TABLE oauth_grants`,
		`DROP TABLE web_sessions`,
		`DROP TABLE humans`,
		// ...0011 (approval requests)...
		`DROP TABLE approval_requests`,
		// ...0010 (secrets)...
		`DROP TABLE secret_leases`,
		`DROP TABLE secrets`,
		// ...0009 (policy sources)...
		`DROP TABLE policy_sources`,
		`DROP TABLE policy_sources_version`,
		// ...0008 (entitlements)...
		`DROP TABLE agent_entitlements`,
		// ...0007 (taint)...
		`ALTER TABLE tasks DROP COLUMN taint`,
		`ALTER TABLE agents DROP COLUMN taint`,
		`ALTER TABLE agents DROP COLUMN taint_until`,
		`CREATE TABLE ledger_hashes_v4 (start INTEGER NOT NULL PRIMARY KEY, size INTEGER NOT NULL UNIQUE, hashes BLOB NOT NULL) STRICT`,
		`INSERT INTO ledger_hashes_v4 SELECT * FROM ledger_hashes`,
		`DROP TABLE ledger_hashes`,
		`ALTER TABLE ledger_hashes_v4 RENAME TO ledger_hashes`,
		// ...and before 0006 (sealed signing keys).
		`ALTER TABLE signing_keys DROP COLUMN public_jwk`,
		`ALTER TABLE signing_keys RENAME COLUMN sealed_key TO private_jwk`,
		`DELETE FROM schema_migrations WHERE version >= 5`,
	} {
		if _, err := raw.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%.40s: %v", q, err)
		}
	}
	raw.Close()

	db, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(schema 4 database) = %v", err)
	}
	defer db.Close()
	var indexes int
	if err := rawOpen(t, path).QueryRowContext(t.Context(), `SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND tbl_name = 'ledger_hashes'`).Scan(&indexes); err != nil || indexes != 0 {
		t.Errorf("ledger_hashes has %d indexes after migrating (%v), want 0", indexes, err)
	}
	l, err = audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Record(t.Context(), audit.Event{Type: audit.TypeActionDecided}); err != nil {
		t.Fatal(err)
	}
	if rep, err := l.Verify(t.Context()); err != nil || !rep.OK() || rep.TreeSize != 11 {
		t.Errorf("Verify() after migrating = %+v, %v, want OK with 11 events", rep, err)
	}
	if _, err := l.ProveConsistency(t.Context(), old.Size, 11); err != nil {
		t.Errorf("ProveConsistency(%d, 11) after migrating = %v", old.Size, err)
	}
}
