package token

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// Revocations is the in-memory revocation state every verification checks,
// cached token or not: revoked token IDs (kept until the token's expiry),
// inactive tasks and inactive agents. It is loaded from the stores at start
// (Load) and kept current by the services that change that state, which
// call RevokeJTI, RevokeTasks and SetAgentActive in the same request that
// changes the store.
//
// Revocations also orders revocations against the decisions that check
// them (HoldDecisions): once RevokeJTI, RevokeTasks or SetAgentActive(false)
// returns, every decision that could have missed the change has been
// recorded, so no allow is recorded after a revocation returns.
//
// Revocations is safe for concurrent use.
type Revocations struct {
	// inflight is held shared by each decision from its revocation check
	// until its event is recorded, and exclusively, for an instant, by
	// each revocation once the sets are updated (drain).
	inflight sync.RWMutex

	mu     sync.RWMutex
	jtis   map[string]time.Time // jti → token expiry
	tasks  map[string]time.Time // task ID → when it was marked inactive
	agents map[string]bool      // agent SPIFFE ID → inactive
	now    func() time.Time
}

// NewRevocations returns an empty revocation state; now is the clock (nil
// means time.Now).
func NewRevocations(now func() time.Time) *Revocations {
	if now == nil {
		now = time.Now
	}
	return &Revocations{
		now:    now,
		jtis:   make(map[string]time.Time),
		tasks:  make(map[string]time.Time),
		agents: make(map[string]bool),
	}
}

// Load adds the revocation state recorded in the stores at time now:
// revoked tokens, finished tasks that have not reached their expiry, and
// suspended or retired agents.
func (r *Revocations) Load(ctx context.Context, ids identity.Store, tasks task.Store, tokens Store, now time.Time) error {
	jtis, err := tokens.RevokedTokens(ctx, now)
	if err != nil {
		return fmt.Errorf("token: load revoked tokens: %w", err)
	}
	taskIDs, err := tasks.InactiveTaskIDs(ctx, now)
	if err != nil {
		return fmt.Errorf("token: load inactive tasks: %w", err)
	}
	var inactive []*identity.Agent
	for _, st := range []identity.Status{identity.StatusSuspended, identity.StatusRetired} {
		as, err := ids.ListAgents(ctx, identity.Filter{Status: st})
		if err != nil {
			return fmt.Errorf("token: load inactive agents: %w", err)
		}
		inactive = append(inactive, as...)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	// A revoked token's own expiry is not stored with its jti; keep it for
	// the longest a token can live, which Prune's caller bounds.
	for _, j := range jtis {
		if _, ok := r.jtis[j]; !ok {
			r.jtis[j] = time.Time{}
		}
	}
	for _, id := range taskIDs {
		r.tasks[string(id)] = now
	}
	for _, a := range inactive {
		r.agents[a.ID.String()] = true
	}
	return nil
}

// RevokeJTI marks the token with jti revoked until exp, its expiry.
func (r *Revocations) RevokeJTI(jti string, exp time.Time) {
	r.mu.Lock()
	r.jtis[jti] = exp
	r.mu.Unlock()
	r.drain()
}

// RevokeTasks marks tasks inactive (ended, revoked or expired): every token
// bound to them is refused from now on.
func (r *Revocations) RevokeTasks(ids ...task.ID) {
	now := r.now()
	r.mu.Lock()
	for _, id := range ids {
		r.tasks[string(id)] = now
	}
	r.mu.Unlock()
	r.drain()
}

// SetAgentActive records an agent's status change: while inactive, every
// token naming it as subject, client or actor is refused.
func (r *Revocations) SetAgentActive(id identity.ID, active bool) {
	r.mu.Lock()
	if active {
		delete(r.agents, id.String())
	} else {
		r.agents[id.String()] = true
	}
	r.mu.Unlock()
	if !active {
		r.drain()
	}
}

// HoldDecisions marks a decision in flight until ReleaseDecisions: call it
// before checking Inactive, and release once the decision is recorded. A
// revocation waits for the decisions in flight, so
// none of them can be recorded as an allow after the revocation returns.
// A decision must not hold twice, nor revoke while it holds.
func (r *Revocations) HoldDecisions() { r.inflight.RLock() }

// ReleaseDecisions ends what HoldDecisions began.
func (r *Revocations) ReleaseDecisions() { r.inflight.RUnlock() }

// drain waits until every decision that was in flight when the sets were
// updated has been recorded; decisions that start later see the update.
func (r *Revocations) drain() {
	r.inflight.Lock()
	//lint:ignore SA2001 an empty critical section is the point: wait for the holders
	r.inflight.Unlock()
}

// Prune forgets revoked jtis whose token has expired at now, and inactive
// tasks marked more than keepTasks ago (longer than any task can live, so
// their tokens have expired too). Jtis loaded from the store without an
// expiry are dropped after keepTasks as well.
func (r *Revocations) Prune(now time.Time, keepTasks time.Duration) {
	cutoff := now.Add(-keepTasks)
	r.mu.Lock()
	defer r.mu.Unlock()
	for j, exp := range r.jtis {
		if exp.IsZero() {
			r.jtis[j] = now.Add(keepTasks)
		} else if !exp.After(now) {
			delete(r.jtis, j)
		}
	}
	for id, at := range r.tasks {
		if at.Before(cutoff) {
			delete(r.tasks, id)
		}
	}
}

// check returns the reason a token is refused, or "" if it is not revoked.
// agents are the SPIFFE IDs the token names (subject, client, actors).
func (r *Revocations) check(jti, taskID string, agents []string) string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.jtis[jti]; ok {
		return "token revoked"
	}
	if taskID != "" {
		if _, ok := r.tasks[taskID]; ok {
			return "task is no longer active"
		}
	}
	for _, a := range agents {
		if r.agents[a] {
			return "agent is not active"
		}
	}
	return ""
}

// Inactive reports whether the task, or any of agents (SPIFFE IDs), was
// marked inactive: one look under one lock, for the decision path.
func (r *Revocations) Inactive(taskID task.ID, agents []string) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if _, ok := r.tasks[string(taskID)]; ok {
		return true
	}
	for _, a := range agents {
		if r.agents[a] {
			return true
		}
	}
	return false
}

// TaskInactive reports whether the task was marked inactive.
func (r *Revocations) TaskInactive(id task.ID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.tasks[string(id)]
	return ok
}

// AgentInactive reports whether the agent was marked inactive.
func (r *Revocations) AgentInactive(id identity.ID) bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.agents[id.String()]
}
