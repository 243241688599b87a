package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/secrets"
)

var _ secrets.Store = (*DB)(nil)

const secretColumns = `name, id, kind, description, deliver, labels, postgres, version, created_at, updated_at, updated_by`

// CreateSecret implements secrets.Store.
func (db *DB) CreateSecret(ctx context.Context, s *secrets.Secret, sealed []byte) error {
	err := checkSecret(s, sealed, true)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			args, err := secretArgs(s)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO secrets (`+secretColumns+`, sealed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				append(args, sealed)...)
			if isUnique(err) {
				return fmt.Errorf("%w: %s", secrets.ErrExists, s.Name)
			}
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: create secret: %w", err)
	}
	return nil
}

// UpdateSecret implements secrets.Store.
func (db *DB) UpdateSecret(ctx context.Context, s *secrets.Secret, sealed []byte, prev int64) error {
	err := checkSecret(s, sealed, false)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var cur int64
			err := tx.QueryRowContext(ctx, `SELECT version FROM secrets WHERE name = ?`, string(s.Name)).Scan(&cur)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("%w: %s", secrets.ErrNotFound, s.Name)
			}
			if err != nil {
				return err
			}
			if cur != prev {
				return fmt.Errorf("%w: %s is at version %d, not %d", secrets.ErrChanged, s.Name, cur, prev)
			}
			args, err := secretArgs(s)
			if err != nil {
				return err
			}
			// ID and created_at are fixed at creation.
			_, err = tx.ExecContext(ctx, `UPDATE secrets SET kind = ?, description = ?, deliver = ?, labels = ?, postgres = ?,
				version = ?, updated_at = ?, updated_by = ?, sealed = coalesce(?, sealed) WHERE name = ?`,
				args[2], args[3], args[4], args[5], args[6], args[7], args[9], args[10], nullBlob(sealed), string(s.Name))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: update secret: %w", err)
	}
	return nil
}

// GetSecret implements secrets.Store.
func (db *DB) GetSecret(ctx context.Context, name secrets.Name) (*secrets.Secret, []byte, error) {
	var (
		s      *secrets.Secret
		sealed []byte
	)
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		s, sealed, err = scanSecret(tx.QueryRowContext(ctx, `SELECT `+secretColumns+`, sealed FROM secrets WHERE name = ?`, string(name)), true)
		return err
	})
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil, fmt.Errorf("%w: %s", secrets.ErrNotFound, name)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("sqlite: get secret: %w", err)
	}
	return s, sealed, nil
}

// ListSecrets implements secrets.Store.
func (db *DB) ListSecrets(ctx context.Context) ([]*secrets.Secret, error) {
	out := []*secrets.Secret{}
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, `SELECT `+secretColumns+` FROM secrets ORDER BY name`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			s, _, err := scanSecret(rows, false)
			if err != nil {
				return err
			}
			out = append(out, s)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list secrets: %w", err)
	}
	return out, nil
}

// DeleteSecret implements secrets.Store.
func (db *DB) DeleteSecret(ctx context.Context, name secrets.Name) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM secrets WHERE name = ?`, string(name))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("%w: %s", secrets.ErrNotFound, name)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: delete secret: %w", err)
	}
	return nil
}

// ReplaceSecretValue implements secrets.Store.
func (db *DB) ReplaceSecretValue(ctx context.Context, name secrets.Name, old, sealed []byte) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		return replaceBlob(ctx, tx, `secrets`, `name`, string(name), old, sealed, secrets.ErrNotFound)
	})
	if err != nil {
		return fmt.Errorf("sqlite: replace secret value: %w", err)
	}
	return nil
}

// replaceBlob sets table.sealed to sealed where key = id and sealed is
// old: notFound if there is no such row, secrets.ErrChanged if its value
// is another.
func replaceBlob(ctx context.Context, tx *sql.Tx, table, key, id string, old, sealed []byte, notFound error) error {
	var cur []byte
	err := tx.QueryRowContext(ctx, `SELECT sealed FROM `+table+` WHERE `+key+` = ?`, id).Scan(&cur)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%w: %s", notFound, id)
	}
	if err != nil {
		return err
	}
	if cur == nil || string(cur) != string(old) {
		return fmt.Errorf("%w: the sealed value of %s is not the one replaced", secrets.ErrChanged, id)
	}
	_, err = tx.ExecContext(ctx, `UPDATE `+table+` SET sealed = ? WHERE `+key+` = ?`, sealed, id)
	return err
}

func checkSecret(s *secrets.Secret, sealed []byte, create bool) error {
	if err := s.Validate(); err != nil {
		return err
	}
	if create && len(sealed) == 0 {
		return fmt.Errorf("%w: a secret is created with its sealed value", secrets.ErrInvalid)
	}
	if err := checkTimes(s.CreatedAt, s.UpdatedAt); err != nil {
		return fmt.Errorf("%w: %v", secrets.ErrInvalid, err)
	}
	return nil
}

// secretArgs are the secretColumns' values of s.
func secretArgs(s *secrets.Secret) ([]any, error) {
	deliver, err := json.Marshal(s.Deliver)
	if err != nil {
		return nil, err
	}
	if s.Deliver == nil {
		deliver = []byte("[]")
	}
	var labels, pg string
	if len(s.Labels) > 0 {
		b, err := json.Marshal(s.Labels)
		if err != nil {
			return nil, err
		}
		labels = string(b)
	}
	if s.Postgres != nil {
		b, err := json.Marshal(s.Postgres)
		if err != nil {
			return nil, err
		}
		pg = string(b)
	}
	return []any{string(s.Name), s.ID, string(s.Kind), s.Description, string(deliver), nullString(labels), nullString(pg),
		s.Version, timeArg(s.CreatedAt), timeArg(s.UpdatedAt), s.UpdatedBy}, nil
}

func scanSecret(sc scanner, withSealed bool) (*secrets.Secret, []byte, error) {
	var (
		s                   secrets.Secret
		name, kind, deliver string
		labels, pg          sql.NullString
		created, updated    sql.NullInt64
		sealed              []byte
	)
	dest := []any{&name, &s.ID, &kind, &s.Description, &deliver, &labels, &pg, &s.Version, &created, &updated, &s.UpdatedBy}
	if withSealed {
		dest = append(dest, &sealed)
	}
	if err := sc.Scan(dest...); err != nil {
		return nil, nil, err
	}
	s.Name, s.Kind = secrets.Name(name), secrets.Kind(kind)
	s.CreatedAt, s.UpdatedAt = timeVal(created), timeVal(updated)
	if err := json.Unmarshal([]byte(deliver), &s.Deliver); err != nil {
		return nil, nil, fmt.Errorf("stored secret %s: deliver: %w", name, err)
	}
	if labels.Valid {
		if err := json.Unmarshal([]byte(labels.String), &s.Labels); err != nil {
			return nil, nil, fmt.Errorf("stored secret %s: labels: %w", name, err)
		}
	}
	if pg.Valid {
		s.Postgres = new(secrets.PostgresConfig)
		if err := json.Unmarshal([]byte(pg.String), s.Postgres); err != nil {
			return nil, nil, fmt.Errorf("stored secret %s: postgres: %w", name, err)
		}
	}
	return &s, sealed, nil
}

// nullBlob turns a nil slice into NULL.
func nullBlob(b []byte) any {
	if b == nil {
		return nil
	}
	return b
}
