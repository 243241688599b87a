package admin

import (
	"context"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// OffboardResult is what offboarding a person changed, and what is left
// for someone else to take over.
type OffboardResult struct {
	Person string `json:"person"`
	// Suspended are the agents suspended now; AlreadyInactive those that
	// were suspended or retired before.
	Suspended       []identity.ID `json:"suspended"`
	AlreadyInactive []identity.ID `json:"already_inactive"`
	// RevokedTasks are the tasks the suspensions revoked.
	RevokedTasks []task.ID `json:"revoked_tasks"`
	// CancelledApprovals are the person's agents' pending approvals,
	// cancelled.
	CancelledApprovals []string `json:"cancelled_approvals"`
	// NeedNewOwner are every agent the person owns (not retired): give
	// each a new owner before resuming it.
	NeedNewOwner []identity.ID `json:"need_new_owner"`
}

// ApprovalCanceller cancels the pending approvals of the agents a person
// owns, each recorded, and returns their ids.
type ApprovalCanceller func(ctx context.Context, owner, reason string) ([]string, error)

// Offboard takes a departing person out of every agent they own: each
// active agent is suspended (which revokes its tasks), the pending
// approvals of their agents are cancelled, and the agents that need a
// new owner are listed. Every change is its own ledger event
// (agent.suspended, task.revoked, approval.cancelled). It is safe to run
// again: what is done is not done twice.
func (s *Service) Offboard(ctx context.Context, person, reason string, cancel ApprovalCanceller) (*OffboardResult, error) {
	if person == "" || len(person) > identity.MaxContactLen {
		return nil, fmt.Errorf("%w: the person to offboard is required", identity.ErrInvalid)
	}
	if reason == "" {
		reason = "owner " + person + " offboarded"
	}
	agents, err := s.cfg.Agents.ListAgents(ctx, identity.Filter{Owner: person})
	if err != nil {
		return nil, err
	}
	res := &OffboardResult{Person: person, Suspended: []identity.ID{}, AlreadyInactive: []identity.ID{},
		RevokedTasks: []task.ID{}, CancelledApprovals: []string{}, NeedNewOwner: []identity.ID{}}
	for _, a := range agents {
		if a.Status != identity.StatusRetired {
			res.NeedNewOwner = append(res.NeedNewOwner, a.ID)
		}
		if a.Status != identity.StatusActive {
			res.AlreadyInactive = append(res.AlreadyInactive, a.ID)
			continue
		}
		active, err := s.cfg.Tasks.ListTasks(ctx, task.Filter{Agent: a.ID, Status: task.StatusActive})
		if err != nil {
			return res, err
		}
		if _, err := s.SuspendAgent(ctx, a.ID.String(), reason); err != nil && !errors.Is(err, ErrTransition) {
			return res, fmt.Errorf("suspend %s: %w", a.ID, err)
		}
		res.Suspended = append(res.Suspended, a.ID)
		for _, t := range active {
			res.RevokedTasks = append(res.RevokedTasks, t.ID)
		}
	}
	if cancel != nil {
		ids, err := cancel(ctx, person, reason)
		res.CancelledApprovals = append(res.CancelledApprovals, ids...)
		if err != nil {
			return res, err
		}
	}
	return res, nil
}
