package audit

import (
	"context"
	"errors"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// Query selects events in Store.ListEvents. Zero fields match everything.
type Query struct {
	Type     Type
	Agent    string
	Task     string
	Decision string
	// AfterSeq selects events with Seq > AfterSeq.
	AfterSeq int64
	// Since is inclusive and Until exclusive: Since <= Time < Until.
	Since time.Time
	Until time.Time
	// Limit caps the number of events returned; zero means no limit.
	Limit int
	// Last returns the last Limit matching events instead of the first
	// (still in sequence order).
	Last bool
}

// Record is an event as the ledger stores it: its canonical serialization
// (the Merkle leaf) and the fields stores index for queries.
type Record struct {
	Seq      int64
	Time     time.Time
	Type     Type
	Agent    string
	Task     string
	Decision string
	// Data is Canonical(event): the exact bytes whose hash is the leaf.
	Data []byte
}

// Batch is one group commit: events appended together with the Merkle
// tree hashes they add.
type Batch struct {
	// Records are the new events, with consecutive Seq values starting at
	// the ledger's current size plus one.
	Records []Record
	// HashStart is the stored-hash index of Hashes[0]:
	// tlog.StoredHashCount(size before the batch).
	HashStart int64
	// Hashes are the tree hashes tlog.StoredHashes computes for the
	// records, in index order.
	Hashes []tlog.Hash
	// Size is the tree size after the batch.
	Size int64
}

// State is the shape of a stored ledger.
type State struct {
	// Size is the number of leaves in the tree (the last Seq appended).
	Size int64
	// PrunedThrough is the last Seq deleted by retention; events up to it
	// are gone but their tree hashes remain.
	PrunedThrough int64
}

// StoredCheckpoint is a signed checkpoint as stored.
type StoredCheckpoint struct {
	Size int64
	Time time.Time
	// Note is the signed note text (C2SP checkpoint plus signature lines).
	Note []byte
}

// ErrConflict is returned by Store.AppendLedger when the batch does not
// start at the stored ledger's size (another writer appended first).
var ErrConflict = errors.New("audit ledger was appended to concurrently")

// Store persists the ledger: events, the Merkle tree's stored hashes,
// signed checkpoints and the ledger's keys. Implementations are safe for
// concurrent use; the Ledger serializes appends itself.
type Store interface {
	// AppendLedger durably appends b's records and hashes in one
	// transaction. It returns an error wrapping ErrConflict if b does not
	// start at the stored size (a seq or hash index is already taken);
	// then nothing is written. The store may keep b and what it refers to
	// after returning (to index it later): the caller must not change
	// them.
	AppendLedger(ctx context.Context, b *Batch) error
	// LedgerState returns the stored tree size and retention watermark.
	LedgerState(ctx context.Context) (State, error)
	// ReadHashes returns the stored hashes with indexes start <= i < end.
	// It returns an error wrapping ErrNotFound if any is missing.
	ReadHashes(ctx context.Context, start, end int64) ([]tlog.Hash, error)
	// ListEvents returns the events matching q in sequence order, decoded
	// from their stored canonical form. It returns an error wrapping
	// ErrInvalid for a query it cannot run (such as an unrepresentable
	// time).
	ListEvents(ctx context.Context, q Query) ([]*Event, error)
	// ScanRecords returns up to limit stored records with Seq > afterSeq,
	// in sequence order, exactly as stored (including records that are not
	// part of the tree, so that verification can report them).
	ScanRecords(ctx context.Context, afterSeq int64, limit int) ([]Record, error)
	// AddCheckpoint stores a signed checkpoint. Storing a second
	// checkpoint of the same size keeps the first and returns nil.
	AddCheckpoint(ctx context.Context, c StoredCheckpoint) error
	// Checkpoints returns the stored checkpoints by increasing size: all
	// of them, or with limit > 0 only the latest limit.
	Checkpoints(ctx context.Context, limit int) ([]StoredCheckpoint, error)
	// PruneEvents deletes the events with Seq <= through, keeping their
	// tree hashes, and records through as the retention watermark. It
	// returns the number of events deleted.
	PruneEvents(ctx context.Context, through int64) (int64, error)
	// LedgerKey returns the ledger key stored under name, storing the
	// result of generate first if there is none. Concurrent callers get
	// the same key.
	LedgerKey(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error)
	// ReplaceLedgerKey replaces the ledger key stored under name with key,
	// provided it is still old (compare and swap); it returns
	// ErrLedgerKeyChanged if the key is gone or holds something else. The
	// old value must not linger in the store's files.
	ReplaceLedgerKey(ctx context.Context, name string, old, key []byte) error
}
