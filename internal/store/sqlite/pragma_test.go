package sqlite

import (
	"database/sql"
	"path/filepath"
	"testing"
	"time"
)

// TestPragmas checks the per-connection settings on both pools.
func TestPragmas(t *testing.T) {
	for _, tc := range []struct {
		name     string
		opts     []Option
		wantSync int64
	}{
		{"default", nil, 1},                          // NORMAL
		{"full", []Option{WithSynchronousFull()}, 2}, // FULL
	} {
		t.Run(tc.name, func(t *testing.T) {
			opts := append([]Option{WithBusyTimeout(1234 * time.Millisecond)}, tc.opts...)
			db, err := Open(t.Context(), filepath.Join(t.TempDir(), "p.db"), opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for _, pool := range []struct {
				name          string
				db            *sql.DB
				wantQueryOnly int64
			}{
				{"writer", db.writer, 0},
				{"reader", db.reader, 1},
			} {
				for _, p := range []struct {
					pragma string
					want   any
				}{
					{"journal_mode", "wal"},
					{"foreign_keys", int64(1)},
					{"busy_timeout", int64(1234)},
					{"synchronous", tc.wantSync},
					{"query_only", pool.wantQueryOnly},
				} {
					var got any
					if err := pool.db.QueryRowContext(t.Context(), "PRAGMA "+p.pragma).Scan(&got); err != nil {
						t.Fatalf("%s: PRAGMA %s: %v", pool.name, p.pragma, err)
					}
					if got != p.want {
						t.Errorf("%s: PRAGMA %s = %v (%T), want %v", pool.name, p.pragma, got, got, p.want)
					}
				}
			}
			if _, err := db.reader.ExecContext(t.Context(), `DELETE FROM agents`); err == nil {
				t.Errorf("a write through the reader pool succeeded; want it refused (query_only)")
			}
		})
	}
}
