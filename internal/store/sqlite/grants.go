package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

var _ token.GrantStore = (*DB)(nil)

// AddGrant implements token.GrantStore.
func (db *DB) AddGrant(ctx context.Context, g *token.Grant) error {
	err := checkTimes(g.CreatedAt, g.ExpiresAt, g.UsedAt)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO oauth_grants (hash, kind, family, task_id, agent, client_id,
				redirect_uri, challenge, resource, scope, created_at, expires_at, used_at)
				VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				g.Hash, string(g.Kind), g.Family, string(g.Task), g.Agent.String(), g.ClientID,
				g.RedirectURI, g.Challenge, g.Resource, g.Scope, timeArg(g.CreatedAt), timeArg(g.ExpiresAt), timeArg(g.UsedAt))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: add grant: %w", err)
	}
	return nil
}

// SpendGrant implements token.GrantStore: one conditional update, so two
// concurrent spends cannot both succeed.
func (db *DB) SpendGrant(ctx context.Context, kind token.GrantKind, hash string, at time.Time) (*token.Grant, error) {
	var g *token.Grant
	var spent bool
	err := checkTimes(at)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var err error
			if g, err = getGrant(ctx, tx, kind, hash); err != nil {
				return err
			}
			if !g.ExpiresAt.After(at) {
				return token.ErrGrantNotFound
			}
			if !g.UsedAt.IsZero() {
				spent = true
				return nil
			}
			_, err = tx.ExecContext(ctx, `UPDATE oauth_grants SET used_at = ? WHERE hash = ? AND used_at IS NULL`, timeArg(at), hash)
			g.UsedAt = at.UTC()
			return err
		})
	}
	switch {
	case errors.Is(err, token.ErrGrantNotFound):
		return nil, fmt.Errorf("sqlite: spend grant: %w", err)
	case err != nil:
		return nil, fmt.Errorf("sqlite: spend grant: %w", err)
	case spent:
		return g, fmt.Errorf("sqlite: spend grant: %w", token.ErrGrantSpent)
	}
	return g, nil
}

func getGrant(ctx context.Context, q querier, kind token.GrantKind, hash string) (*token.Grant, error) {
	var g token.Grant
	var k, taskID, agent string
	var created, expires, used sql.NullInt64
	err := q.QueryRowContext(ctx, `SELECT kind, family, task_id, agent, client_id, redirect_uri, challenge, resource, scope,
		created_at, expires_at, used_at FROM oauth_grants WHERE hash = ?`, hash).Scan(
		&k, &g.Family, &taskID, &agent, &g.ClientID, &g.RedirectURI, &g.Challenge, &g.Resource, &g.Scope, &created, &expires, &used)
	if errors.Is(err, sql.ErrNoRows) || err == nil && k != string(kind) {
		return nil, token.ErrGrantNotFound
	} else if err != nil {
		return nil, err
	}
	if g.Agent, err = identity.ParseID(agent); err != nil {
		return nil, fmt.Errorf("stored grant agent: %w", err)
	}
	g.Kind, g.Hash, g.Task = kind, hash, task.ID(taskID)
	g.CreatedAt, g.ExpiresAt, g.UsedAt = timeVal(created), timeVal(expires), timeVal(used)
	return &g, nil
}

// PruneGrants implements token.GrantStore.
func (db *DB) PruneGrants(ctx context.Context, now time.Time) error {
	err := checkTimes(now)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `DELETE FROM oauth_grants WHERE expires_at < ?`, timeArg(now))
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: prune grants: %w", err)
	}
	return nil
}

// AddClient implements token.GrantStore.
func (db *DB) AddClient(ctx context.Context, c *token.RegisteredClient) error {
	err := checkTimes(c.CreatedAt)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			_, err := tx.ExecContext(ctx, `INSERT INTO oauth_clients (client_id, metadata, created_at) VALUES (?, ?, ?)`,
				c.ClientID, string(c.Metadata), timeArg(c.CreatedAt))
			if isUnique(err) {
				return fmt.Errorf("%w: %s", token.ErrClientExists, c.ClientID)
			}
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: add client: %w", err)
	}
	return nil
}

// GetClient implements token.GrantStore.
func (db *DB) GetClient(ctx context.Context, clientID string) (*token.RegisteredClient, error) {
	c := &token.RegisteredClient{ClientID: clientID}
	var md string
	var created sql.NullInt64
	err := db.reader.QueryRowContext(ctx, `SELECT metadata, created_at FROM oauth_clients WHERE client_id = ?`, clientID).Scan(&md, &created)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, fmt.Errorf("sqlite: get client: %w", token.ErrClientNotFound)
	} else if err != nil {
		return nil, fmt.Errorf("sqlite: get client: %w", db.classify(err))
	}
	c.Metadata, c.CreatedAt = []byte(md), timeVal(created)
	return c, nil
}
