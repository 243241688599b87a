package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
)

var _ approval.Store = (*DB)(nil)

// maxApprovalList is ListApprovals' default (and cap when Limit is 0).
const maxApprovalList = 1000

// CreateApproval implements approval.Store.
func (db *DB) CreateApproval(ctx context.Context, r *approval.Request) error {
	doc, err := approvalDoc(r)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO approval_requests (id, task_id, agent_id, agent_owner, status, used, created_at, doc, arguments)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				string(r.ID), string(r.Task), r.Agent, r.AgentOwner, string(r.Status), boolInt(r.Used), timeArg(r.CreatedAt), doc, nonNil(r.Arguments))
			return err
		})
	}
	if isUnique(err) {
		return fmt.Errorf("%w: %s", approval.ErrExists, r.ID)
	}
	if err != nil {
		return fmt.Errorf("sqlite: create approval request: %w", err)
	}
	return nil
}

// GetApproval implements approval.Store.
func (db *DB) GetApproval(ctx context.Context, id approval.ID) (*approval.Request, error) {
	var r *approval.Request
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		r, err = scanApproval(tx.QueryRowContext(ctx, `SELECT doc, arguments, status, used FROM approval_requests WHERE id = ?`, string(id)))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", approval.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get approval request: %w", err)
	}
	return r, nil
}

// UpdateApproval implements approval.Store.
func (db *DB) UpdateApproval(ctx context.Context, r *approval.Request, from approval.Status) error {
	var cur *approval.Request
	err := db.write(ctx, func(tx *sql.Tx) error {
		var err error
		cur, err = scanApproval(tx.QueryRowContext(ctx, `SELECT doc, arguments, status, used FROM approval_requests WHERE id = ?`, string(r.ID)))
		if err != nil {
			return err
		}
		if cur.Status != from {
			return approval.ErrConflict
		}
		// Only what a decision changes; the request itself is fixed.
		cur.Status, cur.Decider, cur.DecidedAt, cur.Reason = r.Status, r.Decider, r.DecidedAt, r.Reason
		cur.Reach, cur.ApprovedUntil, cur.Escalated, cur.Callback = r.Reach, r.ApprovedUntil, r.Escalated, r.Callback
		doc, err := approvalDoc(cur)
		if err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `UPDATE approval_requests SET status = ?, doc = ? WHERE id = ?`, string(cur.Status), doc, string(r.ID))
		return err
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %s", approval.ErrNotFound, r.ID)
	case errors.Is(err, approval.ErrConflict):
		return fmt.Errorf("%w: %s is %s, not %s", approval.ErrConflict, r.ID, cur.Status, from)
	case err != nil:
		return fmt.Errorf("sqlite: update approval request: %w", err)
	}
	return nil
}

// UseApproval implements approval.Store.
func (db *DB) UseApproval(ctx context.Context, id approval.ID, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		cur, err := scanApproval(tx.QueryRowContext(ctx, `SELECT doc, arguments, status, used FROM approval_requests WHERE id = ?`, string(id)))
		if err != nil {
			return err
		}
		if cur.Status != approval.StatusApproved || cur.Used {
			return approval.ErrConflict
		}
		cur.Used, cur.UsedAt = true, at.UTC()
		doc, err := approvalDoc(cur)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, `UPDATE approval_requests SET used = 1, doc = ? WHERE id = ? AND status = 'approved' AND used = 0`, doc, string(id))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n != 1 {
			return approval.ErrConflict
		}
		return nil
	})
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: %s", approval.ErrNotFound, id)
	case errors.Is(err, approval.ErrConflict):
		return fmt.Errorf("%w: %s is not an unused approval", approval.ErrConflict, id)
	case err != nil:
		return fmt.Errorf("sqlite: use approval: %w", err)
	}
	return nil
}

// ListApprovals implements approval.Store.
func (db *DB) ListApprovals(ctx context.Context, f approval.Filter) ([]*approval.Request, error) {
	var where []string
	var args []any
	for _, c := range []struct{ col, v string }{
		{"status", string(f.Status)}, {"task_id", string(f.Task)}, {"agent_id", f.Agent}, {"agent_owner", f.AgentOwner},
	} {
		if c.v != "" {
			where = append(where, c.col+" = ?")
			args = append(args, c.v)
		}
	}
	q := `SELECT doc, arguments, status, used FROM approval_requests`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	limit := f.Limit
	if limit <= 0 {
		limit = maxApprovalList
	}
	q += ` ORDER BY created_at DESC, id DESC LIMIT ?`
	args = append(args, limit)
	out := []*approval.Request{}
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanApproval(rows)
			if err != nil {
				return err
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list approval requests: %w", err)
	}
	return out, nil
}

// approvalDoc is the JSON of r (its arguments are a column of their own).
func approvalDoc(r *approval.Request) (string, error) {
	if err := checkTimes(r.CreatedAt, r.ExpiresAt, r.DecidedAt, r.ApprovedUntil, r.UsedAt, r.TaskExpiresAt); err != nil {
		return "", err
	}
	b, err := json.Marshal(r)
	return string(b), err
}

func scanApproval(s scanner) (*approval.Request, error) {
	var doc, status string
	var args []byte
	var used int
	if err := s.Scan(&doc, &args, &status, &used); err != nil {
		return nil, err
	}
	var r approval.Request
	if err := json.Unmarshal([]byte(doc), &r); err != nil {
		return nil, fmt.Errorf("approval request document: %w", err)
	}
	r.Arguments, r.Status, r.Used = args, approval.Status(status), used == 1
	for _, t := range []*time.Time{&r.CreatedAt, &r.ExpiresAt, &r.DecidedAt, &r.ApprovedUntil, &r.UsedAt, &r.TaskExpiresAt} {
		if !t.IsZero() {
			*t = t.UTC()
		}
	}
	return &r, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}
