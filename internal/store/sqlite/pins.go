package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/toolpin"
)

var _ toolpin.Store = (*DB)(nil)

const pinColumns = `upstream, tool, digest, definition, pending_digest, pending_definition, pinned_at, updated_at, approved_by`

// GetPin implements toolpin.Store. It returns toolpin.ErrNotFound for an
// unknown tool.
func (db *DB) GetPin(ctx context.Context, upstream, tool string) (*toolpin.Pin, error) {
	var p *toolpin.Pin
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		p, err = scanPin(tx.QueryRowContext(ctx, `SELECT `+pinColumns+` FROM mcp_tool_pins WHERE upstream = ? AND tool = ?`, upstream, tool))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, toolpin.ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get tool pin: %w", err)
	}
	return p, nil
}

// PutPin implements toolpin.Store (an upsert). A pin without an approved
// definition (a rename awaiting approval) is stored with an empty
// definition and read back with a nil one.
func (db *DB) PutPin(ctx context.Context, p *toolpin.Pin) error {
	err := checkTimes(p.PinnedAt, p.UpdatedAt)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO mcp_tool_pins (`+pinColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (upstream, tool) DO UPDATE SET digest = excluded.digest, definition = excluded.definition,
				pending_digest = excluded.pending_digest, pending_definition = excluded.pending_definition,
				pinned_at = excluded.pinned_at, updated_at = excluded.updated_at, approved_by = excluded.approved_by`,
				p.Upstream, p.Tool, p.Digest, string(p.Definition), p.PendingDigest, nullString(string(p.PendingDefinition)),
				timeArg(p.PinnedAt), timeArg(p.UpdatedAt), p.ApprovedBy)
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: put tool pin: %w", err)
	}
	return nil
}

// ListPins implements toolpin.Store.
func (db *DB) ListPins(ctx context.Context) ([]*toolpin.Pin, error) {
	out := []*toolpin.Pin{}
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+pinColumns+` FROM mcp_tool_pins ORDER BY upstream, tool`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			p, err := scanPin(rows)
			if err != nil {
				return err
			}
			out = append(out, p)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tool pins: %w", err)
	}
	return out, nil
}

func scanPin(s scanner) (*toolpin.Pin, error) {
	var p toolpin.Pin
	var def string
	var pending sql.NullString
	var pinned, updated sql.NullInt64
	if err := s.Scan(&p.Upstream, &p.Tool, &p.Digest, &def, &p.PendingDigest, &pending, &pinned, &updated, &p.ApprovedBy); err != nil {
		return nil, err
	}
	// Absent definitions are nil, never empty: "no definition" is one
	// value for every caller (and every backend).
	if def != "" {
		p.Definition = []byte(def)
	}
	if pending.Valid && pending.String != "" {
		p.PendingDefinition = []byte(pending.String)
	}
	p.PinnedAt, p.UpdatedAt = timeVal(pinned), timeVal(updated)
	return &p, nil
}
