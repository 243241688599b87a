package access

import (
	"strings"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/policy"
)

// PreviewApproval answers what DecideApproval would answer for who
// deciding r (approve or deny, with reach r.Reach), without recording
// anything: for pages that list the requests a person may decide and say
// beforehand whether approving is possible. Deciding itself always goes
// through DecideApproval, which decides again and records.
func (p *Pipeline) PreviewApproval(who approval.Approver, r *approval.Request, approve bool) policy.Decision {
	verdict, reach := approvalVerdict(r, approve)
	return p.judgeApproval(who, r, verdict, reach)
}

func approvalVerdict(r *approval.Request, approve bool) (verdict, reach string) {
	verdict = policy.VerdictDeny
	if approve {
		verdict = policy.VerdictApprove
	}
	reach = string(r.Reach)
	if reach == "" {
		reach = policy.ReachOnce
	}
	return verdict, reach
}

// judgeApproval is the approval.decide question and its answer by the
// live policy set; an agent's identity is refused whatever the policies
// say.
func (p *Pipeline) judgeApproval(who approval.Approver, r *approval.Request, verdict, reach string) policy.Decision {
	req := &policy.ApprovalDecision{
		Person: who.Person, Groups: who.Groups, Request: string(r.ID),
		Agent: r.Agent, AgentTier: r.AgentTier, AgentOwner: r.AgentOwner,
		Task: string(r.Task), OnBehalfOf: r.OnBehalfOf, Principal: r.Principal,
		Action: r.Action, Resource: r.Resource, Approvals: r.Approvals,
		Verdict: verdict, Reach: reach, Time: p.cfg.Now(),
	}
	pd, err := p.cfg.Engine.DecideApproval(req)
	if err == nil && strings.HasPrefix(who.Person, "spiffe://") {
		return policy.Decision{Effect: policy.Deny, Reasons: []policy.Reason{{Policy: PolicyAgentsNeverApprove, Effect: "forbid", Message: "agents never approve"}}}
	}
	return pd
}
