package store_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

func TestOpenSQLite(t *testing.T) {
	dir := t.TempDir()
	// sqlite://relative paths are relative to the working directory.
	t.Chdir(dir)
	for _, tc := range []struct {
		name string
		dsn  string
		want string // database file, relative to dir
	}{
		{"bare absolute path", filepath.Join(dir, "bare.db"), "bare.db"},
		{"bare relative path", "rel/bare.db", "rel/bare.db"},
		{"bare path with a question mark", filepath.Join(dir, "odd?name.db"), "odd?name.db"},
		{"sqlite: absolute", "sqlite:" + filepath.Join(dir, "colon.db"), "colon.db"},
		{"sqlite: relative", "sqlite:colon-rel.db", "colon-rel.db"},
		{"sqlite:// absolute", "sqlite://" + filepath.Join(dir, "slashes.db"), "slashes.db"},
		{"sqlite:// relative", "sqlite://sub/slashes-rel.db", "sub/slashes-rel.db"},
		{"upper-case scheme", "SQLite:" + filepath.Join(dir, "upper.db"), "upper.db"},
		{"synchronous=full", "sqlite:" + filepath.Join(dir, "full.db") + "?synchronous=full", "full.db"},
		{"synchronous=normal and busy_timeout", "sqlite:" + filepath.Join(dir, "normal.db") + "?synchronous=normal&busy_timeout=250ms", "normal.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := store.Open(t.Context(), tc.dsn)
			if err != nil {
				t.Fatalf("Open(%q) = %v", tc.dsn, err)
			}
			defer b.Close()
			if err := b.Ping(t.Context()); err != nil {
				t.Errorf("Ping() = %v", err)
			}
			db, ok := b.(*sqlite.DB)
			if !ok {
				t.Fatalf("Open(%q) = %T, want *sqlite.DB", tc.dsn, b)
			}
			if want := filepath.Join(dir, tc.want); db.Path() != want {
				t.Errorf("Open(%q) opened %q, want %q", tc.dsn, db.Path(), want)
			}
			if _, err := os.Stat(db.Path()); err != nil {
				t.Errorf("database file: %v", err)
			}
		})
	}
}

func TestOpenRefused(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name        string
		dsn         string
		unsupported bool   // errors.Is(err, errors.ErrUnsupported)
		mention     string // the error must say this
	}{
		{"postgres", "postgres://mandate@db.example/mandate?sslmode=verify-full", true, "PostgreSQL"},
		{"postgresql", "postgresql://mandate@db.example/mandate", true, "PostgreSQL"},
		{"empty", "", false, "empty DSN"},
		{"unknown scheme", "mysql://mandate@db.example/mandate", false, `"mysql"`},
		{"file URI", "file:" + filepath.Join(dir, "x.db"), false, `"file"`},
		{"sqlite: without a path", "sqlite:", false, "no database file"},
		{"sqlite:// without a path", "sqlite://?synchronous=full", false, "no database file"},
		{"unknown parameter", "sqlite:" + filepath.Join(dir, "p.db") + "?cache=shared", false, `"cache"`},
		{"bad synchronous", "sqlite:" + filepath.Join(dir, "p.db") + "?synchronous=off", false, "synchronous"},
		{"bad busy_timeout", "sqlite:" + filepath.Join(dir, "p.db") + "?busy_timeout=5", false, "busy_timeout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := store.Open(t.Context(), tc.dsn)
			if err == nil {
				b.Close()
				t.Fatalf("Open(%q) = nil error, want an error", tc.dsn)
			}
			if got := errors.Is(err, errors.ErrUnsupported); got != tc.unsupported {
				t.Errorf("Open(%q) = %v; errors.Is(err, ErrUnsupported) = %v, want %v", tc.dsn, err, got, tc.unsupported)
			}
			if !strings.Contains(err.Error(), tc.mention) {
				t.Errorf("Open(%q) = %q, want it to mention %s", tc.dsn, err, tc.mention)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "p.db")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a refused DSN created its database file (Stat = %v)", err)
	}
}
