package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// checkEntitlement validates an entitlement an admin sets: task.Entitlement
// rules, and a lifetime no longer than this server lets any task live.
func (s *Service) checkEntitlement(e *task.Entitlement) error {
	if err := e.Validate(); err != nil {
		return err
	}
	if e.MaxTaskTTL > s.cfg.MaxTaskTTL {
		return fmt.Errorf("%w: entitlement max_task_ttl %s is longer than the server's longest task lifetime %s", task.ErrInvalid, e.MaxTaskTTL, s.cfg.MaxTaskTTL)
	}
	return nil
}

// entitlementDetails adds e to event details under prefix: its scope,
// sensitivity and lifetime, or "none".
func entitlementDetails(d map[string]string, prefix string, e *task.Entitlement) {
	if e == nil {
		d[prefix] = "none"
		return
	}
	d[prefix+".scope"] = e.Scope.String()
	d[prefix+".max_sensitivity"] = string(e.MaxSensitivity)
	d[prefix+".max_task_ttl"] = e.MaxTaskTTL.String()
}

// GetEntitlement returns the entitlement of the agent named by ref, or nil
// (and no error) if it has none.
func (s *Service) GetEntitlement(ctx context.Context, ref string) (*task.Entitlement, error) {
	id, err := s.AgentID(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	}
	e, err := s.cfg.Entitlements.GetEntitlement(ctx, id)
	if errors.Is(err, task.ErrNoEntitlement) {
		return nil, nil
	}
	return e, err
}

// UpdateAgentRequest is the input to UpdateAgent: exactly one of
// Entitlement and RemoveEntitlement.
type UpdateAgentRequest struct {
	// Entitlement replaces the agent's entitlement.
	Entitlement *task.Entitlement `json:"entitlement,omitempty"`
	// RemoveEntitlement takes the agent's entitlement away: it can no
	// longer start tasks by itself or be delegated to.
	RemoveEntitlement bool `json:"remove_entitlement,omitempty"`
	// RevokeExceeding revokes, with their descendants, the agent's active
	// tasks that do not fit the new entitlement. Without it a change
	// narrows nothing that is running.
	RevokeExceeding bool `json:"revoke_exceeding,omitempty"`
	// Reason is recorded with the change.
	Reason string `json:"reason,omitempty"`
}

// UpdateAgentResult is what UpdateAgent changed.
type UpdateAgentResult struct {
	Agent       *identity.Agent   `json:"agent"`
	Entitlement *task.Entitlement `json:"entitlement"`
	// Revoked lists the tasks revoked for not fitting (and their
	// descendants).
	Revoked []task.ID `json:"revoked"`
}

// ErrNothingToUpdate: an UpdateAgentRequest that names no change, or two
// that contradict each other.
var ErrNothingToUpdate = errors.New("the update names no single change")

// UpdateAgent changes an agent's entitlement and records
// agent.entitlement_changed with the old and new ceilings. Lowering an
// entitlement narrows nothing that is running unless RevokeExceeding is
// set: then every active task of the agent that no longer fits is revoked
// (task.revoked, reason "exceeds entitlement"), with its descendants. If
// the change cannot be recorded it is undone.
func (s *Service) UpdateAgent(ctx context.Context, ref string, req UpdateAgentRequest) (*UpdateAgentResult, error) {
	switch {
	case req.Entitlement == nil && !req.RemoveEntitlement:
		return nil, fmt.Errorf("%w: give an entitlement or remove_entitlement", ErrNothingToUpdate)
	case req.Entitlement != nil && req.RemoveEntitlement:
		return nil, fmt.Errorf("%w: entitlement and remove_entitlement together", ErrNothingToUpdate)
	case req.RemoveEntitlement && req.RevokeExceeding:
		return nil, fmt.Errorf("%w: revoke_exceeding needs an entitlement to measure tasks against; to stop every task of the agent, suspend it", ErrNothingToUpdate)
	}
	if req.Entitlement != nil {
		if err := s.checkEntitlement(req.Entitlement); err != nil {
			return nil, err
		}
	}
	a, err := s.GetAgent(ctx, ref)
	if err != nil {
		return nil, err
	}
	if a.Status == identity.StatusRetired {
		return nil, fmt.Errorf("%w: agent %s is retired", ErrTransition, a.ID)
	}
	prev, err := s.cfg.Entitlements.SetEntitlement(ctx, a.ID, req.Entitlement, s.now())
	if err != nil {
		return nil, fmt.Errorf("update agent %s: %w", a.ID, err)
	}
	details := map[string]string{}
	entitlementDetails(details, "old", prev)
	entitlementDetails(details, "new", req.Entitlement)
	if req.Reason != "" {
		details["reason"] = req.Reason
	}
	ev := audit.Event{Type: audit.TypeAgentEntitlementChanged, Agent: a.ID.String(), Reason: req.Reason, Details: details}
	if err := s.record(ctx, ev); err != nil {
		// A ceiling nobody can see raised must not be in force.
		if _, rerr := s.cfg.Entitlements.SetEntitlement(ctx, a.ID, prev, s.now()); rerr != nil {
			s.log.Error("unrecorded entitlement change could not be undone", "agent", a.ID, "err", rerr)
		}
		return nil, err
	}
	res := &UpdateAgentResult{Agent: a, Entitlement: req.Entitlement, Revoked: []task.ID{}}
	if req.RevokeExceeding {
		if res.Revoked, err = s.revokeExceeding(ctx, a.ID, req.Entitlement); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// revokeExceeding revokes the agent's active tasks that e does not admit,
// with their descendants, and records each.
func (s *Service) revokeExceeding(ctx context.Context, agent identity.ID, e *task.Entitlement) ([]task.ID, error) {
	active, err := s.cfg.Tasks.ListTasks(ctx, task.Filter{Agent: agent, Status: task.StatusActive})
	if err != nil {
		return nil, fmt.Errorf("list tasks of %s: %w", agent, err)
	}
	const reason = "exceeds entitlement"
	revoked := []task.ID{}
	for _, t := range active {
		fit := e.Admits(t)
		if fit == nil {
			continue
		}
		finished, err := s.cfg.Tasks.FinishTask(ctx, t.ID, task.StatusRevoked, reason, s.now())
		if errors.Is(err, task.ErrNotActive) {
			continue // ended meanwhile, or revoked with an ancestor above
		}
		if err != nil {
			return nil, fmt.Errorf("revoke task %s: %w", t.ID, err)
		}
		s.cfg.Revoker.RevokeTasks(finished...)
		revoked = append(revoked, finished...)
		for _, fid := range finished {
			ev := audit.Event{Type: audit.TypeTaskRevoked, Task: string(fid), Reason: reason}
			if fid == t.ID {
				ev.Agent = agent.String()
				ev.Details = map[string]string{"exceeds": fit.Error()}
			} else {
				ev.Details = map[string]string{"cascade_from": string(t.ID)}
			}
			if err := s.record(ctx, ev); err != nil {
				return nil, err
			}
		}
	}
	return revoked, nil
}

// admitTask checks a task an admin starts against its agent's entitlement.
// An agent without one has no ceiling other than the server's: the admin
// starting the task is the authority. A request that named no lifetime or
// sensitivity gets the entitlement's ceiling when the defaults are above
// it; one that named more than the ceiling is refused, and so recorded.
func (s *Service) admitTask(ctx context.Context, t *task.Task, askedTTL, askedSensitivity bool) error {
	e, err := s.cfg.Entitlements.GetEntitlement(ctx, t.Agent)
	if errors.Is(err, task.ErrNoEntitlement) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("start task: entitlement: %w", err)
	}
	if !askedTTL && t.ExpiresAt.Sub(t.CreatedAt) > e.MaxTaskTTL {
		t.ExpiresAt = t.CreatedAt.Add(e.MaxTaskTTL)
	}
	if !askedSensitivity && t.Sensitivity.Rank() > e.MaxSensitivity.Rank() {
		t.Sensitivity = e.MaxSensitivity
	}
	fit := e.Admits(t)
	if fit == nil {
		return nil
	}
	d := map[string]string{
		"purpose": t.Purpose, "scope": t.Scope.String(), "sensitivity": string(t.Sensitivity),
		"ttl": t.ExpiresAt.Sub(t.CreatedAt).String(),
	}
	entitlementDetails(d, "entitlement", e)
	var ex *task.ExceedsError
	if errors.As(fit, &ex) {
		d["exceeds"] = ex.Limit
	}
	ev := audit.Event{
		Type: audit.TypeTaskRefused, Agent: t.Agent.String(), OnBehalfOf: t.OnBehalfOf,
		Decision: audit.DecisionDeny, Reason: fit.Error(), Details: d,
	}
	if err := s.record(ctx, ev); err != nil {
		return errors.Join(fit, err)
	}
	return fit
}
