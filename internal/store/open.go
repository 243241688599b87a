package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// The SQLite backend implements every domain store.
var _ Backend = (*sqlite.DB)(nil)

// Open opens the storage backend named by dsn, creating and migrating the
// database if needed. The accepted forms are:
//
//	/var/lib/mandate/mandate.db         a bare file path: SQLite
//	sqlite:/var/lib/mandate/mandate.db  SQLite, explicit
//	sqlite://relative/or/absolute.db    SQLite, URL style: the path is
//	                                    everything after "sqlite://", so
//	                                    "sqlite:///var/x.db" is absolute
//	postgres://… or postgresql://…      PostgreSQL: not available yet
//
// The sqlite: forms accept query parameters after "?":
// synchronous=full (see sqlite.WithSynchronousFull) and busy_timeout=<Go
// duration>. A bare path is taken literally, including any "?".
//
// A PostgreSQL DSN returns an error wrapping errors.ErrUnsupported; any
// other URL scheme is an error.
func Open(ctx context.Context, dsn string) (Backend, error) {
	return OpenWith(ctx, dsn, Options{})
}

// Options are what a caller tells the backend beyond its DSN.
type Options struct {
	// OnLost, if set, is called once, synchronously, when the backend
	// finds that its files were deleted or replaced under it (see
	// sqlite.ErrLost), with the reason. It must not call the backend.
	OnLost func(reason error)
	// RefuseLeftoverWAL refuses a store whose write-ahead log was left
	// behind by a process that did not close it (see
	// sqlite.WithRefuseLeftoverWAL).
	RefuseLeftoverWAL bool
}

// OpenWith is Open with Options.
func OpenWith(ctx context.Context, dsn string, o Options) (Backend, error) {
	kind, rest, err := parseDSN(dsn)
	if err != nil {
		return nil, err
	}
	switch kind {
	case "postgres":
		return nil, fmt.Errorf("store: open: the PostgreSQL backend is not available yet; use a SQLite file path: %w", errors.ErrUnsupported)
	case "sqlite-bare":
		db, err := sqlite.Open(ctx, rest, o.sqlite()...)
		if err != nil {
			return nil, err
		}
		return db, nil
	}
	path, query, _ := strings.Cut(rest, "?")
	if path == "" {
		return nil, fmt.Errorf("store: open: DSN %q names no database file", dsn)
	}
	opts, err := sqliteOptions(query)
	if err != nil {
		return nil, fmt.Errorf("store: open: DSN %q: %w", dsn, err)
	}
	db, err := sqlite.Open(ctx, path, append(opts, o.sqlite()...)...)
	if err != nil {
		return nil, err
	}
	return db, nil
}

func (o Options) sqlite() []sqlite.Option {
	var opts []sqlite.Option
	if o.OnLost != nil {
		opts = append(opts, sqlite.WithOnLost(o.OnLost))
	}
	if o.RefuseLeftoverWAL {
		opts = append(opts, sqlite.WithRefuseLeftoverWAL())
	}
	return opts
}

// parseDSN classifies dsn as "sqlite" (rest is path?query), "sqlite-bare"
// (rest is a literal path) or "postgres".
func parseDSN(dsn string) (kind, rest string, err error) {
	if dsn == "" {
		return "", "", errors.New("store: open: empty DSN: want a SQLite file path, sqlite:<path> or a postgres:// URL")
	}
	lower := strings.ToLower(dsn)
	switch {
	case strings.HasPrefix(lower, "sqlite://"):
		return "sqlite", dsn[len("sqlite://"):], nil
	case strings.HasPrefix(lower, "sqlite:"):
		return "sqlite", dsn[len("sqlite:"):], nil
	case strings.HasPrefix(lower, "postgres://"), strings.HasPrefix(lower, "postgresql://"):
		return "postgres", dsn, nil
	}
	// Anything that looks like a URL scheme ("mysql://", "file:") is not a
	// path we should silently create a file for.
	if scheme, _, ok := strings.Cut(dsn, ":"); ok && isScheme(scheme) && len(scheme) > 1 {
		return "", "", fmt.Errorf("store: open: unsupported DSN scheme %q: want a SQLite file path, sqlite:<path> or a postgres:// URL", scheme)
	}
	return "sqlite-bare", dsn, nil
}

// isScheme reports whether s is a URL scheme (RFC 3986: ALPHA *( ALPHA /
// DIGIT / "+" / "-" / "." )). Single letters are left to paths, so that a
// Windows drive letter is not taken for a scheme.
func isScheme(s string) bool {
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case i > 0 && (c >= '0' && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return false
		}
	}
	return s != ""
}

func sqliteOptions(query string) ([]sqlite.Option, error) {
	if query == "" {
		return nil, nil
	}
	v, err := url.ParseQuery(query)
	if err != nil {
		return nil, err
	}
	var opts []sqlite.Option
	for k, vals := range v {
		val := vals[len(vals)-1]
		switch k {
		case "synchronous":
			switch strings.ToLower(val) {
			case "full":
				opts = append(opts, sqlite.WithSynchronousFull())
			case "normal":
			default:
				return nil, fmt.Errorf("synchronous=%q: want normal or full", val)
			}
		case "busy_timeout":
			d, err := time.ParseDuration(val)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("busy_timeout=%q: want a duration such as 5s", val)
			}
			opts = append(opts, sqlite.WithBusyTimeout(d))
		default:
			return nil, fmt.Errorf("unknown parameter %q (want synchronous or busy_timeout)", k)
		}
	}
	return opts, nil
}
