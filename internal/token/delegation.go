package token

import (
	"context"
	"errors"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// errNoDelegationDecider: DecideDelegationsWith was never called.
var errNoDelegationDecider = errors.New("token: no delegation decider is configured")

// DelegationDecider decides a delegation at token exchange: the action
// task.delegate of the parent task's agent on the delegate, decided (and
// recorded) by the one decision pipeline like every other action, with
// the parent task's scope, the presented token's scope, the policies
// (tier no-escalation, the delegation depth limit) and its budget.
// access.Pipeline implements it.
type DelegationDecider interface {
	DecideDelegation(ctx context.Context, r DelegationRequest) (DelegationVerdict, error)
}

// DelegationRequest is a delegation to be decided.
type DelegationRequest struct {
	// Task is the parent task; Agent its agent, which presented a token
	// for it with scope TokenScope.
	Task       task.ID
	Agent      identity.ID
	TokenScope string
	// Delegate is the agent the work is handed to.
	Delegate identity.ID
}

// DelegationVerdict is the decision on a DelegationRequest. A decider
// returns an error only when it could not decide (the ledger or a store is
// unavailable); a refusal is a verdict that is not Allowed.
type DelegationVerdict struct {
	Allowed bool
	// Reason says why it was not allowed.
	Reason string
}

// DecideDelegationsWith sets the decider of every delegation. Until it is
// set, the server refuses to delegate (temporarily_unavailable): a
// delegation nothing decided never happens. Call it before serving.
func (s *Server) DecideDelegationsWith(d DelegationDecider) { s.delegations.Store(&d) }

// decideDelegation asks the decider; errors are *Error.
func (s *Server) decideDelegation(ctx context.Context, r DelegationRequest) error {
	d := s.delegations.Load()
	if d == nil {
		return errUnavailable(errNoDelegationDecider)
	}
	v, err := (*d).DecideDelegation(ctx, r)
	switch {
	case err != nil:
		return errUnavailable(err)
	case !v.Allowed:
		return errInvalidGrant(nil, "delegation denied: %s", v.Reason)
	}
	return nil
}
