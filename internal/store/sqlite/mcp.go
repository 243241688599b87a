package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
)

var _ mcpproxy.PinStore = (*DB)(nil)

// GetPin implements mcpproxy.PinStore. It returns mcpproxy.ErrPinNotFound
// for an unknown tool.
func (db *DB) GetPin(ctx context.Context, upstream, tool string) (*mcpproxy.Pin, error) {
	row := db.reader.QueryRowContext(ctx, `SELECT upstream, tool, digest, definition, pending_digest, pending_definition,
		pinned_at, updated_at, approved_by FROM mcp_tool_pins WHERE upstream = ? AND tool = ?`, upstream, tool)
	p, err := scanPin(row)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, mcpproxy.ErrPinNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get tool pin: %w", err)
	}
	return p, nil
}

// PutPin implements mcpproxy.PinStore (an upsert).
func (db *DB) PutPin(ctx context.Context, p *mcpproxy.Pin) error {
	err := checkTimes(p.PinnedAt, p.UpdatedAt)
	if err == nil {
		var pending any
		if len(p.PendingDefinition) > 0 {
			pending = string(p.PendingDefinition)
		}
		_, err = db.writer.ExecContext(ctx, `INSERT INTO mcp_tool_pins (upstream, tool, digest, definition, pending_digest,
			pending_definition, pinned_at, updated_at, approved_by) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (upstream, tool) DO UPDATE SET digest = excluded.digest, definition = excluded.definition,
			pending_digest = excluded.pending_digest, pending_definition = excluded.pending_definition,
			pinned_at = excluded.pinned_at, updated_at = excluded.updated_at, approved_by = excluded.approved_by`,
			p.Upstream, p.Tool, p.Digest, string(p.Definition), p.PendingDigest, pending,
			timeArg(p.PinnedAt), timeArg(p.UpdatedAt), p.ApprovedBy)
	}
	if err != nil {
		return fmt.Errorf("sqlite: put tool pin: %w", err)
	}
	return nil
}

// ListPins implements mcpproxy.PinStore.
func (db *DB) ListPins(ctx context.Context) ([]*mcpproxy.Pin, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT upstream, tool, digest, definition, pending_digest, pending_definition,
		pinned_at, updated_at, approved_by FROM mcp_tool_pins ORDER BY upstream, tool`)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tool pins: %w", err)
	}
	defer rows.Close()
	out := []*mcpproxy.Pin{}
	for rows.Next() {
		p, err := scanPin(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list tool pins: %w", err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list tool pins: %w", err)
	}
	return out, nil
}

func scanPin(s scanner) (*mcpproxy.Pin, error) {
	var p mcpproxy.Pin
	var def string
	var pending sql.NullString
	var pinned, updated sql.NullInt64
	if err := s.Scan(&p.Upstream, &p.Tool, &p.Digest, &def, &p.PendingDigest, &pending, &pinned, &updated, &p.ApprovedBy); err != nil {
		return nil, err
	}
	p.Definition = []byte(def)
	if pending.Valid {
		p.PendingDefinition = []byte(pending.String)
	}
	p.PinnedAt, p.UpdatedAt = timeVal(pinned), timeVal(updated)
	return &p, nil
}
