package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/policy"
)

var _ policy.SourceStore = (*DB)(nil)

const policySourceColumns = `name, text, version, updated_at, updated_by`

// ListPolicySources implements policy.SourceStore.
func (db *DB) ListPolicySources(ctx context.Context) ([]*policy.StoredSource, error) {
	var out []*policy.StoredSource
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+policySourceColumns+` FROM policy_sources ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			s, err := scanPolicySource(rows)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list policy sources: %w", err)
	}
	return out, nil
}

// GetPolicySource implements policy.SourceStore.
func (db *DB) GetPolicySource(ctx context.Context, name string) (*policy.StoredSource, error) {
	var s *policy.StoredSource
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		s, err = getPolicySource(ctx, tx, name)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", policy.ErrPolicyNotFound, name)
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: get policy source: %w", err)
	}
	return s, nil
}

// PutPolicySource implements policy.SourceStore: the version check, the
// write and the version bump are one transaction on the single writer.
func (db *DB) PutPolicySource(ctx context.Context, src *policy.StoredSource, ifVersion int64) (*policy.StoredSource, error) {
	if err := policy.CheckStoredSource(src); err != nil {
		return nil, err
	}
	if err := checkTimes(src.UpdatedAt); err != nil {
		return nil, fmt.Errorf("%w: %v", policy.ErrInvalidPolicy, err)
	}
	out := *src
	out.Text = append([]byte{}, src.Text...) // never nil: text is NOT NULL
	out.UpdatedAt = src.UpdatedAt.UTC()
	err := db.write(ctx, func(tx *sql.Tx) error {
		if err := checkPolicyVersion(ctx, tx, src.Name, ifVersion, true); err != nil {
			return err
		}
		v, err := bumpPolicyVersion(ctx, tx)
		if err != nil {
			return err
		}
		out.Version = v
		_, err = tx.ExecContext(ctx, `INSERT INTO policy_sources (`+policySourceColumns+`) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (name) DO UPDATE SET text = excluded.text, version = excluded.version,
			updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
			out.Name, out.Text, out.Version, timeArg(out.UpdatedAt), out.UpdatedBy)
		return err
	})
	if err != nil {
		if errors.Is(err, policy.ErrVersionConflict) {
			return nil, err
		}
		return nil, fmt.Errorf("sqlite: put policy source: %w", err)
	}
	return &out, nil
}

// DeletePolicySource implements policy.SourceStore.
func (db *DB) DeletePolicySource(ctx context.Context, name string, ifVersion int64) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		if err := checkPolicyVersion(ctx, tx, name, ifVersion, false); err != nil {
			return err
		}
		if _, err := bumpPolicyVersion(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `DELETE FROM policy_sources WHERE name = ?`, name)
		return err
	})
	if err != nil {
		if errors.Is(err, policy.ErrVersionConflict) || errors.Is(err, policy.ErrPolicyNotFound) {
			return err
		}
		return fmt.Errorf("sqlite: delete policy source: %w", err)
	}
	return nil
}

// PolicySourcesVersion implements policy.SourceStore.
func (db *DB) PolicySourcesVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.read(ctx, func(tx *sql.Tx) error {
		return tx.QueryRowContext(ctx, `SELECT version FROM policy_sources_version WHERE id = 1`).Scan(&v)
	})
	if err != nil {
		return 0, fmt.Errorf("sqlite: policy sources version: %w", err)
	}
	return v, nil
}

// checkPolicyVersion compares the stored revision of name with ifVersion.
// A missing document is a conflict for a put that expects one, and
// ErrPolicyNotFound for a delete.
func checkPolicyVersion(ctx context.Context, tx *sql.Tx, name string, ifVersion int64, put bool) error {
	var cur int64
	err := tx.QueryRowContext(ctx, `SELECT version FROM policy_sources WHERE name = ?`, name).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		switch {
		case !put:
			return fmt.Errorf("%w: %s", policy.ErrPolicyNotFound, name)
		case ifVersion == 0:
			return nil
		}
		return fmt.Errorf("%w: policy %s does not exist, want version %d", policy.ErrVersionConflict, name, ifVersion)
	}
	if err != nil {
		return err
	}
	if ifVersion != cur {
		if ifVersion == 0 {
			return fmt.Errorf("%w: policy %s exists (version %d)", policy.ErrVersionConflict, name, cur)
		}
		return fmt.Errorf("%w: policy %s is at version %d, not %d", policy.ErrVersionConflict, name, cur, ifVersion)
	}
	return nil
}

func bumpPolicyVersion(ctx context.Context, tx *sql.Tx) (int64, error) {
	var v int64
	err := tx.QueryRowContext(ctx, `UPDATE policy_sources_version SET version = version + 1 WHERE id = 1 RETURNING version`).Scan(&v)
	return v, err
}

func getPolicySource(ctx context.Context, tx *sql.Tx, name string) (*policy.StoredSource, error) {
	return scanPolicySource(tx.QueryRowContext(ctx, `SELECT `+policySourceColumns+` FROM policy_sources WHERE name = ?`, name))
}

func scanPolicySource(s scanner) (*policy.StoredSource, error) {
	var p policy.StoredSource
	var updated sql.NullInt64
	if err := s.Scan(&p.Name, &p.Text, &p.Version, &updated, &p.UpdatedBy); err != nil {
		return nil, err
	}
	if p.Text == nil {
		p.Text = []byte{}
	}
	p.UpdatedAt = timeVal(updated)
	return &p, nil
}
