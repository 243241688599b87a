// Package sqlite is mandate's embedded storage backend: one SQLite database
// file, accessed through the pure-Go modernc.org/sqlite driver so that the
// mandate binary stays static.
//
// A DB implements every domain package's Store interface (identity, task,
// token, audit). It keeps two connection pools on the same file: a single
// writer connection, so that concurrent writers queue in Go instead of
// failing with SQLITE_BUSY, and a pool of read-only connections, which WAL
// mode lets run alongside the writer. A third connection checkpoints the
// WAL into the database file in the background, so that no commit pays
// for a checkpoint. The audit ledger's appends go to a journal file
// beside the database, which a background indexer copies into the ledger
// tables (see ledgerindex.go); the journal is locked, so one process at a
// time has the database open. The schema is versioned: the
// migrations embedded in the binary are applied in order when the database
// is opened, and a database written by a newer mandate is refused.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// ErrSchemaTooNew is returned by Open for a database whose schema version is
// newer than this binary knows: it was written by a newer mandate, and
// using it could corrupt it.
var ErrSchemaTooNew = errors.New("sqlite: database schema is newer than this mandate binary supports")

// pageCacheKiB is each connection's page cache (PRAGMA cache_size).
const pageCacheKiB = 256

// DefaultBusyTimeout is how long a connection waits for a lock held by
// another connection (a checkpoint, another process) before failing.
const DefaultBusyTimeout = 5 * time.Second

//go:embed migrations/*.sql
var migrationFS embed.FS

// Option configures Open.
type Option func(*options)

type options struct {
	syncFull     bool
	busyTimeout  time.Duration
	readers      int
	walLimit     int64
	ckptEvery    time.Duration
	journalLimit int64
	now          func() time.Time
	// identityCheck and onLost: see health.go.
	identityCheck time.Duration
	onLost        func(reason error)
	refuseWAL     bool
}

// WithSynchronousFull makes every commit wait for an fsync of the WAL
// (PRAGMA synchronous=FULL), and every ledger append for an fsync of the
// ledger journal, so that they also survive a power loss or
// operating-system crash, at the cost of write throughput.
func WithSynchronousFull() Option { return func(o *options) { o.syncFull = true } }

// WithBusyTimeout sets how long a connection waits on a lock held by
// another connection before failing; the default is DefaultBusyTimeout.
func WithBusyTimeout(d time.Duration) Option { return func(o *options) { o.busyTimeout = d } }

// WithWALLimit sets the size of the write-ahead log past which the
// background checkpoint truncates it (see checkpointLoop); the default is
// DefaultWALLimit.
func WithWALLimit(bytes int64) Option { return func(o *options) { o.walLimit = bytes } }

// DefaultWALLimit is the default WithWALLimit.
const DefaultWALLimit = 64 << 20

// WithCheckpointInterval sets how often the background checkpoint copies
// the WAL into the database file (and restarts it past WithWALLimit); the
// default is DefaultCheckpointInterval. A value that is not positive
// keeps the default.
func WithCheckpointInterval(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.ckptEvery = d
		}
	}
}

// DefaultCheckpointInterval is the default WithCheckpointInterval.
const DefaultCheckpointInterval = 500 * time.Millisecond

// WithReaders sets the size of the read connection pool (at least 1); the
// default is GOMAXPROCS, at least 4.
func WithReaders(n int) Option { return func(o *options) { o.readers = n } }

// WithClock sets the clock UseOnce uses to decide whether a remembered
// identifier has expired; the default is time.Now.
func WithClock(now func() time.Time) Option { return func(o *options) { o.now = now } }

// DB is a mandate database in one SQLite file. It is safe for concurrent
// use. Create it with Open and release it with Close.
type DB struct {
	path   string
	writer *sql.DB // exactly one connection: writes are serialized in Go
	reader *sql.DB // read-only connections
	ckpt   *sql.DB // one connection that checkpoints the WAL
	now    func() time.Time
	// pageSize is the database's page size: the size of a WAL frame's page.
	pageSize int64

	stopCkpt  chan struct{}
	ckptDone  chan struct{}
	closeOnce sync.Once
	closeErr  error

	// The ledger's journal and indexer (see ledgerindex.go), guarded by lmu.
	lmu           sync.Mutex
	ledger        *ledgerLog
	indexFailures prometheus.Counter

	// Prepared statements for the hot paths, by query text. Parsing a
	// statement costs more than running a point query, so these are
	// prepared once per connection (database/sql re-prepares a *sql.Stmt
	// on each connection it runs on).
	stmtMu      sync.Mutex
	readerStmts map[string]*sql.Stmt
	writerStmts map[string]*sql.Stmt

	// health watches the files' identity (health.go).
	health *health
}

// Open opens (creating if needed) the mandate database in the file at path
// and brings its schema up to date. A missing file is created with mode
// 0600 and a missing parent directory with mode 0700. It returns an error
// wrapping ErrSchemaTooNew if the database was migrated by a newer mandate.
func Open(ctx context.Context, path string, opts ...Option) (*DB, error) {
	o := options{busyTimeout: DefaultBusyTimeout, readers: max(4, runtime.GOMAXPROCS(0)), walLimit: DefaultWALLimit,
		ckptEvery: DefaultCheckpointInterval, journalLimit: DefaultJournalLimit, now: time.Now, identityCheck: DefaultIdentityCheck}
	for _, opt := range opts {
		opt(&o)
	}
	if o.readers < 1 {
		o.readers = 1
	}
	o.busyTimeout = max(o.busyTimeout, 0)
	if o.now == nil {
		o.now = time.Now
	}
	if path == "" {
		return nil, errors.New("sqlite: open: empty database path")
	}
	if path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("sqlite: open: %q: want a file path (in-memory and URI databases are not supported)", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := checkStrayFiles(abs); err != nil {
		return nil, err
	}
	if o.refuseWAL {
		if err := checkNoWAL(abs); err != nil {
			return nil, err
		}
	}
	if err := checkWALBinding(abs); err != nil {
		return nil, err
	}
	if err := createFile(abs); err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	// Every pooled connection runs these pragmas when it is opened (the
	// driver applies _pragma parameters per connection):
	//   - busy_timeout: wait for locks instead of failing at once;
	//   - foreign_keys: SQLite leaves them off by default;
	//   - journal_mode=WAL: readers do not block the writer nor it them;
	//   - synchronous=NORMAL: in WAL mode a commit is durable across a
	//     process crash (the WAL is written before the commit returns) and
	//     the database is never corrupted; only a power loss or OS crash
	//     can roll back the last commits before a checkpoint. FULL (see
	//     WithSynchronousFull) fsyncs every commit and closes that window;
	//   - cache_size: each connection's page cache, which SQLite fills up
	//     to its limit and keeps (outside the Go heap). At SQLite's
	//     default, 2 MiB, the server's memory crept up by about 25 MiB
	//     over an 8-minute soak as the six connections' caches filled;
	//     the operating system's page cache serves the rest.
	sync := "NORMAL"
	if o.syncFull {
		sync = "FULL"
	}
	q := url.Values{}
	q.Add("_pragma", "busy_timeout("+strconv.FormatInt(o.busyTimeout.Milliseconds(), 10)+")")
	q.Add("_pragma", "foreign_keys(1)")
	q.Add("_pragma", "journal_mode(WAL)")
	q.Add("_pragma", "synchronous("+sync+")")
	q.Add("_pragma", "cache_size(-"+strconv.Itoa(pageCacheKiB)+")")
	// The writer takes the write lock when a transaction begins, so a
	// transaction that reads before it writes cannot fail to upgrade.
	wq := cloneValues(q)
	wq.Set("_txlock", "immediate")
	// The writer never checkpoints the WAL itself: an automatic checkpoint
	// copies ~1000 pages and fsyncs inside whichever commit crosses the
	// threshold, which stalled group commits for tens of milliseconds.
	// A background checkpointer on its own connection does it instead
	// (see checkpointLoop); WAL lets it run alongside the writer.
	wq.Add("_pragma", "wal_autocheckpoint(0)")
	wq.Add("_pragma", "journal_size_limit("+strconv.FormatInt(2*o.walLimit, 10)+")")
	rq := cloneValues(q)
	rq.Add("_pragma", "query_only(1)")

	base := "file:" + (&url.URL{Path: filepath.ToSlash(abs)}).EscapedPath()
	writer, err := sql.Open("sqlite", base+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	db := &DB{path: abs, writer: writer, now: o.now,
		readerStmts: make(map[string]*sql.Stmt), writerStmts: make(map[string]*sql.Stmt),
		indexFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "mandate_audit_index_failures_total",
			Help: "Failed copies of the ledger journal into the ledger tables; appends and ledger reads fail until one succeeds.",
		})}
	if err := db.migrate(ctx); err != nil {
		writer.Close()
		return nil, err
	}
	if err := db.prepareWriter(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.openLedgerLog(ctx, o.syncFull, o.journalLimit); err != nil {
		db.Close()
		return nil, err
	}
	if err := db.bind(ctx); err != nil {
		db.Close()
		return nil, err
	}

	reader, err := sql.Open("sqlite", base+"?"+rq.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	reader.SetMaxOpenConns(o.readers)
	reader.SetMaxIdleConns(o.readers)
	reader.SetConnMaxIdleTime(0)
	reader.SetConnMaxLifetime(0)
	db.reader = reader
	if err := reader.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}

	ckpt, err := sql.Open("sqlite", base+"?"+q.Encode())
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	ckpt.SetMaxOpenConns(1)
	ckpt.SetMaxIdleConns(1)
	ckpt.SetConnMaxIdleTime(0)
	ckpt.SetConnMaxLifetime(0)
	db.ckpt = ckpt
	if err := ckpt.PingContext(ctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	if err := ckpt.QueryRowContext(ctx, `PRAGMA page_size`).Scan(&db.pageSize); err != nil {
		db.Close()
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	db.stopCkpt, db.ckptDone = make(chan struct{}), make(chan struct{})
	go db.checkpointLoop(o.walLimit, o.ckptEvery)
	if err := db.watchFiles(o.identityCheck, o.onLost); err != nil {
		db.Close()
		return nil, err
	}
	return db, nil
}

// checkpointLoop checkpoints the WAL in the background until Close.
// PASSIVE checkpoints never block the writer or readers; they copy what
// no reader still needs, and the WAL restarts from its beginning once it
// has been copied entirely and a writer finds no reader in it. Under
// steady reads and writes that moment may never come, and the WAL (and
// its shared-memory index) would grow without bound; once it holds more
// than walLimit bytes of frames, restartWAL makes the moment.
func (db *DB) checkpointLoop(walLimit int64, every time.Duration) {
	defer close(db.ckptDone)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-db.stopCkpt:
			return
		case <-t.C:
			db.checkpoint(walLimit)
		}
	}
}

// checkpoint copies what it can of the WAL into the database file and,
// once the WAL holds more than walLimit bytes of frames, restarts it;
// it reports whether it did. Errors (SQLITE_BUSY from another process's
// checkpoint) are left for the next tick to retry.
func (db *DB) checkpoint(walLimit int64) (restarted bool) {
	var busy, logged, copied int64
	err := db.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &copied)
	if err != nil || logged*db.pageSize <= walLimit {
		return false
	}
	db.restartWAL()
	return true
}

// restartWAL makes the next write start the WAL from its beginning.
// Passive checkpoints first copy all but the last few frames without
// holding anyone back; then RESTART runs on the writer's own connection
// (queued behind the write in progress, and holding the next ones back,
// instead of losing the write lock to them again and again), so writes
// wait only while it copies those frames and the readers leave the WAL
// (a few milliseconds). The writer's journal_size_limit trims a file
// that a burst left larger than twice the limit.
func (db *DB) restartWAL() {
	for range 8 {
		var busy, logged, copied int64
		if err := db.ckpt.QueryRow(`PRAGMA wal_checkpoint(PASSIVE)`).Scan(&busy, &logged, &copied); err != nil || logged-copied <= walTail {
			break
		}
	}
	_, _ = db.writer.Exec(`PRAGMA wal_checkpoint(RESTART)`)
}

// walTail is how many frames may be left for the blocking checkpoint to
// copy.
const walTail = 256

// createFile creates the database file with mode 0600 (and its directory
// with mode 0700) so that SQLite, which gives the -wal and -shm files the
// database file's mode, never creates them readable by others.
func createFile(path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	return f.Close()
}

func cloneValues(v url.Values) url.Values {
	c := make(url.Values, len(v))
	for k, vs := range v {
		c[k] = slices.Clone(vs)
	}
	return c
}

// Path returns the absolute path of the database file.
func (db *DB) Path() string { return db.path }

// Ping reports whether the database can serve reads and writes: its
// files are still the ones it opened (else the error wraps ErrLost) and
// both connection pools answer.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.checkFiles(); err != nil {
		return err
	}
	if err := db.reader.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", db.classify(err))
	}
	if err := db.writer.PingContext(ctx); err != nil {
		return fmt.Errorf("sqlite: ping: %w", db.classify(err))
	}
	return nil
}

// Close copies the ledger's journaled events into its tables, stops the
// background work and closes the connection pools. Calls after the first
// return its result.
func (db *DB) Close() error {
	db.closeOnce.Do(func() { db.closeErr = db.close() })
	return db.closeErr
}

func (db *DB) close() error {
	db.stopWatching()
	errs := []error{db.closeLedgerLog()}
	db.stmtMu.Lock()
	for _, m := range []map[string]*sql.Stmt{db.readerStmts, db.writerStmts} {
		for _, s := range m {
			errs = append(errs, s.Close())
		}
	}
	db.stmtMu.Unlock()
	if db.stopCkpt != nil {
		close(db.stopCkpt)
		<-db.ckptDone
	}
	if db.ckpt != nil {
		_, _ = db.ckpt.Exec(`PRAGMA wal_checkpoint(RESTART)`)
		errs = append(errs, db.ckpt.Close())
	}
	if db.reader != nil {
		errs = append(errs, db.reader.Close())
	}
	errs = append(errs, db.writer.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite: close: %w", err)
	}
	return nil
}

// migration is one embedded schema change.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in version order. Their file
// names are NNNN_description.sql, numbered from 1 without gaps.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFS, "migrations")
	if err != nil {
		return nil, err
	}
	var ms []migration
	for _, e := range entries {
		num, _, ok := strings.Cut(e.Name(), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || !strings.HasSuffix(e.Name(), ".sql") {
			return nil, fmt.Errorf("migration file %q is not named NNNN_description.sql", e.Name())
		}
		b, err := fs.ReadFile(migrationFS, "migrations/"+e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: v, name: e.Name(), sql: string(b)})
	}
	slices.SortFunc(ms, func(a, b migration) int { return a.version - b.version })
	for i, m := range ms {
		if m.version != i+1 {
			return nil, fmt.Errorf("migration %q: want version %d", m.name, i+1)
		}
	}
	return ms, nil
}

// SchemaVersion is the schema version this binary migrates databases to.
func SchemaVersion() int {
	ms, err := migrations()
	if err != nil {
		panic(err) // the embedded files are fixed at build time; tests cover them
	}
	return len(ms)
}

// migrate applies the embedded migrations the database has not seen yet,
// each in its own transaction together with its schema_migrations row.
// Each transaction begins IMMEDIATE and re-reads the version, so two
// processes opening the same new database do not both apply a migration.
func (db *DB) migrate(ctx context.Context) error {
	ms, err := migrations()
	if err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	if _, err := db.writer.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		name       TEXT    NOT NULL,
		applied_at INTEGER NOT NULL
	) STRICT`); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	for {
		done, err := db.migrateOne(ctx, ms)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

func (db *DB) migrateOne(ctx context.Context, ms []migration) (done bool, err error) {
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	defer rollback(tx, &err)
	var current int
	if err := tx.QueryRowContext(ctx, `SELECT coalesce(max(version), 0) FROM schema_migrations`).Scan(&current); err != nil {
		return false, fmt.Errorf("sqlite: migrate: %w", err)
	}
	switch {
	case current > len(ms):
		return false, fmt.Errorf("%w: %s is at version %d, this binary knows up to %d", ErrSchemaTooNew, db.path, current, len(ms))
	case current == len(ms):
		return true, tx.Commit()
	}
	m := ms[current]
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, fmt.Errorf("sqlite: migrate: %s: %w", m.name, err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, time.Now().UnixNano()); err != nil {
		return false, fmt.Errorf("sqlite: migrate: %s: %w", m.name, err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("sqlite: migrate: %s: %w", m.name, err)
	}
	return false, nil
}

// rollback rolls tx back if *err is set. Use it deferred right after
// BeginTx, with a named error result.
func rollback(tx *sql.Tx, err *error) {
	if *err != nil {
		_ = tx.Rollback()
	}
}

// querier is what *sql.DB and *sql.Tx have in common.
type querier interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// write runs fn in a write transaction on the single writer connection.
// A lost store refuses; errors an operator can fix are classified (see
// classify).
func (db *DB) write(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	if err := db.Lost(); err != nil {
		return err
	}
	defer func() { err = db.classify(err) }()
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer rollback(tx, &err)
	if err := fn(tx); err != nil {
		return err
	}
	return tx.Commit()
}

// read runs fn in a read transaction, so that its queries see one
// snapshot. A lost store refuses, as write does.
func (db *DB) read(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	if err := db.Lost(); err != nil {
		return err
	}
	defer func() { err = db.classify(err) }()
	tx, err := db.reader.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if rerr := tx.Rollback(); err == nil && rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			err = rerr
		}
	}()
	return fn(tx)
}

// readStmt returns the prepared statement for query on the reader pool,
// preparing it on first use. Do not call it inside a read transaction: with
// every reader connection held, preparing would wait forever.
func (db *DB) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	db.stmtMu.Lock()
	defer db.stmtMu.Unlock()
	if s, ok := db.readerStmts[query]; ok {
		return s, nil
	}
	s, err := db.reader.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	db.readerStmts[query] = s
	return s, nil
}

// writerQueries are the hot write statements, prepared on the writer when
// the database is opened: preparing one later could wait forever for the
// single writer connection while a transaction holds it.
var writerQueries = []string{
	qTaskStatus, qParentTaint, qAgentTaint, qInsertTask, qUseOnce, qRevokeToken,
	qRaiseTaskTaint, qRaiseAgentTaint,
}

func (db *DB) prepareWriter(ctx context.Context) error {
	for _, q := range append(writerQueries, ledgerWriterQueries()...) {
		s, err := db.writer.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("sqlite: open: prepare: %w", err)
		}
		db.writerStmts[q] = s
	}
	return nil
}

// writeStmt returns the writer's prepared statement for one of
// writerQueries. It panics for any other query: that is a bug.
func (db *DB) writeStmt(query string) *sql.Stmt {
	s, ok := db.writerStmts[query]
	if !ok {
		panic("sqlite: statement not in writerQueries: " + query)
	}
	return s
}

// txStmt returns the writer's prepared statement for one of writerQueries,
// bound to the writer transaction tx.
func (db *DB) txStmt(ctx context.Context, tx *sql.Tx, query string) *sql.Stmt {
	return tx.StmtContext(ctx, db.writeStmt(query))
}

// isConstraint reports whether err is a SQLite constraint violation with
// one of the given extended result codes (any constraint if none).
func isConstraint(err error, codes ...int) bool {
	var se *msqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	c := se.Code()
	if c&0xff != sqlite3.SQLITE_CONSTRAINT {
		return false
	}
	return len(codes) == 0 || slices.Contains(codes, c)
}

// isUnique reports whether err is a PRIMARY KEY or UNIQUE violation.
func isUnique(err error) bool {
	return isConstraint(err, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE)
}

// Times are stored as INTEGER unix nanoseconds (UTC); the zero time.Time is
// stored as NULL, because it has no unix-nanosecond representation.

func timeArg(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixNano()
}

func timeVal(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return time.Unix(0, n.Int64).UTC()
}

// nullString turns "" into NULL, for optional JSON columns.
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// Representable unix-nanosecond times: about 1678 to 2262.
var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// checkTimes reports an error for a non-zero time the schema cannot store.
func checkTimes(ts ...time.Time) error {
	for _, t := range ts {
		if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
			return fmt.Errorf("time %s is outside the storable range (years 1678 to 2262)", t.UTC().Format(time.RFC3339))
		}
	}
	return nil
}
