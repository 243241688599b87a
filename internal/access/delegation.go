package access

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// PointOAuth is the enforcement point of delegations decided at token
// exchange.
const PointOAuth = "oauth"

// PolicyDelegationDepth is the pipeline's own denial of a delegation from
// a task at Config.MaxDelegationDepth, whatever the policies say.
const PolicyDelegationDepth = "mandate:delegation-depth"

var _ token.DelegationDecider = (*Pipeline)(nil)

// DecideDelegation implements token.DelegationDecider: the delegation is
// the action task.delegate of the parent task's agent on the delegate,
// decided and recorded like every other action.
func (p *Pipeline) DecideDelegation(ctx context.Context, r token.DelegationRequest) (token.DelegationVerdict, error) {
	act := Action{Kind: policy.ActionTaskDelegate, Resource: r.Delegate.String(), Point: PointOAuth}
	d, err := p.decide(ctx, r.Task, r.Agent.String(), r.TokenScope, act)
	if err != nil && (errors.Is(err, audit.ErrUnavailable) || !errors.Is(err, ErrUnauthenticated) && !errors.Is(err, ErrInvalidAction)) {
		return token.DelegationVerdict{}, err // not decided: the ledger or a store failed
	}
	if d.Allowed() {
		return token.DelegationVerdict{Allowed: true}, nil
	}
	ids, text := reasonText(d.Decision)
	if text == "" {
		text = ids
	}
	if d.Effect == policy.ApprovalRequired {
		text = "it needs approval (" + text + ")"
	}
	return token.DelegationVerdict{Reason: text}, nil
}

// delegate completes a task.delegate action with what the pipeline knows
// of the delegate: its tier comes from its record, never from the caller,
// and an unknown or inactive delegate is refused.
func (p *Pipeline) delegate(ctx context.Context, act *Action, now time.Time) error {
	id, err := identity.ParseID(act.Resource)
	if err != nil {
		return fmt.Errorf("%w: task.delegate names an agent ID: %v", ErrInvalidAction, err)
	}
	a, err := p.agent(ctx, id, now)
	if err != nil {
		return err
	}
	// Status is Revocations', as for the acting agent (see decide).
	if p.cfg.Revocations.Inactive("", []string{act.Resource}) {
		return fmt.Errorf("%w: the delegate %s is not active", ErrInvalidAction, id)
	}
	act.delegateTier = string(a.Tier)
	return nil
}

// tooDeep reports whether t may not delegate: it is at the depth limit.
func (p *Pipeline) tooDeep(t *task.Task) bool { return t.Depth >= p.cfg.MaxDelegationDepth }
