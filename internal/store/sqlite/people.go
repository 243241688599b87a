package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
)

var _ identity.PeopleStore = (*DB)(nil)

// UpsertHuman implements identity.PeopleStore.
func (db *DB) UpsertHuman(ctx context.Context, h *identity.Human) error {
	err := h.Validate()
	if err == nil {
		err = checkTimes(h.CreatedAt, h.LastSeen)
	}
	var groups string
	if err == nil && len(h.Groups) > 0 {
		var b []byte
		b, err = json.Marshal(h.Groups)
		groups = string(b)
	}
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO humans (issuer, subject, principal, email, name, groups_json, admin, created_at, last_seen)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
				ON CONFLICT (issuer, subject) DO UPDATE SET principal = excluded.principal, email = excluded.email,
					name = excluded.name, groups_json = excluded.groups_json, admin = excluded.admin, last_seen = excluded.last_seen`,
				h.Issuer, h.Subject, h.Principal, h.Email, h.Name, nullString(groups), h.Admin, timeArg(h.CreatedAt), timeArg(h.LastSeen))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: upsert person: %w", err)
	}
	return nil
}

// GetHuman implements identity.PeopleStore.
func (db *DB) GetHuman(ctx context.Context, issuer, subject string) (*identity.Human, error) {
	h := &identity.Human{Issuer: issuer, Subject: subject}
	var groups sql.NullString
	var created, seen sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT principal, email, name, groups_json, admin, created_at, last_seen
		FROM humans WHERE issuer = ? AND subject = ?`, issuer, subject).Scan(&h.Principal, &h.Email, &h.Name, &groups, &h.Admin, &created, &seen)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get person: %w", identity.ErrHumanNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get person: %w", db.classify(err))
	}
	if groups.Valid {
		if err := json.Unmarshal([]byte(groups.String), &h.Groups); err != nil {
			return nil, fmt.Errorf("sqlite: get person: groups: %w", err)
		}
	}
	h.CreatedAt, h.LastSeen = timeVal(created), timeVal(seen)
	return h, nil
}

// CreateSession implements identity.PeopleStore.
func (db *DB) CreateSession(ctx context.Context, s *identity.Session) error {
	err := checkTimes(s.CreatedAt, s.LastSeen, s.ExpiresAt)
	if err == nil && (s.ID == "" || s.Human == "" || s.CSRF == "") {
		err = fmt.Errorf("%w: a session needs an id, a person and a CSRF token", identity.ErrInvalid)
	}
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO web_sessions (id, human, csrf, user_agent, created_at, last_seen, expires_at)
				VALUES (?, ?, ?, ?, ?, ?, ?)`, s.ID, s.Human, s.CSRF, s.UserAgent, timeArg(s.CreatedAt), timeArg(s.LastSeen), timeArg(s.ExpiresAt))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: create session: %w", err)
	}
	return nil
}

const sessionColumns = `id, human, csrf, user_agent, created_at, last_seen, expires_at, revoked_at`

func scanSession(row interface{ Scan(...any) error }) (*identity.Session, error) {
	var s identity.Session
	var created, seen, expires, revoked sql.NullInt64
	if err := row.Scan(&s.ID, &s.Human, &s.CSRF, &s.UserAgent, &created, &seen, &expires, &revoked); err != nil {
		return nil, err
	}
	s.CreatedAt, s.LastSeen, s.ExpiresAt, s.RevokedAt = timeVal(created), timeVal(seen), timeVal(expires), timeVal(revoked)
	return &s, nil
}

// GetSession implements identity.PeopleStore.
func (db *DB) GetSession(ctx context.Context, id string, now time.Time) (*identity.Session, error) {
	s, err := scanSession(db.reader.QueryRowContext(ctx, `SELECT `+sessionColumns+` FROM web_sessions
		WHERE id = ? AND revoked_at IS NULL AND expires_at > ?`, id, timeArg(now)))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get session: %w", identity.ErrSessionNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get session: %w", db.classify(err))
	}
	return s, nil
}

// TouchSession implements identity.PeopleStore.
func (db *DB) TouchSession(ctx context.Context, id string, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `UPDATE web_sessions SET last_seen = ? WHERE id = ?`, timeArg(at), id)
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: touch session: %w", err)
	}
	return nil
}

// ListSessions implements identity.PeopleStore.
func (db *DB) ListSessions(ctx context.Context, human string, now time.Time) ([]*identity.Session, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+sessionColumns+` FROM web_sessions
		WHERE human = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at DESC, id`, human, timeArg(now))
	if err != nil {
		return nil, fmt.Errorf("sqlite: list sessions: %w", db.classify(err))
	}
	defer rows.Close()
	var out []*identity.Session
	for rows.Next() {
		s, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("sqlite: list sessions: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: list sessions: %w", err)
	}
	return out, nil
}

// RevokeSession implements identity.PeopleStore.
func (db *DB) RevokeSession(ctx context.Context, id, human string, at time.Time) error {
	err := db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE web_sessions SET revoked_at = ?
			WHERE id = ? AND revoked_at IS NULL AND (? = '' OR human = ?)`, timeArg(at), id, human, human)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return identity.ErrSessionNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: revoke session: %w", err)
	}
	return nil
}
