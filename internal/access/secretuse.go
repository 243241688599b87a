package access

import (
	"context"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// PointSecrets is the enforcement point name of the secrets broker.
const PointSecrets = "secrets"

// DecideSecretUse decides the action secret.use of secret for agent's
// task taskID, as the secrets broker asks before it issues a lease
// (secrets.Decider). It is DecideFor: the broker vouches for the task it
// leases to; the task and agent must be active, the secret in the task's
// scope ("secret.use:<name>"), and the policies decide (the defaults hold
// it for step-up approval for autonomous agents and attach the
// inject_secret obligation). The decision is recorded like any other.
func (p *Pipeline) DecideSecretUse(ctx context.Context, taskID task.ID, agent, secret string) (policy.Decision, error) {
	d, err := p.DecideFor(ctx, taskID, agent, Action{Kind: policy.ActionSecretUse, Resource: secret, Point: PointSecrets, Trusted: true})
	return d.Decision, err
}
