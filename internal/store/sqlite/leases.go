package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
)

const leaseColumns = `id, secret, kind, task_id, agent, issued_at, expires_at, status, handle, renewals, ended_at, reason, attempts, last_error, next_attempt`

// CreateLease implements secrets.Store.
func (db *DB) CreateLease(ctx context.Context, l *secrets.Lease, sealed []byte) error {
	err := l.Validate()
	if err == nil && l.Status != secrets.LeaseActive {
		err = fmt.Errorf("%w: a lease is created active", secrets.ErrInvalid)
	}
	if err == nil {
		if terr := checkTimes(l.IssuedAt, l.ExpiresAt); terr != nil {
			err = fmt.Errorf("%w: %v", secrets.ErrInvalid, terr)
		}
	}
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var (
				status, agent string
				expires       int64
			)
			err := tx.QueryRowContext(ctx, `SELECT status, agent_id, expires_at FROM tasks WHERE id = ?`, string(l.Task)).Scan(&status, &agent, &expires)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", task.ErrNotFound, l.Task)
			}
			if err != nil {
				return err
			}
			switch {
			case task.Status(status) != task.StatusActive:
				return fmt.Errorf("%w: %s is %s", task.ErrNotActive, l.Task, status)
			case expires <= l.IssuedAt.UnixNano():
				return fmt.Errorf("%w: %s has expired", task.ErrNotActive, l.Task)
			case agent != l.Agent:
				return fmt.Errorf("%w: %s is not %s's task", task.ErrNotActive, l.Task, l.Agent)
			case l.ExpiresAt.UnixNano() > expires:
				return fmt.Errorf("%w: the lease would outlive its task", secrets.ErrInvalid)
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO secret_leases (`+leaseColumns+`, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				string(l.ID), string(l.Secret), string(l.Kind), string(l.Task), l.Agent, timeArg(l.IssuedAt), timeArg(l.ExpiresAt),
				string(l.Status), l.Handle, l.Renewals, timeArg(l.EndedAt), l.Reason, l.Attempts, l.LastError, timeArg(l.NextAttempt), nullBlob(sealed))
			if isUnique(err) {
				return fmt.Errorf("%w: lease %s", secrets.ErrExists, l.ID)
			}
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: create lease: %w", err)
	}
	return nil
}

// GetLease implements secrets.Store.
func (db *DB) GetLease(ctx context.Context, id secrets.LeaseID) (*secrets.Lease, error) {
	var l *secrets.Lease
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		l, err = scanLease(tx.QueryRowContext(ctx, `SELECT `+leaseColumns+` FROM secret_leases WHERE id = ?`, string(id)))
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", secrets.ErrLeaseNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get lease: %w", err)
	}
	return l, nil
}

// ListLeases implements secrets.Store.
func (db *DB) ListLeases(ctx context.Context, f secrets.LeaseFilter) ([]*secrets.Lease, error) {
	var (
		where []string
		args  []any
	)
	if f.Task != "" {
		where, args = append(where, "task_id = ?"), append(args, string(f.Task))
	}
	if f.Secret != "" {
		where, args = append(where, "secret = ?"), append(args, string(f.Secret))
	}
	if len(f.Statuses) > 0 {
		marks := make([]string, len(f.Statuses))
		for i, s := range f.Statuses {
			marks[i] = "?"
			args = append(args, string(s))
		}
		where = append(where, "status IN ("+strings.Join(marks, ", ")+")")
	}
	q := `SELECT ` + leaseColumns + ` FROM secret_leases`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY issued_at DESC, id DESC`
	if f.Limit > 0 {
		q += fmt.Sprintf(` LIMIT %d`, f.Limit)
	}
	out, err := db.queryLeases(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: list leases: %w", err)
	}
	return out, nil
}

func (db *DB) queryLeases(ctx context.Context, q string, args ...any) ([]*secrets.Lease, error) {
	out := []*secrets.Lease{}
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			l, err := scanLease(rows)
			if err != nil {
				return err
			}
			out = append(out, l)
		}
		return rows.Err()
	})
	return out, err
}

// UpdateLease implements secrets.Store.
func (db *DB) UpdateLease(ctx context.Context, l *secrets.Lease, from secrets.LeaseStatus) error {
	err := l.Validate()
	if err == nil {
		if terr := checkTimes(l.ExpiresAt, l.EndedAt, l.NextAttempt); terr != nil {
			err = fmt.Errorf("%w: %v", secrets.ErrInvalid, terr)
		}
	}
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var cur string
			err := tx.QueryRowContext(ctx, `SELECT status FROM secret_leases WHERE id = ?`, string(l.ID)).Scan(&cur)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", secrets.ErrLeaseNotFound, l.ID)
			}
			if err != nil {
				return err
			}
			if secrets.LeaseStatus(cur) != from {
				return fmt.Errorf("%w: lease %s is %s, not %s", secrets.ErrChanged, l.ID, cur, from)
			}
			// A lease that ended keeps no credential.
			_, err = tx.ExecContext(ctx, `UPDATE secret_leases SET status = ?, expires_at = ?, renewals = ?, ended_at = ?, reason = ?,
				attempts = ?, last_error = ?, next_attempt = ?, sealed = CASE WHEN ? THEN NULL ELSE sealed END WHERE id = ?`,
				string(l.Status), timeArg(l.ExpiresAt), l.Renewals, timeArg(l.EndedAt), l.Reason, l.Attempts, l.LastError,
				timeArg(l.NextAttempt), l.Status.Final(), string(l.ID))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: update lease: %w", err)
	}
	return nil
}

// DueLeases implements secrets.Store.
func (db *DB) DueLeases(ctx context.Context, now time.Time, limit int) ([]*secrets.Lease, error) {
	if err := checkTimes(now); err != nil {
		return nil, fmt.Errorf("sqlite: due leases: %w: %v", secrets.ErrInvalid, err)
	}
	if limit <= 0 {
		limit = 1000
	}
	n := now.UnixNano()
	out, err := db.queryLeases(ctx, `SELECT `+prefixed("l.", leaseColumns)+` FROM secret_leases l JOIN tasks t ON t.id = l.task_id
		WHERE (l.status = 'active' AND (l.expires_at <= ? OR t.status <> 'active' OR t.expires_at <= ?))
		   OR (l.status = 'failed' AND coalesce(l.next_attempt, 0) <= ?)
		ORDER BY l.issued_at, l.id LIMIT ?`, n, n, n, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: due leases: %w", err)
	}
	return out, nil
}

// prefixed qualifies each of the comma-separated columns with prefix.
func prefixed(prefix, columns string) string {
	cols := strings.Split(columns, ", ")
	for i, c := range cols {
		cols[i] = prefix + c
	}
	return strings.Join(cols, ", ")
}

// LeaseValue implements secrets.Store.
func (db *DB) LeaseValue(ctx context.Context, id secrets.LeaseID) ([]byte, error) {
	var sealed []byte
	err := db.read(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT sealed FROM secret_leases WHERE id = ?`, string(id)).Scan(&sealed)
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", secrets.ErrLeaseNotFound, id)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: lease value: %w", err)
	}
	return sealed, nil
}

// ReplaceLeaseValue implements secrets.Store.
func (db *DB) ReplaceLeaseValue(ctx context.Context, id secrets.LeaseID, old, sealed []byte) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		return replaceBlob(ctx, tx, `secret_leases`, `id`, string(id), old, sealed, secrets.ErrLeaseNotFound)
	})
	if err != nil {
		return fmt.Errorf("sqlite: replace lease value: %w", err)
	}
	return nil
}

// CountLeases implements secrets.Store.
func (db *DB) CountLeases(ctx context.Context) (map[secrets.LeaseStatus]int, error) {
	out := map[secrets.LeaseStatus]int{}
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT status, count(*) FROM secret_leases GROUP BY status`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				s string
				n int
			)
			if err := rows.Scan(&s, &n); err != nil {
				return err
			}
			out[secrets.LeaseStatus(s)] = n
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: count leases: %w", err)
	}
	return out, nil
}

func scanLease(sc scanner) (*secrets.Lease, error) {
	var (
		l                                   secrets.Lease
		id, secret, kind, taskID, status    string
		issued, expires, ended, nextAttempt sql.NullInt64
	)
	if err := sc.Scan(&id, &secret, &kind, &taskID, &l.Agent, &issued, &expires, &status, &l.Handle, &l.Renewals,
		&ended, &l.Reason, &l.Attempts, &l.LastError, &nextAttempt); err != nil {
		return nil, err
	}
	l.ID, l.Secret, l.Kind, l.Task, l.Status = secrets.LeaseID(id), secrets.Name(secret), secrets.Kind(kind), task.ID(taskID), secrets.LeaseStatus(status)
	l.IssuedAt, l.ExpiresAt, l.EndedAt, l.NextAttempt = timeVal(issued), timeVal(expires), timeVal(ended), timeVal(nextAttempt)
	return &l, nil
}
