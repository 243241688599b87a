package access

import (
	"context"

	"github.com/mandatehq/mandate/internal/policy"
)

// Preview answers what Decide would answer for act before seeing its
// arguments, for an enforcement point that lists what an agent may do
// (the MCP gateway's tools/list and prompts/list): the same task and
// agent checks, scope, classifier and policy set as DecideAs, but no
// event is recorded, no budget is reserved, no rate limit is consumed and
// no approval is asked for. It returns policy.Deny when the action would
// certainly be denied (a refusal or error too: listing less is the safe
// side), otherwise the effect the policies give (approval_required
// included: an approval may lift it).
func (p *Pipeline) Preview(ctx context.Context, subj Subject, act Action) policy.Effect {
	act.preview = true
	d, err := p.decide(ctx, subj.Task, subj.Agent, subj.Scope, act)
	if err != nil {
		return policy.Deny
	}
	return d.Effect
}
