package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/internal/identity"
)

var _ identity.Store = (*DB)(nil)

// agentColumns are the columns CreateAgent writes; agentSelect adds the
// taint, which only task.Store.RaiseTaint writes.
const (
	agentColumns = `id, description, owner, escalation, tier, status, labels, keys, require_dpop, created_at, updated_at`
	agentSelect  = agentColumns + `, taint, taint_until`
)

// CreateAgent implements identity.Store.
func (db *DB) CreateAgent(ctx context.Context, a *identity.Agent) error {
	if err := db.createAgent(ctx, a); err != nil {
		return fmt.Errorf("sqlite: create agent: %w", err)
	}
	return nil
}

func (db *DB) createAgent(ctx context.Context, a *identity.Agent) error {
	if a == nil || a.ID.IsZero() {
		return fmt.Errorf("%w: id is required", identity.ErrInvalid)
	}
	if err := checkTimes(a.CreatedAt, a.UpdatedAt); err != nil {
		return fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	}
	seen := make(map[identity.Federation]bool, len(a.Federations))
	for _, f := range a.Federations {
		if seen[f] {
			return fmt.Errorf("%w: federation %s %q listed twice", identity.ErrInvalid, f.Issuer, f.Subject)
		}
		seen[f] = true
	}
	var labels, keys string
	if len(a.Labels) > 0 {
		b, err := json.Marshal(a.Labels)
		if err != nil {
			return err
		}
		labels = string(b)
	}
	if len(a.Keys) > 0 {
		b, err := json.Marshal(a.Keys)
		if err != nil {
			return fmt.Errorf("%w: keys: %v", identity.ErrInvalid, err)
		}
		keys = string(b)
	}
	id := a.ID.String()
	return db.write(ctx, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, `INSERT INTO agents (`+agentColumns+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, a.Description, a.Owner, a.Escalation, string(a.Tier), string(a.Status),
			nullString(labels), nullString(keys), a.RequireDPoP, timeArg(a.CreatedAt), timeArg(a.UpdatedAt))
		if isUnique(err) {
			return fmt.Errorf("%w: %s", identity.ErrExists, id)
		}
		if err != nil {
			return err
		}
		return insertFederations(ctx, tx, id, a.Federations)
	})
}

// GetAgent implements identity.Store.
func (db *DB) GetAgent(ctx context.Context, id identity.ID) (*identity.Agent, error) {
	var a *identity.Agent
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		a, err = getAgent(ctx, tx, id.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get agent: %w", err)
	}
	return a, nil
}

// FindFederated implements identity.Store.
func (db *DB) FindFederated(ctx context.Context, issuer, subject string) (*identity.Agent, error) {
	var a *identity.Agent
	err := db.read(ctx, func(tx *sql.Tx) error {
		var id string
		err := tx.QueryRowContext(ctx, `SELECT agent_id FROM agent_federations WHERE issuer = ? AND subject = ?`, issuer, subject).Scan(&id)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("%w: no agent trusts subject %q at %s", identity.ErrNotFound, subject, issuer)
		}
		if err != nil {
			return err
		}
		a, err = getAgent(ctx, tx, id)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: find federated agent: %w", err)
	}
	return a, nil
}

// ListAgents implements identity.Store.
func (db *DB) ListAgents(ctx context.Context, f identity.Filter) ([]*identity.Agent, error) {
	var where []string
	var args []any
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, string(f.Status))
	}
	if f.Tier != "" {
		where, args = append(where, "tier = ?"), append(args, string(f.Tier))
	}
	if f.Owner != "" {
		where, args = append(where, "owner = ?"), append(args, f.Owner)
	}
	q := `SELECT ` + agentSelect + ` FROM agents`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	q += ` ORDER BY id`
	if f.Limit > 0 {
		q += ` LIMIT ?`
		args = append(args, f.Limit)
	}
	var agents []*identity.Agent
	err := db.read(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		byID := make(map[string]*identity.Agent)
		var ids []string
		for rows.Next() {
			a, err := scanAgent(rows)
			if err != nil {
				return err
			}
			agents = append(agents, a)
			byID[a.ID.String()] = a
			ids = append(ids, a.ID.String())
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ids) == 0 {
			return nil
		}
		idsJSON, err := json.Marshal(ids)
		if err != nil {
			return err
		}
		frows, err := tx.QueryContext(ctx, `SELECT agent_id, issuer, subject FROM agent_federations
			WHERE agent_id IN (SELECT value FROM json_each(?)) ORDER BY agent_id, position`, string(idsJSON))
		if err != nil {
			return err
		}
		defer frows.Close()
		for frows.Next() {
			var id string
			var fed identity.Federation
			if err := frows.Scan(&id, &fed.Issuer, &fed.Subject); err != nil {
				return err
			}
			if a := byID[id]; a != nil {
				a.Federations = append(a.Federations, fed)
			}
		}
		return frows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: list agents: %w", err)
	}
	return agents, nil
}

// SetAgentStatus implements identity.Store.
func (db *DB) SetAgentStatus(ctx context.Context, id identity.ID, status identity.Status, at time.Time) (*identity.Agent, error) {
	var a *identity.Agent
	err := checkTimes(at)
	if err != nil {
		err = fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	} else {
		err = db.write(ctx, func(tx *sql.Tx) error {
			res, err := tx.ExecContext(ctx, `UPDATE agents SET status = ?, updated_at = ? WHERE id = ?`,
				string(status), timeArg(at), id.String())
			if err != nil {
				return err
			}
			if n, err := res.RowsAffected(); err != nil {
				return err
			} else if n == 0 {
				return fmt.Errorf("%w: %s", identity.ErrNotFound, id)
			}
			a, err = getAgent(ctx, tx, id.String())
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: set agent status: %w", err)
	}
	return a, nil
}

// UpdateAgentCredentials implements identity.Store.
func (db *DB) UpdateAgentCredentials(ctx context.Context, id identity.ID, at time.Time, update func(identity.Credentials) (identity.Credentials, error)) (*identity.Agent, error) {
	var a *identity.Agent
	err := checkTimes(at)
	if err != nil {
		err = fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	} else {
		err = db.write(ctx, func(tx *sql.Tx) error {
			cur, err := getAgent(ctx, tx, id.String())
			if err != nil {
				return err
			}
			creds, err := update(identity.Credentials{Keys: cur.Keys, Federations: cur.Federations})
			if err != nil {
				return err
			}
			var encoded string
			if len(creds.Keys) > 0 {
				b, err := json.Marshal(creds.Keys)
				if err != nil {
					return fmt.Errorf("%w: keys: %v", identity.ErrInvalid, err)
				}
				encoded = string(b)
			}
			if _, err := tx.ExecContext(ctx, `UPDATE agents SET keys = ?, updated_at = ? WHERE id = ?`,
				nullString(encoded), timeArg(at), id.String()); err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, `DELETE FROM agent_federations WHERE agent_id = ?`, id.String()); err != nil {
				return err
			}
			if err := insertFederations(ctx, tx, id.String(), creds.Federations); err != nil {
				return err
			}
			a, err = getAgent(ctx, tx, id.String())
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: update agent credentials: %w", err)
	}
	return a, nil
}

// insertFederations binds federations to agent id, in order.
func insertFederations(ctx context.Context, tx *sql.Tx, id string, feds []identity.Federation) error {
	for i, f := range feds {
		_, err := tx.ExecContext(ctx, `INSERT INTO agent_federations (issuer, subject, agent_id, position) VALUES (?, ?, ?, ?)`,
			f.Issuer, f.Subject, id, i)
		if isUnique(err) {
			return fmt.Errorf("%w: issuer %s subject %q", identity.ErrFederationTaken, f.Issuer, f.Subject)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// getAgent reads one agent and its federations.
func getAgent(ctx context.Context, q querier, id string) (*identity.Agent, error) {
	a, err := scanAgent(q.QueryRowContext(ctx, `SELECT `+agentSelect+` FROM agents WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("%w: %s", identity.ErrNotFound, id)
	}
	if err != nil {
		return nil, err
	}
	rows, err := q.QueryContext(ctx, `SELECT issuer, subject FROM agent_federations WHERE agent_id = ? ORDER BY position`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var f identity.Federation
		if err := rows.Scan(&f.Issuer, &f.Subject); err != nil {
			return nil, err
		}
		a.Federations = append(a.Federations, f)
	}
	return a, rows.Err()
}

type scanner interface{ Scan(dest ...any) error }

// scanAgent scans one agents row (without federations).
func scanAgent(s scanner) (*identity.Agent, error) {
	var (
		a                identity.Agent
		id, tier, status string
		labels, keys     sql.NullString
		created, updated sql.NullInt64
		taintUntil       sql.NullInt64
	)
	if err := s.Scan(&id, &a.Description, &a.Owner, &a.Escalation, &tier, &status,
		&labels, &keys, &a.RequireDPoP, &created, &updated, &a.Taint, &taintUntil); err != nil {
		return nil, err
	}
	var err error
	if a.ID, err = identity.ParseID(id); err != nil {
		return nil, fmt.Errorf("stored agent: %w", err)
	}
	a.Tier, a.Status = identity.Tier(tier), identity.Status(status)
	if labels.Valid {
		if err := json.Unmarshal([]byte(labels.String), &a.Labels); err != nil {
			return nil, fmt.Errorf("stored agent %s: labels: %w", id, err)
		}
	}
	if keys.Valid {
		var ks []jose.JSONWebKey
		if err := json.Unmarshal([]byte(keys.String), &ks); err != nil {
			return nil, fmt.Errorf("stored agent %s: keys: %w", id, err)
		}
		a.Keys = ks
	}
	a.CreatedAt, a.UpdatedAt, a.TaintUntil = timeVal(created), timeVal(updated), timeVal(taintUntil)
	return &a, nil
}
