package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// TestLostStore deletes or replaces the database file (or its ledger
// journal) under an open DB: the next check marks it lost, and from then
// on every write, every ledger append, every read and Ping refuse with
// ErrLost, in the class fault.ErrUnavailable.
func TestLostStore(t *testing.T) {
	cases := []struct {
		name string
		lose func(t *testing.T, path string)
		want string
	}{
		{"database deleted", func(t *testing.T, path string) {
			for _, p := range []string{path, path + "-wal", path + "-shm"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}, "was deleted"},
		{"database replaced", func(t *testing.T, path string) {
			other := filepath.Join(t.TempDir(), "other.db")
			odb, err := sqlite.Open(t.Context(), other, sqlite.WithIdentityCheck(-1))
			if err != nil {
				t.Fatal(err)
			}
			if err := odb.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}, "was replaced by another file"},
		{"journal deleted", func(t *testing.T, path string) {
			if err := os.Remove(path + "-ledger"); err != nil {
				t.Fatal(err)
			}
		}, "ledger journal"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mandate.db")
			// No watcher: the test runs the check itself.
			db, err := sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			ctx := t.Context()
			if err := db.CreateAgent(ctx, testAgent("before")); err != nil {
				t.Fatal(err)
			}
			if err := db.Lost(); err != nil {
				t.Fatalf("Lost() before = %v, want nil", err)
			}
			tc.lose(t, path)
			err = sqlite.CheckFiles(db)
			if !errors.Is(err, sqlite.ErrLost) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("CheckFiles() = %v, want ErrLost saying %q", err, tc.want)
			}
			calls := map[string]error{
				"Lost":        db.Lost(),
				"Ping":        db.Ping(ctx),
				"CreateAgent": db.CreateAgent(ctx, testAgent("after")),
				"UseOnce":     db.UseOnce(ctx, "jti", "x", time.Now().Add(time.Hour)),
				"AppendLedger": db.AppendLedger(ctx, &audit.Batch{Size: 1, HashStart: 0,
					Records: []audit.Record{{Seq: 1, Time: time.Now(), Type: "x", Data: []byte("{}")}}, Hashes: make([]tlog.Hash, 1)}),
			}
			_, calls["GetAgent"] = db.GetAgent(ctx, identity.MustParseID("spiffe://example.org/agent/before"))
			_, calls["ListAgents"] = db.ListAgents(ctx, identity.Filter{})
			_, calls["GetPin"] = db.GetPin(ctx, "fs", "read")
			_, calls["ListPins"] = db.ListPins(ctx)
			calls["PutPin"] = db.PutPin(ctx, &toolpin.Pin{Upstream: "fs", Tool: "read", Digest: "sha256-v2:1", Definition: []byte(`{}`)})
			for name, err := range calls {
				if !errors.Is(err, fault.ErrUnavailable) {
					t.Errorf("%s() after loss = %v, want an error in fault.ErrUnavailable", name, err)
				}
			}
			for _, name := range []string{"Lost", "Ping", "CreateAgent", "AppendLedger", "GetAgent", "GetPin", "PutPin"} {
				if !errors.Is(calls[name], sqlite.ErrLost) {
					t.Errorf("%s() after loss = %v, want ErrLost", name, calls[name])
				}
			}
		})
	}
}

// TestWatcherNoticesLoss leaves the check to the DB's own watcher.
func TestWatcherNoticesLoss(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for db.Lost() == nil {
		select {
		case <-ctx.Done():
			t.Fatal("the watcher did not notice the deleted database file")
		case <-time.After(5 * time.Millisecond):
		}
	}
	if err := db.CreateAgent(t.Context(), testAgent("after")); !errors.Is(err, sqlite.ErrLost) {
		t.Fatalf("CreateAgent() = %v, want ErrLost", err)
	}
}

// TestUnavailableErrors makes SQLite itself fail the way a full disk and
// a read-only database do: the errors are in fault.ErrUnavailable, and
// the store is not lost.
func TestUnavailableErrors(t *testing.T) {
	cases := []struct {
		name, pragma string
	}{
		{"full", "max_page_count = 1"},
		{"read-only", "query_only = 1"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db := openTemp(t)
			ctx := t.Context()
			// max_page_count = 1 is below the file's size, so SQLite caps
			// it there: the next write that needs a page fails.
			if err := sqlite.WriterPragma(ctx, db, tc.pragma); err != nil {
				t.Fatal(err)
			}
			var err error
			for i := range 200 {
				if err = db.CreateAgent(ctx, testAgent(fmt.Sprintf("agent-%03d", i))); err != nil {
					break
				}
			}
			if !errors.Is(err, fault.ErrUnavailable) {
				t.Fatalf("CreateAgent() = %v, want an error in fault.ErrUnavailable", err)
			}
			if errors.Is(err, sqlite.ErrLost) || db.Lost() != nil {
				t.Fatalf("CreateAgent() = %v, Lost() = %v: a full or read-only store is not lost", err, db.Lost())
			}
		})
	}
}

// TestOnLost: the WithOnLost function is called once, with the reason
// Lost returns, however many checks see the loss.
func TestOnLost(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	var reasons []error
	db, err := sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1),
		sqlite.WithOnLost(func(reason error) { reasons = append(reasons, reason) }))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := sqlite.CheckFiles(db); err != nil || len(reasons) != 0 {
		t.Fatalf("CheckFiles() before the loss = %v, OnLost called %d times; want nil and none", err, len(reasons))
	}
	if err := os.Remove(path + "-ledger"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = sqlite.CheckFiles(db)
		_ = db.Ping(t.Context())
	}
	if len(reasons) != 1 || !errors.Is(reasons[0], sqlite.ErrLost) || reasons[0].Error() != db.Lost().Error() {
		t.Fatalf("OnLost reasons = %v, want exactly one: Lost() = %v", reasons, db.Lost())
	}
}

// TestMissingDatabaseRefused: a database file deleted on its own, with
// its -wal or ledger journal left beside it, is not silently re-created
// (which would replay the old journal or log into a new store): Open
// refuses with ErrMissingDatabase and creates nothing. A database deleted
// with all of its files is a new store.
func TestMissingDatabaseRefused(t *testing.T) {
	for _, tc := range []struct {
		name   string
		remove []string // suffixes of the files deleted after a clean close
		want   error
	}{
		{"database only", []string{""}, sqlite.ErrMissingDatabase},
		{"database and journal, -wal left", []string{"", "-ledger"}, sqlite.ErrMissingDatabase},
		{"database and -wal, journal left", []string{"", "-wal"}, sqlite.ErrMissingDatabase},
		{"every file", []string{"", "-wal", "-shm", "-ledger"}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mandate.db")
			db, err := sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.CreateAgent(t.Context(), testAgent("before")); err != nil {
				t.Fatal(err)
			}
			// A -wal as a crash leaves it: a copy of the live one.
			wal, err := os.ReadFile(path + "-wal")
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path+"-wal", wal, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, suffix := range tc.remove {
				if err := os.Remove(path + suffix); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
			db, err = sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1))
			if err == nil {
				defer db.Close()
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("Open() = %v, want %v", err, tc.want)
			}
			if tc.want != nil {
				if _, serr := os.Stat(path); !errors.Is(serr, os.ErrNotExist) {
					t.Errorf("Open() refused but left a database file behind: %v", serr)
				}
				if !strings.Contains(err.Error(), "docs/operations.md") {
					t.Errorf("Open() = %v, want it to point at docs/operations.md", err)
				}
			}
		})
	}
}

// BenchmarkCheckFiles measures one identity check of an open DB's files,
// which the watcher runs every DefaultIdentityCheck.
func BenchmarkCheckFiles(b *testing.B) {
	path := filepath.Join(b.TempDir(), "mandate.db")
	db, err := sqlite.Open(b.Context(), path, sqlite.WithIdentityCheck(-1))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	b.ReportAllocs()
	for b.Loop() {
		if err := sqlite.CheckFiles(db); err != nil {
			b.Fatal(err)
		}
	}
}

// TestWALBinding: a -wal a crash left is replayed into the database file
// that wrote it, but refused (ErrWALMismatch) beside another one — an
// older backup of the same store copied over it — before SQLite reads it.
func TestWALBinding(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mandate.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAgent(t.Context(), testAgent("old")); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	backup, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.CreateAgent(t.Context(), testAgent("new")); err != nil {
		t.Fatal(err)
	}
	// What a crash leaves: the files as they are while the DB is open.
	crash := map[string][]byte{}
	for _, suffix := range []string{"", "-wal", "-ledger"} {
		if crash[suffix], err = os.ReadFile(path + suffix); err != nil {
			t.Fatal(err)
		}
	}
	if len(crash["-wal"]) <= 32 {
		t.Fatalf("the open DB's -wal holds %d bytes, want frames", len(crash["-wal"]))
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		database []byte
		want     error
	}{
		{"its own database", crash[""], nil},
		{"an older backup copied over", backup, sqlite.ErrWALMismatch},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "mandate.db")
			for suffix, b := range map[string][]byte{"": tc.database, "-wal": crash["-wal"], "-ledger": crash["-ledger"]} {
				if err := os.WriteFile(p+suffix, b, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			db, err := sqlite.Open(t.Context(), p, sqlite.WithIdentityCheck(-1))
			if !errors.Is(err, tc.want) {
				if err == nil {
					db.Close()
				}
				t.Fatalf("Open() = %v, want %v", err, tc.want)
			}
			if err != nil {
				if got, _ := os.ReadFile(p); !bytes.Equal(got, tc.database) {
					t.Error("Open() refused, but changed the database file")
				}
				return
			}
			defer db.Close()
			if _, err := db.GetAgent(t.Context(), identity.MustParseID("spiffe://example.org/agent/new")); err != nil {
				t.Errorf("GetAgent(new) after the crash = %v, want the agent the -wal held", err)
			}
		})
	}
}

// TestWALBindingBusy: when another process's reader keeps the open from
// folding the -wal into the database file, the journal is left unbound,
// so that the database's own -wal is never refused after a crash, however
// the background checkpoint has folded the new number in since.
func TestWALBindingBusy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	raw := rawOpen(t, path)
	if _, err := raw.Exec(`PRAGMA journal_mode=WAL`); err != nil {
		t.Fatal(err)
	}
	conn, err := raw.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A write by the reader's connection, so that the -wal holds a frame
	// its snapshot needs, then the read transaction that holds it.
	if _, err := conn.ExecContext(t.Context(), `PRAGMA user_version = 7`); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(t.Context(), `BEGIN`); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := conn.QueryRowContext(t.Context(), `SELECT count(*) FROM agents`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(t.Context(), path, sqlite.WithIdentityCheck(-1), sqlite.WithBusyTimeout(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	_, _ = conn.ExecContext(t.Context(), `COMMIT`)
	conn.Close()
	if err := db.CreateAgent(t.Context(), testAgent("new")); err != nil {
		t.Fatal(err)
	}
	journal, err := os.ReadFile(path + "-ledger")
	if err != nil {
		t.Fatal(err)
	}
	if len(journal) >= bindingFrameSize && journal[8] == 2 {
		t.Fatalf("journal begins with a binding frame %x although the -wal could not be folded in", journal[:bindingFrameSize])
	}
}
