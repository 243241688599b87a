package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

var _ task.Store = (*DB)(nil)

const taskColumns = `id, agent_id, on_behalf_of, principal, purpose, scope, sensitivity,
	max_actions, max_writes, used_actions, used_writes, parent_id, depth, actors,
	status, status_reason, created_at, expires_at, ended_at, taint`

const (
	qTaskStatus = `SELECT status FROM tasks WHERE id = ?`
	// qParentTaint and qAgentTaint read what a new task inherits.
	qParentTaint = `SELECT status, taint FROM tasks WHERE id = ?`
	qAgentTaint  = `SELECT taint, taint_until FROM agents WHERE id = ?`
	qInsertTask  = `INSERT INTO tasks (` + taskColumns + `)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qGetTask = `SELECT ` + taskColumns + ` FROM tasks WHERE id = ?`
)

// CreateTask implements task.Store. Besides the errors task.Store
// documents, it returns identity.ErrNotFound if the task's agent is not
// registered and task.ErrNotFound if its parent does not exist.
func (db *DB) CreateTask(ctx context.Context, t *task.Task) error {
	if err := db.createTask(ctx, t); err != nil {
		return fmt.Errorf("sqlite: create task: %w", err)
	}
	return nil
}

func (db *DB) createTask(ctx context.Context, t *task.Task) error {
	if t == nil || t.ID == "" || t.Agent.IsZero() {
		return fmt.Errorf("%w: id and agent are required", task.ErrInvalid)
	}
	if err := checkTimes(t.CreatedAt, t.ExpiresAt, t.EndedAt); err != nil {
		return fmt.Errorf("%w: %v", task.ErrInvalid, err)
	}
	if t.ExpiresAt.IsZero() {
		return fmt.Errorf("%w: expires_at is required", task.ErrInvalid)
	}
	scope, err := json.Marshal(t.Scope)
	if err != nil {
		return fmt.Errorf("%w: scope: %v", task.ErrInvalid, err)
	}
	var actors string
	if len(t.Actors) > 0 {
		b, err := json.Marshal(t.Actors)
		if err != nil {
			return fmt.Errorf("%w: actors: %v", task.ErrInvalid, err)
		}
		actors = string(b)
	}
	if t.Taint != "" {
		if _, err := task.ParseSensitivity(string(t.Taint)); err != nil {
			return fmt.Errorf("taint: %w", err)
		}
	}
	var parent any
	if t.Parent != "" {
		parent = string(t.Parent)
	}
	var taint task.Sensitivity
	err = db.write(ctx, func(tx *sql.Tx) error {
		taint = t.Taint
		if t.Parent != "" {
			var status, ptaint string
			err := db.txStmt(ctx, tx, qParentTaint).QueryRowContext(ctx, string(t.Parent)).Scan(&status, &ptaint)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: parent %s", task.ErrNotFound, t.Parent)
			}
			if err != nil {
				return err
			}
			if task.Status(status) != task.StatusActive {
				return fmt.Errorf("%w: parent %s is %s", task.ErrNotActive, t.Parent, status)
			}
			taint = higherTaint(taint, task.Sensitivity(ptaint))
		}
		var ataint string
		var until sql.NullInt64
		err := db.txStmt(ctx, tx, qAgentTaint).QueryRowContext(ctx, t.Agent.String()).Scan(&ataint, &until)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", identity.ErrNotFound, t.Agent)
		}
		if err != nil {
			return err
		}
		if ag := (identity.Agent{Taint: ataint, TaintUntil: timeVal(until)}); ag.TaintAt(t.CreatedAt) != "" {
			taint = higherTaint(taint, task.Sensitivity(ataint))
		}
		_, err = db.txStmt(ctx, tx, qInsertTask).ExecContext(ctx,
			string(t.ID), t.Agent.String(), t.OnBehalfOf, t.Principal, t.Purpose, string(scope), string(t.Sensitivity),
			t.Budget.MaxActions, t.Budget.MaxWrites, t.Used.Actions, t.Used.Writes, parent, t.Depth, nullString(actors),
			string(t.Status), t.StatusReason, timeArg(t.CreatedAt), timeArg(t.ExpiresAt), timeArg(t.EndedAt), string(taint))
		if isUnique(err) {
			return fmt.Errorf("%w: %s", task.ErrExists, t.ID)
		}
		return err
	})
	if err == nil {
		t.Taint = taint
	}
	return err
}

// higherTaint returns the more sensitive of two taints; none ("") ranks
// below public.
func higherTaint(a, b task.Sensitivity) task.Sensitivity {
	if taintRank(b) > taintRank(a) {
		return b
	}
	return a
}

func taintRank(s task.Sensitivity) int {
	if s == "" {
		return -1
	}
	return s.Rank()
}

// taintRankSQL ranks a taint column as taintRank does (an unknown value,
// which the column's CHECK excludes, ranks above all, so it is never
// overwritten).
func taintRankSQL(col string) string {
	return `(CASE ` + col + ` WHEN '' THEN -1 WHEN 'public' THEN 0 WHEN 'internal' THEN 1
		WHEN 'confidential' THEN 2 WHEN 'restricted' THEN 3 ELSE 4 END)`
}

// ancestorsCTE selects, as "up", the task in its placeholder and every
// task it was delegated from.
const ancestorsCTE = `WITH RECURSIVE up (id) AS (
	SELECT ?
	UNION
	SELECT t.parent_id FROM tasks t JOIN up ON t.id = up.id WHERE t.parent_id IS NOT NULL
)`

var (
	qRaiseTaskTaint = ancestorsCTE + `
		UPDATE tasks SET taint = ? WHERE id IN (SELECT id FROM up) AND ` + taintRankSQL("taint") + ` < ?`
	// An agent's taint in force at the time (taint_until after it) is
	// kept if it ranks higher; otherwise it is replaced. The window only
	// grows. SET expressions all see the row as it was.
	qRaiseAgentTaint = ancestorsCTE + `
		UPDATE agents SET
			taint = CASE WHEN coalesce(taint_until, 0) > ? AND ` + taintRankSQL("taint") + ` >= ? THEN taint ELSE ? END,
			taint_until = max(coalesce(taint_until, 0), ?)
		WHERE id IN (SELECT agent_id FROM tasks WHERE id IN (SELECT id FROM up))`
)

// RaiseTaint implements task.Store.
func (db *DB) RaiseTaint(ctx context.Context, id task.ID, level task.Sensitivity, at, until time.Time) error {
	if err := db.raiseTaint(ctx, id, level, at, until); err != nil {
		return fmt.Errorf("sqlite: raise taint: %w", err)
	}
	return nil
}

func (db *DB) raiseTaint(ctx context.Context, id task.ID, level task.Sensitivity, at, until time.Time) error {
	if _, err := task.ParseSensitivity(string(level)); err != nil {
		return err
	}
	if err := checkTimes(at, until); err != nil {
		return fmt.Errorf("%w: %v", task.ErrInvalid, err)
	}
	if at.IsZero() || !until.After(at) {
		return fmt.Errorf("%w: the taint window must end after it starts", task.ErrInvalid)
	}
	rank := taintRank(level)
	return db.write(ctx, func(tx *sql.Tx) error {
		var status string
		err := db.txStmt(ctx, tx, qTaskStatus).QueryRowContext(ctx, string(id)).Scan(&status)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: %s", task.ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if _, err := db.txStmt(ctx, tx, qRaiseTaskTaint).ExecContext(ctx, string(id), string(level), rank); err != nil {
			return err
		}
		_, err = db.txStmt(ctx, tx, qRaiseAgentTaint).ExecContext(ctx, string(id), at.UnixNano(), rank, string(level), until.UnixNano())
		return err
	})
}

// GetTask implements task.Store.
func (db *DB) GetTask(ctx context.Context, id task.ID) (*task.Task, error) {
	stmt, err := db.readStmt(ctx, qGetTask)
	if err != nil {
		return nil, fmt.Errorf("sqlite: get task: %w", err)
	}
	t, err := scanTask(stmt.QueryRowContext(ctx, string(id)))
	if errors.Is(err, sql.ErrNoRows) {
		err = fmt.Errorf("%w: %s", task.ErrNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get task: %w", err)
	}
	return t, nil
}

// ListTasks implements task.Store. Tasks created at the same time are
// ordered by descending ID.
func (db *DB) ListTasks(ctx context.Context, f task.Filter) ([]*task.Task, error) {
	var where []string
	var args []any
	if !f.Agent.IsZero() {
		where, args = append(where, "agent_id = ?"), append(args, f.Agent.String())
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.Parent != "" {
		where, args = append(where, "parent_id = ?"), append(args, string(f.Parent))
	}
	if f.OnBehalfOf != "" {
		where, args = append(where, "on_behalf_of = ?"), append(args, f.OnBehalfOf)
	}
	q := `SELECT ` + taskColumns + ` FROM tasks`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY created_at DESC, id DESC`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list tasks: %w", err)
	}
	defer rows.Close()
	var tasks []*task.Task
	for rows.Next() {
		t, err := scanTask(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list tasks: %w", err)
		}
		tasks = append(tasks, t)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list tasks: %w", err)
	}
	return tasks, nil
}

func checkFinal(status task.Status, at time.Time) error {
	switch status {
	case task.StatusEnded, task.StatusRevoked, task.StatusExpired:
	default:
		return fmt.Errorf("%w: %q is not a final status", task.ErrInvalid, status)
	}
	if err := checkTimes(at); err != nil {
		return fmt.Errorf("%w: %v", task.ErrInvalid, err)
	}
	return nil
}

// subtreeCTE selects, as "sub", the tasks chosen by the query in its first
// placeholder position and all of their descendants.
const subtreeCTE = `WITH RECURSIVE sub (id) AS (
	%s
	UNION
	SELECT t.id FROM tasks t JOIN sub ON t.parent_id = sub.id
)`

// finish moves the active tasks among roots' subtrees to status. It
// returns their IDs ordered by depth (roots first), then creation time.
func finish(ctx context.Context, tx *sql.Tx, roots string, rootArgs []any, status task.Status, reason string, at time.Time) ([]task.ID, error) {
	cte := fmt.Sprintf(subtreeCTE, roots)
	rows, err := tx.QueryContext(ctx, cte+`
		SELECT id FROM tasks WHERE id IN (SELECT id FROM sub) AND status = 'active'
		ORDER BY depth, created_at, id`, rootArgs...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var ids []task.ID
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		ids = append(ids, task.ID(id))
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	args := append([]any{}, rootArgs...)
	args = append(args, string(status), reason, timeArg(at))
	_, err = tx.ExecContext(ctx, cte+`
		UPDATE tasks SET status = ?, status_reason = ?, ended_at = ?
		WHERE id IN (SELECT id FROM sub) AND status = 'active'`, args...)
	if err != nil {
		return nil, err
	}
	return ids, nil
}

// FinishTask implements task.Store.
func (db *DB) FinishTask(ctx context.Context, id task.ID, status task.Status, reason string, at time.Time) ([]task.ID, error) {
	var ids []task.ID
	err := checkFinal(status, at)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var cur string
			err := db.txStmt(ctx, tx, qTaskStatus).QueryRowContext(ctx, string(id)).Scan(&cur)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", task.ErrNotFound, id)
			}
			if err != nil {
				return err
			}
			if task.Status(cur) != task.StatusActive {
				return fmt.Errorf("%w: %s is %s", task.ErrNotActive, id, cur)
			}
			ids, err = finish(ctx, tx, `SELECT ?`, []any{string(id)}, status, reason, at)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish task: %w", err)
	}
	return ids, nil
}

// FinishAgentTasks implements task.Store.
func (db *DB) FinishAgentTasks(ctx context.Context, agent identity.ID, status task.Status, reason string, at time.Time) ([]task.ID, error) {
	var ids []task.ID
	err := checkFinal(status, at)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var err error
			ids, err = finish(ctx, tx, `SELECT id FROM tasks WHERE agent_id = ? AND status = 'active'`,
				[]any{agent.String()}, status, reason, at)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: finish agent tasks: %w", err)
	}
	return ids, nil
}

// ExpireTasks implements task.Store. Expired tasks get the status reason
// "expired" and EndedAt now. A child never outlives its parent, so an
// expiring parent's active descendants expire in the same call.
func (db *DB) ExpireTasks(ctx context.Context, now time.Time) ([]task.ID, error) {
	var ids []task.ID
	err := checkTimes(now)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var err error
			ids, err = finish(ctx, tx, `SELECT id FROM tasks WHERE status = 'active' AND expires_at <= ?`,
				[]any{now.UnixNano()}, task.StatusExpired, "expired", now)
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: expire tasks: %w", err)
	}
	return ids, nil
}

// InactiveTaskIDs implements task.Store.
func (db *DB) InactiveTaskIDs(ctx context.Context, now time.Time) ([]task.ID, error) {
	if err := checkTimes(now); err != nil {
		return nil, fmt.Errorf("sqlite: inactive task ids: %w: %v", task.ErrInvalid, err)
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT id FROM tasks WHERE expires_at > ? AND status <> 'active' ORDER BY id`, now.UnixNano())
	if err != nil {
		return nil, fmt.Errorf("sqlite: inactive task ids: %w", err)
	}
	defer rows.Close()
	var ids []task.ID
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, fmt.Errorf("sqlite: inactive task ids: %w", err)
		}
		ids = append(ids, task.ID(id))
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: inactive task ids: %w", err)
	}
	return ids, nil
}

// scanTask scans one tasks row.
func scanTask(s scanner) (*task.Task, error) {
	var (
		t                          task.Task
		id, agent, scope, sens, st string
		parent, actors             sql.NullString
		created, expires, ended    sql.NullInt64
		taint                      string
	)
	if err := s.Scan(&id, &agent, &t.OnBehalfOf, &t.Principal, &t.Purpose, &scope, &sens,
		&t.Budget.MaxActions, &t.Budget.MaxWrites, &t.Used.Actions, &t.Used.Writes, &parent, &t.Depth, &actors,
		&st, &t.StatusReason, &created, &expires, &ended, &taint); err != nil {
		return nil, err
	}
	t.ID, t.Parent = task.ID(id), task.ID(parent.String)
	t.Sensitivity, t.Status, t.Taint = task.Sensitivity(sens), task.Status(st), task.Sensitivity(taint)
	var err error
	if t.Agent, err = identity.ParseID(agent); err != nil {
		return nil, fmt.Errorf("stored task %s: %w", id, err)
	}
	if err := json.Unmarshal([]byte(scope), &t.Scope); err != nil {
		return nil, fmt.Errorf("stored task %s: scope: %w", id, err)
	}
	if actors.Valid {
		if err := json.Unmarshal([]byte(actors.String), &t.Actors); err != nil {
			return nil, fmt.Errorf("stored task %s: actors: %w", id, err)
		}
	}
	t.CreatedAt, t.ExpiresAt, t.EndedAt = timeVal(created), timeVal(expires), timeVal(ended)
	return &t, nil
}

// AddUsage implements task.Store.
func (db *DB) AddUsage(ctx context.Context, deltas map[task.ID]task.Usage) error {
	if len(deltas) == 0 {
		return nil
	}
	for id, d := range deltas {
		if d.Actions < 0 || d.Writes < 0 {
			return fmt.Errorf("sqlite: add usage: %w: negative usage for %s", task.ErrInvalid, id)
		}
	}
	err := db.write(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `UPDATE tasks SET used_actions = used_actions + ?, used_writes = used_writes + ? WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for id, d := range deltas {
			if _, err := stmt.ExecContext(ctx, d.Actions, d.Writes, string(id)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: add usage: %w", err)
	}
	return nil
}
