package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

var _ task.EntitlementStore = (*DB)(nil)

// GetEntitlement implements task.EntitlementStore.
func (db *DB) GetEntitlement(ctx context.Context, agent identity.ID) (*task.Entitlement, error) {
	var e *task.Entitlement
	err := db.read(ctx, func(tx *sql.Tx) error {
		var err error
		e, err = getEntitlement(ctx, tx, agent.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("sqlite: get entitlement: %w", err)
	}
	if e == nil {
		return nil, fmt.Errorf("%w: %s", task.ErrNoEntitlement, agent)
	}
	return e, nil
}

// SetEntitlement implements task.EntitlementStore.
func (db *DB) SetEntitlement(ctx context.Context, agent identity.ID, e *task.Entitlement, at time.Time) (*task.Entitlement, error) {
	var prev *task.Entitlement
	err := checkTimes(at)
	if err != nil {
		err = fmt.Errorf("%w: %v", task.ErrInvalid, err)
	} else if e != nil {
		err = e.Validate()
	}
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			var err error
			if prev, err = getEntitlement(ctx, tx, agent.String()); err != nil {
				return err
			}
			if e == nil {
				_, err = tx.ExecContext(ctx, `DELETE FROM agent_entitlements WHERE agent_id = ?`, agent.String())
				return err
			}
			scope, err := json.Marshal(e.Scope)
			if err != nil {
				return err
			}
			_, err = tx.ExecContext(ctx, `INSERT INTO agent_entitlements (agent_id, scope, max_sensitivity, max_task_ttl, updated_at)
				VALUES (?, ?, ?, ?, ?)
				ON CONFLICT (agent_id) DO UPDATE SET scope = excluded.scope, max_sensitivity = excluded.max_sensitivity,
					max_task_ttl = excluded.max_task_ttl, updated_at = excluded.updated_at`,
				agent.String(), string(scope), string(e.MaxSensitivity), int64(e.MaxTaskTTL/time.Second), timeArg(at))
			return err
		})
	}
	if err != nil {
		return nil, fmt.Errorf("sqlite: set entitlement: %w", err)
	}
	return prev, nil
}

// getEntitlement reads the agent's entitlement: nil if it has none,
// identity.ErrNotFound if there is no such agent.
func getEntitlement(ctx context.Context, q querier, agent string) (*task.Entitlement, error) {
	var (
		scope, sens string
		ttl         int64
		exists      bool
	)
	err := q.QueryRowContext(ctx, `SELECT EXISTS (SELECT 1 FROM agents WHERE id = ?)`, agent).Scan(&exists)
	if err != nil {
		return nil, err
	}
	if !exists {
		return nil, fmt.Errorf("%w: %s", identity.ErrNotFound, agent)
	}
	err = q.QueryRowContext(ctx, `SELECT scope, max_sensitivity, max_task_ttl FROM agent_entitlements WHERE agent_id = ?`, agent).
		Scan(&scope, &sens, &ttl)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	e := &task.Entitlement{MaxSensitivity: task.Sensitivity(sens), MaxTaskTTL: time.Duration(ttl) * time.Second}
	if err := json.Unmarshal([]byte(scope), &e.Scope); err != nil {
		return nil, fmt.Errorf("stored entitlement of %s: %w", agent, err)
	}
	// A stored row that no longer validates (edited by hand, or written by
	// a newer version) must not widen anything: refuse to use it.
	if err := e.Validate(); err != nil {
		return nil, fmt.Errorf("stored entitlement of %s: %w", agent, err)
	}
	return e, nil
}
