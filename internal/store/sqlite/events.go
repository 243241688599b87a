package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
)

var _ audit.Store = (*DB)(nil)

// Events are inserted with multi-row INSERT statements of these sizes
// (largest first): one statement per 64 events costs far less than 64,
// and with every power of two a batch of n < 64 events takes one
// statement per bit set in n.
var eventChunks = []int{64, 32, 16, 8, 4, 2, 1}

const eventInsertColumns = 7

// qInsertEvents[i] inserts eventChunks[i] events.
var qInsertEvents = func() []string {
	qs := make([]string, len(eventChunks))
	for i, rows := range eventChunks {
		qs[i] = `INSERT INTO events (seq, time, type, agent, task, decision, data) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?), ", rows), ", ")
	}
	return qs
}()

const (
	// The stored size is that of the last row: rows are appended with
	// start and size growing together.
	qLedgerSize   = `SELECT coalesce((SELECT size FROM ledger_hashes ORDER BY start DESC LIMIT 1), 0)`
	qInsertHashes = `INSERT INTO ledger_hashes (start, size, hashes) VALUES (?, ?, ?)`
)

func ledgerWriterQueries() []string {
	return append([]string{qLedgerSize, qInsertHashes}, qInsertEvents...)
}

// AppendLedger implements audit.Store. The batch is durable in the ledger
// journal when it returns, and in the ledger tables soon after (see
// ledgerindex.go).
func (db *DB) AppendLedger(ctx context.Context, b *audit.Batch) error {
	if len(b.Records) == 0 {
		return nil
	}
	for i, r := range b.Records {
		if err := checkTimes(r.Time); err != nil {
			return fmt.Errorf("sqlite: append ledger: event %d: %w: %w", r.Seq, audit.ErrInvalid, err)
		}
		if want := b.Size - int64(len(b.Records)) + int64(i) + 1; r.Seq != want {
			return fmt.Errorf("sqlite: append ledger: record %d has seq %d, want %d", i, r.Seq, want)
		}
	}
	if len(b.Hashes) == 0 {
		return errors.New("sqlite: append ledger: no tree hashes")
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("sqlite: append ledger: %w", err)
	}
	if err := db.appendLedger(ctx, b); err != nil {
		return fmt.Errorf("sqlite: append ledger: %w", err)
	}
	return nil
}

// tableLedgerSize returns the ledger's size in its tables.
func (db *DB) tableLedgerSize(ctx context.Context) (int64, error) {
	var size int64
	if err := db.writeStmt(qLedgerSize).QueryRowContext(ctx).Scan(&size); err != nil {
		return 0, fmt.Errorf("sqlite: ledger size: %w", err)
	}
	return size, nil
}

// appendLedgerTables writes b into the ledger tables in one transaction.
func (db *DB) appendLedgerTables(ctx context.Context, b *audit.Batch) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		var size int64
		if err := db.txStmt(ctx, tx, qLedgerSize).QueryRowContext(ctx).Scan(&size); err != nil {
			return err
		}
		if before := b.Size - int64(len(b.Records)); size != before {
			return fmt.Errorf("%w: the ledger has %d events, the batch starts after %d", audit.ErrConflict, size, before)
		}
		recs := b.Records
		args := make([]any, 0, min(len(recs), eventChunks[0])*eventInsertColumns)
		for len(recs) > 0 {
			c := 0
			for eventChunks[c] > len(recs) {
				c++
			}
			n := eventChunks[c]
			args = args[:0]
			for _, r := range recs[:n] {
				args = append(args, r.Seq, r.Time.UnixNano(), string(r.Type), r.Agent, r.Task, r.Decision, r.Data)
			}
			if _, err := db.txStmt(ctx, tx, qInsertEvents[c]).ExecContext(ctx, args...); err != nil {
				if isUnique(err) {
					return fmt.Errorf("%w: %v", audit.ErrConflict, err)
				}
				return err
			}
			recs = recs[n:]
		}
		blob := make([]byte, 0, len(b.Hashes)*tlog.HashSize)
		for _, h := range b.Hashes {
			blob = append(blob, h[:]...)
		}
		if _, err := db.txStmt(ctx, tx, qInsertHashes).ExecContext(ctx, b.HashStart, b.Size, blob); err != nil {
			if isUnique(err) {
				return fmt.Errorf("%w: %v", audit.ErrConflict, err)
			}
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: index ledger: %w", err)
	}
	return nil
}

// LedgerState implements audit.Store.
func (db *DB) LedgerState(ctx context.Context) (audit.State, error) {
	var st audit.State
	if err := db.syncLedger(ctx); err != nil {
		return st, fmt.Errorf("sqlite: ledger state: %w", err)
	}
	err := db.reader.QueryRowContext(ctx, `SELECT
		coalesce((SELECT size FROM ledger_hashes ORDER BY start DESC LIMIT 1), 0),
		coalesce((SELECT pruned_through FROM ledger_retention WHERE id = 1), 0)`).Scan(&st.Size, &st.PrunedThrough)
	if err != nil {
		return st, fmt.Errorf("sqlite: ledger state: %w", err)
	}
	return st, nil
}

// ReadHashes implements audit.Store.
func (db *DB) ReadHashes(ctx context.Context, start, end int64) ([]tlog.Hash, error) {
	if start < 0 || end < start {
		return nil, fmt.Errorf("sqlite: read hashes: %w: range [%d, %d)", audit.ErrInvalid, start, end)
	}
	if start == end {
		return nil, nil
	}
	if err := db.syncLedger(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: read hashes: %w", err)
	}
	out, err := tableHashes(ctx, db.reader, start, end)
	if err != nil {
		return nil, fmt.Errorf("sqlite: read hashes: %w", err)
	}
	return out, nil
}

// tableHashes reads the stored hashes with indexes start <= i < end from
// the ledger_hashes table through conn (one statement: one snapshot).
func tableHashes(ctx context.Context, conn *sql.DB, start, end int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, 0, end-start)
	rows, err := conn.QueryContext(ctx, `SELECT start, hashes FROM ledger_hashes
		WHERE start >= coalesce((SELECT max(start) FROM ledger_hashes WHERE start <= ?), 0) AND start < ?
		ORDER BY start`, start, end)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	next := start
	for rows.Next() {
		var rs int64
		var blob []byte
		if err := rows.Scan(&rs, &blob); err != nil {
			return nil, err
		}
		if len(blob)%tlog.HashSize != 0 {
			return nil, fmt.Errorf("stored hashes at %d are %d bytes, not a multiple of %d", rs, len(blob), tlog.HashSize)
		}
		for i := int64(0); i < int64(len(blob)/tlog.HashSize); i++ {
			if idx := rs + i; idx == next && idx < end {
				out = append(out, tlog.Hash(blob[i*tlog.HashSize:(i+1)*tlog.HashSize]))
				next++
			}
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if next != end {
		return nil, fmt.Errorf("%w: tree hash %d", audit.ErrNotFound, next)
	}
	return out, nil
}

// ListEvents implements audit.Store. Since is inclusive and Until
// exclusive: an event matches if Since <= Time < Until.
func (db *DB) ListEvents(ctx context.Context, q audit.Query) ([]*audit.Event, error) {
	evs, err := db.listEvents(ctx, q)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list events: %w", err)
	}
	return evs, nil
}

func (db *DB) listEvents(ctx context.Context, q audit.Query) ([]*audit.Event, error) {
	if err := checkTimes(q.Since, q.Until); err != nil {
		return nil, fmt.Errorf("%w: %v", audit.ErrInvalid, err)
	}
	if err := db.syncLedger(ctx); err != nil {
		return nil, err
	}
	var where []string
	var args []any
	switch q.Decision {
	// Literals, so that the planner can use the partial index
	// events_flagged (it cannot prove a bound parameter matches its WHERE).
	case audit.DecisionDeny:
		where = append(where, "decision = 'deny'")
	case audit.DecisionApprovalRequired:
		where = append(where, "decision = 'approval_required'")
	case "":
	default:
		where, args = append(where, "decision = ?"), append(args, q.Decision)
	}
	for _, f := range []struct{ col, val string }{
		{"type", string(q.Type)}, {"agent", q.Agent}, {"task", q.Task},
	} {
		if f.val != "" {
			where, args = append(where, f.col+" = ?"), append(args, f.val)
		}
	}
	if q.AfterSeq > 0 {
		where, args = append(where, "seq > ?"), append(args, q.AfterSeq)
	}
	if !q.Since.IsZero() {
		where, args = append(where, "time >= ?"), append(args, q.Since.UnixNano())
	}
	if !q.Until.IsZero() {
		where, args = append(where, "time < ?"), append(args, q.Until.UnixNano())
	}
	query := `SELECT seq, data FROM events`
	if len(where) > 0 {
		query += ` WHERE ` + strings.Join(where, " AND ")
	}
	if q.Last {
		query += ` ORDER BY seq DESC`
	} else {
		query += ` ORDER BY seq`
	}
	if q.Limit > 0 {
		query += ` LIMIT ?`
		args = append(args, q.Limit)
	}
	rows, err := db.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var evs []*audit.Event
	for rows.Next() {
		var seq int64
		var data []byte
		if err := rows.Scan(&seq, &data); err != nil {
			return nil, err
		}
		// Lenient decoding: a tampered row still lists; audit verify
		// reports it.
		var ev audit.Event
		if err := json.Unmarshal(data, &ev); err != nil {
			return nil, fmt.Errorf("stored event %d: %w", seq, err)
		}
		ev.Time = ev.Time.UTC()
		evs = append(evs, &ev)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if q.Last {
		slices.Reverse(evs)
	}
	return evs, nil
}

// ScanRecords implements audit.Store.
func (db *DB) ScanRecords(ctx context.Context, afterSeq int64, limit int) ([]audit.Record, error) {
	if limit <= 0 {
		limit = 1000
	}
	if err := db.syncLedger(ctx); err != nil {
		return nil, fmt.Errorf("sqlite: scan records: %w", err)
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT seq, time, type, agent, task, decision, data
		FROM events WHERE seq > ? ORDER BY seq LIMIT ?`, afterSeq, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: scan records: %w", err)
	}
	defer rows.Close()
	var out []audit.Record
	for rows.Next() {
		var r audit.Record
		var when int64
		var typ string
		if err := rows.Scan(&r.Seq, &when, &typ, &r.Agent, &r.Task, &r.Decision, &r.Data); err != nil {
			return nil, fmt.Errorf("sqlite: scan records: %w", err)
		}
		r.Time, r.Type = time.Unix(0, when).UTC(), audit.Type(typ)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: scan records: %w", err)
	}
	return out, nil
}

// AddCheckpoint implements audit.Store.
func (db *DB) AddCheckpoint(ctx context.Context, c audit.StoredCheckpoint) error {
	if err := checkTimes(c.Time); err != nil {
		return fmt.Errorf("sqlite: add checkpoint: %w: %v", audit.ErrInvalid, err)
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO ledger_checkpoints (size, time, note) VALUES (?, ?, ?)
			ON CONFLICT (size) DO NOTHING`, c.Size, c.Time.UnixNano(), c.Note)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: add checkpoint: %w", err)
	}
	return nil
}

// Checkpoints implements audit.Store.
func (db *DB) Checkpoints(ctx context.Context, limit int) ([]audit.StoredCheckpoint, error) {
	query := `SELECT size, time, note FROM ledger_checkpoints ORDER BY size DESC`
	var args []any
	if limit > 0 {
		query += ` LIMIT ?`
		args = append(args, limit)
	}
	rows, err := db.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
	}
	defer rows.Close()
	var out []audit.StoredCheckpoint
	for rows.Next() {
		var c audit.StoredCheckpoint
		var when int64
		if err := rows.Scan(&c.Size, &when, &c.Note); err != nil {
			return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
		}
		c.Time = time.Unix(0, when).UTC()
		out = append(out, c)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: checkpoints: %w", err)
	}
	slices.Reverse(out)
	return out, nil
}

// PruneEvents implements audit.Store.
func (db *DB) PruneEvents(ctx context.Context, through int64) (int64, error) {
	if err := db.syncLedger(ctx); err != nil {
		return 0, fmt.Errorf("sqlite: prune events: %w", err)
	}
	var n int64
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM events WHERE seq <= ?`, through)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ledger_retention (id, pruned_through) VALUES (1, ?)
			ON CONFLICT (id) DO UPDATE SET pruned_through = max(pruned_through, excluded.pruned_through)`, through)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: prune events: %w", err)
	}
	return n, nil
}

// LedgerKey implements audit.Store.
func (db *DB) LedgerKey(ctx context.Context, name string, generate func() ([]byte, error)) ([]byte, error) {
	var key []byte
	err := db.write(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT key FROM ledger_keys WHERE name = ?`, name).Scan(&key)
		if err == nil || !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		if key, err = generate(); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO ledger_keys (name, key, created_at) VALUES (?, ?, ?)`, name, key, db.now().UnixNano())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: ledger key %q: %w", name, err)
	}
	return key, nil
}
