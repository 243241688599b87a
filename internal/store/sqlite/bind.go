package sqlite

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// SQLite's write-ahead log names no database file: a -wal left by a crash
// is replayed into whatever database file is at the path when it is next
// opened. Copy an older backup over the database after a crash, leaving
// the -wal beside it, and SQLite would lay the newer pages of one over the
// older pages of the other.
//
// So every open binds the database file to its ledger journal: it writes
// a random number into the database header (user_version, which the
// schema does not otherwise use), folds the -wal into the database file
// (so that the number is in the file itself, not only in the log), and
// writes the same number as the journal's first frame. An open that finds
// a -wal holding frames checks, before SQLite reads anything, that the
// database file's number is the journal's: a -wal and journal written
// with another database file are refused (ErrWALMismatch). A journal
// without a binding (written by an older mandate, or lost) is not asked.

// ErrWALMismatch is returned by Open when the database's -wal holds
// frames written with another database file: the database file was
// replaced (by a backup, by another store) after a crash left the -wal.
var ErrWALMismatch = errors.New("sqlite: the write-ahead log beside the database was written with another database file")

// dbHeaderSize is the size of the SQLite database header, whose
// user_version is the big-endian u32 at offset userVersionOffset.
const (
	dbHeaderSize      = 100
	userVersionOffset = 60
)

// checkWALBinding refuses a -wal with frames beside a database file that
// is not bound to the ledger journal (see ErrWALMismatch).
func checkWALBinding(path string) error {
	st, err := os.Stat(path + "-wal")
	if err != nil || st.Size() <= walHeaderSize {
		return nil // no log to replay (or Open reports the error itself)
	}
	journalID, err := journalBinding(path + journalSuffix)
	if err != nil || journalID == 0 {
		return err
	}
	dbID, err := fileBinding(path)
	if err != nil {
		return err
	}
	if dbID != journalID {
		return fmt.Errorf("%w: %s holds %d bytes of log that a crashed mandate left, but %s is not the database file it wrote "+
			"(its ledger journal %s is bound to %08x, the database to %08x): the database was replaced or restored after the crash. "+
			"Put back the database that was there, or restore a backup as a whole: stop, move mandate.db-wal, -shm and -ledger aside, "+
			"then copy the backup in (see docs/operations.md)",
			ErrWALMismatch, path+"-wal", st.Size(), path, path+journalSuffix, journalID, dbID)
	}
	return nil
}

// journalBinding returns the number of the journal's binding frame, 0 if
// the journal does not begin with one (or does not exist).
func journalBinding(path string) (uint32, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: open: %w", err)
	}
	defer f.Close()
	var hdr [frameHeader]byte
	payload, err := readFrame(io.LimitReader(f, frameHeader+64), hdr[:])
	if errors.Is(err, errTornFrame) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("sqlite: open: ledger journal: %w", err)
	}
	id, _ := decodeBinding(payload)
	return id, nil
}

// fileBinding reads the user_version from the database file's own header.
func fileBinding(path string) (uint32, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("sqlite: open: %w", err)
	}
	defer f.Close()
	var hdr [dbHeaderSize]byte
	if _, err := io.ReadFull(f, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return 0, nil // a new file, all of it still in the log
		}
		return 0, fmt.Errorf("sqlite: open: %w", err)
	}
	return binary.BigEndian.Uint32(hdr[userVersionOffset:]), nil
}

// bind gives the open database a new binding (see above): the number in
// its header, folded into the file, then the journal's first frame. If
// the -wal cannot be folded in now (a reader in another process holds
// it), the journal is left without a binding: the background checkpoint
// will fold the new number into the file later, and a journal still
// naming the old one would refuse the database's own -wal after a crash.
func (db *DB) bind(ctx context.Context) error {
	var b [4]byte
	var id uint32
	for id == 0 {
		_, _ = rand.Read(b[:])
		id = binary.BigEndian.Uint32(b[:])
	}
	// user_version takes no bound parameters; id is a number.
	if _, err := db.writer.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", int32(id))); err != nil {
		return fmt.Errorf("sqlite: open: bind: %w", err)
	}
	var busy, logged, copied int64
	if err := db.writer.QueryRowContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`).Scan(&busy, &logged, &copied); err != nil {
		return fmt.Errorf("sqlite: open: bind: %w", err)
	}
	if busy != 0 {
		id = 0
	}
	db.lmu.Lock()
	defer db.lmu.Unlock()
	j := db.ledger.j
	j.binding = id
	if err := j.reset(); err != nil {
		return fmt.Errorf("sqlite: open: bind: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("sqlite: open: bind: ledger journal: %w", err)
	}
	return nil
}
