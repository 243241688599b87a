package access

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// Taint is what a task has been exposed to, and it sticks:
//
//   - An allowed read (risk read) of a resource with a sensitivity above
//     public raises the task's taint, and the taint of every task it was
//     delegated from (data flows back up the chain), in the task store
//     before the read is allowed: if the raise cannot be stored the read
//     is refused. A restart therefore forgets nothing.
//   - The same raise taints the agents of those tasks for
//     Config.AgentTaintWindow after the read: a task such an agent starts
//     within the window starts with that taint (the task store does it at
//     creation, as it gives a delegated task its parent's taint).
//   - A decision sees the task's taint (its own and its ancestors', as
//     stored and as raised here) as context.taint, and its agent's taint
//     in force as context.agent_taint, so a task started before the agent
//     read the data is stopped too.

// DefaultAgentTaintWindow is how long an agent stays tainted after one of
// its tasks read sensitive data, unless Config.AgentTaintWindow says.
const DefaultAgentTaintWindow = time.Hour

// restricted is the highest sensitivity: the taint assumed when the real
// one cannot be known (fail closed).
var restricted = policy.Sensitivities[len(policy.Sensitivities)-1]

// taskTaint is what the pipeline has raised a task's taint to, beyond the
// stored record it loaded (guarded by taskState.mu).
type taskTaint struct {
	// level is the highest sensitivity raised (durably) by this pipeline.
	level string
	// stored is when this pipeline last stored a raise for the task: the
	// agent's window is renewed at most every window/refreshDivisor.
	stored time.Time
}

// refreshDivisor: a task that keeps reading sensitive data renews its
// agents' taint window at most every window/refreshDivisor (one store
// write), and each renewal adds that much slack, so the window always
// covers at least Config.AgentTaintWindow after the last read.
const refreshDivisor = 60

// agentTaints are the agent taints this pipeline raised, so that the
// agent's other tasks see them at once rather than when the cached agent
// record is next reloaded.
type agentTaints struct {
	mu sync.RWMutex
	m  map[identity.ID]agentTaint
	// n is len(m), read without the lock: most pipelines never raise an
	// agent's taint, and their decisions skip the lock.
	n atomic.Int64
}

type agentTaint struct {
	level string
	until time.Time
}

// at returns the taint this pipeline raised id to that is in force at now.
func (a *agentTaints) at(id identity.ID, now time.Time) string {
	if a.n.Load() == 0 {
		return ""
	}
	a.mu.RLock()
	defer a.mu.RUnlock()
	if e, ok := a.m[id]; ok && now.Before(e.until) {
		return e.level
	}
	return ""
}

// raise records that ids are tainted with level from now until until, as
// the task store does: a higher level still in force is kept, the window
// only grows. It reports whether it had to forget other agents' taints to
// stay within its bound (then cached agent records must be reloaded).
func (a *agentTaints) raise(ids []identity.ID, level string, now, until time.Time) (forgot bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.m == nil {
		a.m = make(map[identity.ID]agentTaint)
	}
	if len(a.m) >= maxTracked {
		for id, e := range a.m {
			if !now.Before(e.until) {
				delete(a.m, id)
			}
		}
		if len(a.m) >= maxTracked {
			clear(a.m)
			forgot = true
		}
	}
	for _, id := range ids {
		e := a.m[id]
		if !now.Before(e.until) || policy.SensitivityLevel(level) > policy.SensitivityLevel(e.level) {
			e.level = level
		}
		if until.After(e.until) {
			e.until = until
		}
		a.m[id] = e
	}
	a.n.Store(int64(len(a.m)))
	return forgot
}

// higher returns the more sensitive of two taints.
func higher(a, b string) string {
	if policy.SensitivityLevel(b) > policy.SensitivityLevel(a) {
		return b
	}
	return a
}

// taintOf returns the taint of the task of st (the highest of its own and
// of every task it was delegated from: a delegate inherits what its
// delegator has seen) and the taint of its agent ag in force at now. What
// cannot be known (an untracked task, an ancestor that cannot be loaded)
// counts as restricted.
func (p *Pipeline) taintOf(ctx context.Context, st *taskState, ag *identity.Agent, now time.Time) (taint, agentTaint string) {
	agentTaint = higher(ag.TaintAt(now), p.taints.at(ag.ID, now))
	for cur, hops := st, 0; ; hops++ {
		cur.mu.Lock()
		own := higher(string(cur.t.Taint), cur.taint.level)
		parent, untracked := cur.t.Parent, cur.untracked
		cur.mu.Unlock()
		if untracked || hops > policy.MaxListLen {
			return restricted, agentTaint
		}
		taint = higher(taint, own)
		if parent == "" {
			return taint, agentTaint
		}
		next, err := p.taskState(ctx, parent, now)
		if err != nil {
			p.log.Warn("cannot load a delegating task's taint; treating the task as restricted", "task", st.t.ID, "parent", parent, "err", err)
			return restricted, agentTaint
		}
		cur = next
	}
}

// raiseTaint makes an allowed read of sensitive data durable taint before
// the read is allowed: the task, the tasks it was delegated from and their
// agents (for the window) are raised in the task store, then in memory.
// An error means the raise could not be stored and the read must be
// refused. Any other decision, and a read of public data, raises nothing.
//
// It runs after the budget and call reservations and before the record:
// a read the ledger then refuses leaves the task tainted all the same,
// which errs on the safe side.
func (p *Pipeline) raiseTaint(ctx context.Context, st *taskState, req *policy.Request, d Decision, now time.Time) error {
	level := req.Resource.Sensitivity
	if !d.Allowed() || req.Risk != policy.RiskRead || policy.SensitivityLevel(level) <= 0 {
		return nil
	}
	window := p.cfg.AgentTaintWindow
	renew := window / refreshDivisor
	st.mu.Lock()
	due := policy.SensitivityLevel(level) > policy.SensitivityLevel(st.taint.level) || now.Sub(st.taint.stored) >= renew
	id, actors := st.t.ID, st.t.Actors
	st.mu.Unlock()
	if !due {
		return nil
	}
	until := now.Add(window + renew)
	if err := p.cfg.Tasks.RaiseTaint(ctx, id, task.Sensitivity(level), now, until); err != nil {
		p.log.Error("taint not stored; refusing the read", "task", id, "sensitivity", level, "err", err)
		return fmt.Errorf("access: the task's taint could not be stored: %w", err)
	}
	for cur := st; cur != nil; {
		cur.mu.Lock()
		cur.taint.level = higher(cur.taint.level, level)
		if cur == st {
			cur.taint.stored = now
		}
		parent := cur.t.Parent
		cur.mu.Unlock()
		if parent == "" {
			break
		}
		p.mu.RLock()
		cur = p.tasks[parent]
		p.mu.RUnlock()
	}
	if p.taints.raise(actors, level, now, until) {
		// Forgotten taints are in the store: reload agent records.
		p.mu.Lock()
		clear(p.agents)
		p.mu.Unlock()
	}
	return nil
}
