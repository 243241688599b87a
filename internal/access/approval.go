package access

import (
	"context"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// Approvals in the pipeline: an approval_required decision opens (or
// finds) an approval request (Config.ApprovalService), every decision
// asks which approvals its action carries (serviceChecker), and who may
// decide a request is decided here too, as the action approval.decide of
// a person (DecideApproval): one decider for all of it.

// PointApprovals is the enforcement point of approval.decide decisions.
const PointApprovals = "approvals"

// serviceChecker is the approval service as the pipeline's
// ApprovalChecker: approvals are bound to the action's resource and the
// digest of its arguments.
type serviceChecker struct{ svc *approval.Service }

func (c serviceChecker) Approved(ctx context.Context, taskID task.ID, act Action) ([]string, error) {
	return c.svc.Approved(ctx, taskID, approval.Binding{Action: act.Kind, Resource: act.Resource, Arguments: act.Arguments})
}

// openApproval opens or finds the request of an approval_required
// decision. A request that cannot be opened leaves the decision
// approval_required without one (the enforcement point then fails
// closed), and says why.
func (p *Pipeline) openApproval(ctx context.Context, t *task.Task, ag *identity.Agent, act Action, d Decision) (id, refused string) {
	reasons := make([]string, 0, len(d.Reasons))
	for _, r := range d.Reasons {
		reasons = append(reasons, r.Policy+": "+r.Message)
	}
	r, err := p.cfg.ApprovalService.Open(ctx, approval.OpenRequest{
		Agent: ag.ID.String(), AgentTier: string(ag.Tier), AgentOwner: ag.Owner, Escalation: ag.Escalation,
		Task: t.ID, TaskExpires: t.ExpiresAt, Chain: actorStrings(t.Actors), OnBehalfOf: t.OnBehalfOf, Principal: t.Principal,
		Action: act.Kind, Resource: act.Resource, Server: act.Server, Arguments: act.Arguments,
		Reasons: reasons, Approvals: d.Approvals, Point: act.Point, RequestID: act.RequestID,
	})
	if err != nil {
		p.log.Warn("approval request not opened", "task", t.ID, "action", act.Kind, "err", err)
		return "", err.Error()
	}
	return string(r.ID), ""
}

// DecideApproval decides whether a person may decide an approval request
// as asked (approve or deny, with reach r.Reach): the action
// approval.decide, principal the person, resource the request, decided by
// the live policy set and recorded (action.decided) before it returns. A
// denial returns approval.ErrForbidden with the policies' reasons; an
// agent's identity is never a person's and is refused whatever the
// policies say.
func (p *Pipeline) DecideApproval(ctx context.Context, who approval.Approver, r *approval.Request, approve bool) (Decision, error) {
	verdict, reach := approvalVerdict(r, approve)
	d := Decision{Decision: p.judgeApproval(who, r, verdict, reach)}
	d.Task, d.Agent = r.Task, r.Agent
	ids, text := reasonText(d.Decision)
	ev := audit.Event{
		Type: TypeDecided, Actor: who.Person, Agent: r.Agent, Chain: r.Chain, OnBehalfOf: r.OnBehalfOf, Task: string(r.Task),
		Action: policy.ActionApprovalDecide, Resource: "approval:" + string(r.ID), Decision: string(d.Effect), Reason: text,
		ApprovalID: string(r.ID), ArgsDigest: r.ArgsDigest, Point: PointApprovals,
		Details: map[string]string{"verdict": verdict, "reach": reach, "held_action": r.Action, "held_resource": r.Resource},
	}
	if who.Via != "" {
		ev.Details["via"] = who.Via
	}
	if ids != "" {
		ev.Details["policies"] = ids
	}
	for _, rs := range d.Reasons {
		ev.Reasons = append(ev.Reasons, audit.PolicyReason{Policy: rs.Policy, Message: rs.Message})
	}
	if err := p.cfg.Recorder.Record(ctx, ev); err != nil {
		// Fail closed: a decision that cannot be audited is not made.
		return Decision{Decision: policy.Decision{Effect: policy.Deny, Errors: []string{"audit log unavailable"}}}, errors.Join(audit.ErrUnavailable, err)
	}
	if !d.Allowed() {
		if text == "" {
			text = "no policy allows it"
		}
		return d, fmt.Errorf("%w: %s may not %s %s: %s", approval.ErrForbidden, who.Person, verdict, r.ID, text)
	}
	return d, nil
}

// PolicyAgentsNeverApprove is the pipeline's own denial of an agent
// presented as an approver.
const PolicyAgentsNeverApprove = "mandate:agents-never-approve"
