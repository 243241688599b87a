package sqlite

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
)

// The ledger's group commits are made durable by the journal (journal.go)
// and copied into the ledger tables by an indexer goroutine, in large
// transactions, off the path of the actions they record.
//
// Why: every decision waits for its event to be durable. A SQLite
// transaction costs about 70 µs of CPU however small, plus a few pages of
// WAL per index, which at a thousand decisions a second is a commit per
// decision; a journal frame costs one write. The indexer then writes
// hundreds of events per transaction, for a fraction of the CPU per event.
//
// Readers do not see the difference: every read of the ledger tables first
// waits until everything appended before it has been indexed (syncLedger).

const (
	// indexDelay is how long the indexer lets batches gather before it
	// copies them, unless a reader is waiting or indexBatch events are
	// pending. It bounds how long an event is only in the journal.
	indexDelay = 20 * time.Millisecond
	// indexBatch is the most events the indexer copies in one transaction,
	// which holds the writer connection (and every other write) meanwhile.
	indexBatch = 512
	// indexRetry is how long the indexer waits after a failed copy.
	indexRetry = 250 * time.Millisecond
	// journalHardLimit times the limit is as large as the journal gets
	// (plus one frame): past it appends wait for the indexer to trim it.
	journalHardLimit = 4
	// maxPendingEvents bounds the events kept in memory for the indexer
	// (a few megabytes): past it, appends wait for the indexer. It copies
	// well over a hundred thousand events a second, so only a sustained
	// overload gets here.
	maxPendingEvents = 8192
	// DefaultJournalLimit is the default WithJournalLimit.
	DefaultJournalLimit = 16 << 20
)

// WithJournalLimit sets the size past which the ledger journal is emptied
// (see trimJournal); the default is DefaultJournalLimit.
func WithJournalLimit(bytes int64) Option { return func(o *options) { o.journalLimit = bytes } }

// ledgerLog is the journaled ledger: the journal, the batches the indexer
// has yet to copy, and how far it has got. Its fields are guarded by
// DB.lmu.
type ledgerLog struct {
	j        *journal
	limit    int64 // journal size past which trim empties it
	appended int64 // ledger size including journaled batches
	indexed  int64 // ledger size in the tables
	// pending are the batches journaled and not yet indexed, in order:
	// the callers' own, which AppendLedger's contract lets the store keep.
	pending []*audit.Batch
	events  int // events in pending
	// err is why the last copy failed, until one succeeds. While it is
	// set, appends and reads fail: the journal is not allowed to grow
	// without bound, nor a reader to miss events.
	err error
	// progress is closed and replaced whenever indexed or err changes.
	progress chan struct{}

	now  chan struct{} // wakes the indexer at once (1-buffered)
	soon chan struct{} // wakes the indexer for a delayed copy (1-buffered)
	stop chan struct{}
	done chan struct{}
}

func wake(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// openLedgerLog opens and locks the journal, copies into the tables the
// batches a previous process journaled but did not index, empties the
// journal and starts the indexer.
func (db *DB) openLedgerLog(ctx context.Context, sync bool, limit int64) error {
	j, err := openJournal(db.path+journalSuffix, sync)
	if err != nil {
		return err
	}
	size, err := db.tableLedgerSize(ctx)
	if err != nil {
		j.close()
		return err
	}
	var batch *audit.Batch
	flush := func() error {
		if batch == nil {
			return nil
		}
		err := db.appendLedgerTables(ctx, batch)
		batch = nil
		return err
	}
	err = j.replay(func(b *audit.Batch) error {
		start := b.Size - int64(len(b.Records))
		if b.Size <= size {
			// Indexed before the process stopped, if this journal belongs
			// with this database: then the tables hold the same hashes.
			stored, err := tableHashes(ctx, db.writer, b.HashStart, b.HashStart+int64(len(b.Hashes)))
			if err != nil || !slices.Equal(stored, b.Hashes) {
				return journalMismatch(j, start, b.Size, size)
			}
			return nil
		}
		if start != size {
			return journalMismatch(j, start, b.Size, size)
		}
		size = b.Size
		if batch == nil {
			batch = b
		} else if err := mergeBatch(batch, b); err != nil {
			return err
		}
		if len(batch.Records) >= indexBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err == nil {
		err = j.reset()
	}
	if err != nil {
		j.close()
		return fmt.Errorf("sqlite: open: recover the ledger journal: %w", err)
	}
	db.ledger = &ledgerLog{j: j, limit: limit, appended: size, indexed: size, progress: make(chan struct{}),
		now: make(chan struct{}, 1), soon: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go db.indexLoop()
	return nil
}

func journalMismatch(j *journal, start, end, size int64) error {
	return fmt.Errorf("sqlite: the ledger journal %s does not belong with this database: it holds events %d to %d, "+
		"which do not continue or match the database's ledger of %d events (was the database restored from a backup?); "+
		"move one of them aside", j.f.Name(), start+1, end, size)
}

// appendLedger journals b; the indexer copies it into the tables later.
func (db *DB) appendLedger(ctx context.Context, b *audit.Batch) error {
	l := db.ledger
	db.lmu.Lock()
	defer db.lmu.Unlock()
	for (l.j.size >= journalHardLimit*l.limit || l.events >= maxPendingEvents) && l.err == nil {
		// The indexer has fallen far behind: wait for it rather than
		// let the journal, or the batches kept for it, grow.
		progress := l.progress
		db.lmu.Unlock()
		wake(l.now)
		select {
		case <-progress:
		case <-ctx.Done():
			db.lmu.Lock()
			return ctx.Err()
		}
		db.lmu.Lock()
	}
	if err := db.Lost(); err != nil {
		return err
	}
	if l.err != nil {
		// %v: the index's failure is not the caller's conflict; it is
		// the store's availability.
		return fmt.Errorf("%w: the ledger index is failing, so appends are refused: %v", fault.ErrUnavailable, l.err)
	}
	if before := b.Size - int64(len(b.Records)); l.appended != before {
		return fmt.Errorf("%w: the ledger has %d events, the batch starts after %d", audit.ErrConflict, l.appended, before)
	}
	if err := l.j.append(b); err != nil {
		return db.classify(err)
	}
	l.appended = b.Size
	l.pending = append(l.pending, b)
	l.events += len(b.Records)
	if len(l.pending) == 1 {
		wake(l.soon)
	}
	if l.events >= indexBatch || l.j.size >= l.limit {
		wake(l.now)
	}
	return nil
}

// syncLedger waits until everything appended before it was called is in
// the ledger tables.
func (db *DB) syncLedger(ctx context.Context) error {
	l := db.ledger
	db.lmu.Lock()
	target := l.appended
	for l.indexed < target {
		if l.err != nil {
			err := l.err
			db.lmu.Unlock()
			return fmt.Errorf("the ledger index is failing: %w", err)
		}
		progress := l.progress
		db.lmu.Unlock()
		wake(l.now)
		select {
		case <-progress:
		case <-ctx.Done():
			return ctx.Err()
		}
		db.lmu.Lock()
	}
	db.lmu.Unlock()
	return nil
}

// SyncLedger waits until every ledger event appended so far is in the
// database's ledger tables. Reads through DB never need it; a program that
// reads the database file directly (a backup, an inspection with sqlite3)
// while mandate runs does.
func (db *DB) SyncLedger(ctx context.Context) error {
	if err := db.syncLedger(ctx); err != nil {
		return fmt.Errorf("sqlite: sync ledger: %w", err)
	}
	return nil
}

// indexLoop copies journaled batches into the tables until closeLedgerLog.
func (db *DB) indexLoop() {
	l := db.ledger
	defer close(l.done)
	for {
		select {
		case <-l.stop:
			db.indexPending()
			return
		case <-l.now:
		case <-l.soon:
			t := time.NewTimer(indexDelay)
			select {
			case <-t.C:
			case <-l.now:
				t.Stop()
			case <-l.stop:
				t.Stop()
				db.indexPending()
				return
			}
		}
		if !db.indexPending() {
			// Failed: try again later (readers get the error meanwhile).
			select {
			case <-time.After(indexRetry):
			case <-l.stop:
				db.indexPending()
				return
			}
			wake(l.now)
			continue
		}
		// Frames that came during the copy wait for the next round.
		db.lmu.Lock()
		more := len(l.pending) > 0
		db.lmu.Unlock()
		if more {
			wake(l.soon)
		}
	}
}

// indexPending copies the batches pending when it is called into the
// tables, indexBatch events at a time, then trims the journal. It reports
// whether it succeeded.
func (db *DB) indexPending() bool {
	l := db.ledger
	db.lmu.Lock()
	target := l.appended
	db.lmu.Unlock()
	for {
		db.lmu.Lock()
		var batches []*audit.Batch
		if l.indexed < target {
			batches = takeBatches(l.pending)
		}
		db.lmu.Unlock()
		if len(batches) == 0 {
			break
		}
		err := db.indexBatches(batches)
		db.lmu.Lock()
		if err != nil {
			l.err = err
			db.indexFailures.Inc()
		} else {
			l.err = nil
			l.indexedFirst(batches)
		}
		close(l.progress)
		l.progress = make(chan struct{})
		db.lmu.Unlock()
		if err != nil {
			return false
		}
	}
	return db.trimJournal() == nil
}

// indexedFirst records that batches, the first pending ones, are in the
// tables. The caller holds DB.lmu.
func (l *ledgerLog) indexedFirst(batches []*audit.Batch) {
	l.indexed = batches[len(batches)-1].Size
	for _, b := range batches {
		l.events -= len(b.Records)
	}
	l.pending = l.pending[len(batches):]
}

// takeBatches returns the first pending batches, up to indexBatch events
// (at least one batch).
func takeBatches(pending []*audit.Batch) []*audit.Batch {
	n, events := 0, 0
	for n < len(pending) && (n == 0 || events+len(pending[n].Records) <= indexBatch) {
		events += len(pending[n].Records)
		n++
	}
	return pending[:n:n]
}

// indexBatches copies batches, which follow one another, into the tables
// in one transaction.
func (db *DB) indexBatches(batches []*audit.Batch) error {
	if len(batches) == 1 {
		return db.appendLedgerTables(context.Background(), batches[0])
	}
	events, hashes := 0, 0
	for _, p := range batches {
		events += len(p.Records)
		hashes += len(p.Hashes)
	}
	first := batches[0]
	run := &audit.Batch{Records: make([]audit.Record, 0, events), Hashes: make([]tlog.Hash, 0, hashes),
		HashStart: first.HashStart, Size: first.Size - int64(len(first.Records))}
	for _, p := range batches {
		if err := mergeBatch(run, p); err != nil {
			return err
		}
	}
	return db.appendLedgerTables(context.Background(), run)
}

// trimJournal empties the journal if it is past its limit. Under steady
// load something is always pending, so it copies what is pending while
// holding appends back, and then empties it; it waits for a round that
// leaves at most one copy's worth pending, so that appends are held back
// no longer than one copy takes.
func (db *DB) trimJournal() error {
	db.lmu.Lock()
	defer db.lmu.Unlock()
	if l := db.ledger; l.j.size < l.limit || l.events > indexBatch {
		return nil
	}
	return db.drainJournal()
}

// drainJournal copies every pending frame into the tables and empties the
// journal. The caller holds lmu.
func (db *DB) drainJournal() error {
	l := db.ledger
	defer func() {
		close(l.progress)
		l.progress = make(chan struct{})
	}()
	for len(l.pending) > 0 {
		batches := takeBatches(l.pending)
		if err := db.indexBatches(batches); err != nil {
			l.err = err
			db.indexFailures.Inc()
			return err
		}
		l.indexedFirst(batches)
	}
	if err := l.j.reset(); err != nil {
		l.err = err
		return err
	}
	return nil
}

// mergeBatch appends b, which must directly follow into, to into.
func mergeBatch(into, b *audit.Batch) error {
	if b.Size-int64(len(b.Records)) != into.Size || b.HashStart != into.HashStart+int64(len(into.Hashes)) {
		return fmt.Errorf("ledger journal: a batch ending at event %d does not follow one ending at %d", b.Size, into.Size)
	}
	into.Records = append(into.Records, b.Records...)
	into.Hashes = append(into.Hashes, b.Hashes...)
	into.Size = b.Size
	return nil
}

// closeLedgerLog stops the indexer after it has copied everything pending
// and, if it could, empties the journal; then it releases the journal.
func (db *DB) closeLedgerLog() error {
	l := db.ledger
	if l == nil {
		return nil // Open failed before the journal was opened
	}
	close(l.stop)
	<-l.done
	db.lmu.Lock()
	defer db.lmu.Unlock()
	var errs []error
	if len(l.pending) == 0 {
		errs = append(errs, l.j.reset())
	} else {
		errs = append(errs, fmt.Errorf("ledger journal: %d events were not indexed; they will be on the next open: %w", l.events, l.err))
	}
	errs = append(errs, l.j.close())
	l.err = errors.New("the database is closed")
	close(l.progress)
	l.progress = make(chan struct{})
	return errors.Join(errs...)
}
