package sqlite

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mandatehq/mandate/internal/fault"
)

// ErrLost is returned, wrapped, by every call on a DB whose database file
// or ledger journal was deleted or replaced by another file while it was
// open (see DB.Lost). It is in the class fault.ErrUnavailable. The DB
// stays lost: its connections still reach the old file, whose data no
// later open will see, so nothing more is written to it or read from it.
var ErrLost = fmt.Errorf("sqlite: the store was lost: %w", fault.ErrUnavailable)

// DefaultIdentityCheck is how often an open DB checks that its database
// file and ledger journal are still the files it opened (see
// WithIdentityCheck). One check costs two stat calls: 3–4 µs and 4
// small allocations in all (BenchmarkCheckFiles, on a 2-core EPYC), a
// thousandth of a core at this interval.
const DefaultIdentityCheck = 250 * time.Millisecond

// WithIdentityCheck sets how often the DB checks that its files are
// still the ones it opened; the default is DefaultIdentityCheck. Ping
// checks as well.
func WithIdentityCheck(d time.Duration) Option { return func(o *options) { o.identityCheck = d } }

// WithOnLost sets a function called once, synchronously, when the DB
// finds that it is lost (see Lost), with the reason; by then every later
// call refuses. The server writes its durable store.lost mark there, so
// that a restart does not silently serve whatever file is now at the path.
// It must not call the DB.
func WithOnLost(fn func(reason error)) Option { return func(o *options) { o.onLost = fn } }

// watched is a file whose identity (device and inode on unix, volume and
// file index on windows) must not change while the DB is open.
type watched struct {
	path string
	what string // "database file", "ledger journal"
	info os.FileInfo
}

// health is the lost state of a DB and the goroutine that watches for it.
type health struct {
	files  []watched
	lost   atomic.Pointer[error] // set once, never cleared
	once   sync.Once
	onLost func() // closes the connection pools
	notify func(reason error)
	stop   chan struct{}
	done   chan struct{}
}

// watchFiles records the identity of the DB's files and starts checking
// it every interval (none if interval is not positive).
func (db *DB) watchFiles(interval time.Duration, notify func(error)) error {
	h := &health{stop: make(chan struct{}), done: make(chan struct{}), notify: notify}
	for _, f := range []watched{{path: db.path, what: "database file"}, {path: db.path + journalSuffix, what: "ledger journal"}} {
		st, err := os.Stat(f.path)
		if err != nil {
			return fmt.Errorf("sqlite: open: %w", err)
		}
		f.info = st
		h.files = append(h.files, f)
	}
	h.onLost = db.closePools
	db.health = h
	if interval <= 0 {
		close(h.done)
		return nil
	}
	go func() {
		defer close(h.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				if db.checkFiles() != nil {
					return // lost for good: nothing more to watch
				}
			}
		}
	}()
	return nil
}

// stopWatching stops the watching goroutine.
func (db *DB) stopWatching() {
	if h := db.health; h != nil {
		select {
		case <-h.stop:
		default:
			close(h.stop)
		}
		<-h.done
	}
}

// checkFiles compares the files' identity with the one recorded at open,
// marks the DB lost on the first difference and returns the lost error.
// A stat that fails for another reason than a missing file (permissions,
// I/O) marks it lost too: the store cannot show that it is still the one
// it opened.
func (db *DB) checkFiles() error {
	h := db.health
	if h == nil {
		return nil
	}
	if err := db.Lost(); err != nil {
		return err
	}
	for _, f := range h.files {
		st, err := os.Stat(f.path)
		var why string
		switch {
		case errors.Is(err, os.ErrNotExist):
			why = "was deleted"
		case err != nil:
			why = fmt.Sprintf("cannot be checked (%v)", err)
		case !os.SameFile(f.info, st):
			why = "was replaced by another file"
		default:
			continue
		}
		return db.markLost(fmt.Errorf("%w: the %s %s %s while mandate had it open; "+
			"nothing more is recorded or served from it: restore it or start over (see docs/operations.md)",
			ErrLost, f.what, f.path, why))
	}
	return nil
}

// markLost records err as why the DB is lost (the first reason wins),
// closes the connection pools so that no call reaches the old file again,
// tells the WithOnLost function, and returns the recorded reason.
func (db *DB) markLost(err error) error {
	h := db.health
	h.once.Do(func() {
		h.lost.Store(&err)
		h.onLost()
		if h.notify != nil {
			h.notify(err)
		}
	})
	return *h.lost.Load()
}

// Lost returns an error wrapping ErrLost if the database file or the
// ledger journal was deleted or replaced while the DB had it open (as
// last checked), and nil otherwise.
func (db *DB) Lost() error {
	if db.health == nil {
		return nil
	}
	if p := db.health.lost.Load(); p != nil {
		return *p
	}
	return nil
}

// closePools closes the connection pools of a lost DB: calls in flight
// finish on the old file, later ones fail (and are reported as lost).
func (db *DB) closePools() {
	for _, p := range []interface{ Close() error }{db.writer, db.reader, db.ckpt} {
		if p != nil {
			_ = p.Close()
		}
	}
}

// ErrMissingDatabase is returned by Open when the database file is
// missing but files that belong to it — its write-ahead log (-wal) or its
// ledger journal (-ledger) — are still there: the database was deleted
// (or moved) on its own. Creating a new database beside them would replay
// the old log into it, or start a new store as if nothing had been lost.
var ErrMissingDatabase = errors.New("sqlite: the database file is missing but its other files remain")

// checkStrayFiles refuses to create the database at path while its -wal
// or ledger journal exists (see ErrMissingDatabase). The -shm file is not
// asked about: it holds only an index of the -wal, rebuilt from it.
func checkStrayFiles(path string) error {
	if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
		return nil // there, or an error Open reports when it opens it
	}
	var stray []string
	for _, suffix := range []string{"-wal", journalSuffix} {
		if _, err := os.Lstat(path + suffix); err == nil {
			stray = append(stray, path+suffix)
		}
	}
	if len(stray) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s does not exist, but %s does: the database was deleted or moved without them. "+
		"Put the database back; or, to start over on a new store, move %s aside too (see docs/operations.md)",
		ErrMissingDatabase, path, strings.Join(stray, " and "), strings.Join(stray, " and "))
}

// ErrLeftoverWAL is returned by Open, with WithRefuseLeftoverWAL, when
// the database's write-ahead log holds frames: a process stopped without
// closing the database (a crash, a kill), and the log may not belong to
// the database file now at the path.
var ErrLeftoverWAL = errors.New("sqlite: a write-ahead log was left beside the database")

// WithRefuseLeftoverWAL makes Open refuse a database whose -wal holds
// frames (ErrLeftoverWAL) instead of replaying them into it. SQLite's log
// names no database file: after the store was lost (deleted or replaced
// under a running server, see ErrLost), a log left behind by the lost
// database would be replayed into whatever file is now at the path,
// mixing the two. The server asks for this while it starts over on a new
// store.
func WithRefuseLeftoverWAL() Option { return func(o *options) { o.refuseWAL = true } }

// walHeaderSize is the size of a write-ahead log's header: a log no
// larger holds no frames.
const walHeaderSize = 32

func checkNoWAL(path string) error {
	st, err := os.Stat(path + "-wal")
	if errors.Is(err, os.ErrNotExist) || err == nil && st.Size() <= walHeaderSize {
		return nil
	}
	if err != nil {
		return fmt.Errorf("sqlite: open: %w", err)
	}
	return fmt.Errorf("%w: %s holds %d bytes of log that may belong to the database that was lost, not to %s; "+
		"SQLite would replay it into the database. Move %s (and %s-shm) aside before starting over (see docs/operations.md)",
		ErrLeftoverWAL, path+"-wal", st.Size(), path, path+"-wal", path)
}

// classify marks err as fault.ErrUnavailable when an operator can fix
// its cause: the store is lost, the disk (or quota, or file size limit) is full, the file
// system or database is read-only, a lock was held past the busy
// timeout, or the file cannot be opened or read. Other errors are
// returned as they are.
func (db *DB) classify(err error) error {
	if err == nil || errors.Is(err, fault.ErrUnavailable) {
		return err
	}
	if lost := db.Lost(); lost != nil {
		return fmt.Errorf("%w (%v)", lost, err)
	}
	if unavailable(err) {
		return fmt.Errorf("%w: %w", fault.ErrUnavailable, err)
	}
	return err
}

// unavailable reports whether err is a SQLite or operating-system error
// an operator can fix.
func unavailable(err error) bool {
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED,
			sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_NOMEM, sqlite3.SQLITE_PERM:
			return true
		}
		return false
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG) || errors.Is(err, syscall.EROFS) ||
		errors.Is(err, os.ErrPermission)
}
