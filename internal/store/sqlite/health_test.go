package sqlite_test

import (
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
