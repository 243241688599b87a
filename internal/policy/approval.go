package policy

import (
	"crypto/sha256"
	_ "embed"
	"encoding/hex"
	"fmt"
	"slices"
	"sync"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/cedar-policy/cedar-go/types"
	xast "github.com/cedar-policy/cedar-go/x/exp/ast"
	"github.com/cedar-policy/cedar-go/x/exp/schema"
	"github.com/cedar-policy/cedar-go/x/exp/schema/resolved"
	"github.com/cedar-policy/cedar-go/x/exp/schema/validate"
)

// Who may decide a held action is policy too: the Cedar action
// approval.decide, whose principal is a person (Human) and whose resource
// is the approval request (ApprovalRequest). It has a schema of its own
// (ApprovalSchemaText), so the agent policies, which speak of
// principal.tier and context.risk, are never evaluated for it: only
// policies whose action scope names approval.decide apply.

// ActionApprovalDecide is the action of a person deciding an approval
// request. It is not one of Actions: those are what agents do.
const ActionApprovalDecide = "approval.decide"

// Entity types of the approval schema.
const (
	TypeApprovalRequest = "ApprovalRequest"
)

// ApprovalSchemaText is the Cedar schema of approval.decide.
//
//go:embed approval.cedarschema
var ApprovalSchemaText []byte

// Verdicts and reaches of an approval decision (context.verdict,
// context.reach).
const (
	VerdictApprove = "approve"
	VerdictDeny    = "deny"
	ReachOnce      = "once"
	ReachTask      = "task"
)

var (
	approvalSchemaOnce sync.Once
	approvalSchema     *resolved.Schema
	approvalSchemaErr  error
)

func newApprovalValidator() (*validate.Validator, error) {
	approvalSchemaOnce.Do(func() {
		var s schema.Schema
		s.SetFilename("approval.cedarschema")
		if err := s.UnmarshalCedar(ApprovalSchemaText); err != nil {
			approvalSchemaErr = fmt.Errorf("policy: built-in approval schema: %w", err)
			return
		}
		approvalSchema, approvalSchemaErr = s.Resolve()
	})
	if approvalSchemaErr != nil {
		return nil, approvalSchemaErr
	}
	return validate.New(approvalSchema), nil
}

// approvalScoped reports whether p's action scope names approval.decide
// and nothing else. A scope that mixes it with agent actions is not: it
// fails validation against either schema.
func approvalScoped(p *xast.Policy) bool {
	is := func(e types.EntityUID) bool { return e.Type == typeAction && string(e.ID) == ActionApprovalDecide }
	switch sc := p.Action.(type) {
	case xast.ScopeTypeEq:
		return is(sc.Entity)
	case xast.ScopeTypeInSet:
		return len(sc.Entities) > 0 && !slices.ContainsFunc(sc.Entities, func(e types.EntityUID) bool { return !is(e) })
	}
	return false
}

// approvalVersions fingerprints, for each approval name, the forbids
// annotated with it: their ids and Cedar text, in set order.
func approvalVersions(ordered []*compiled) map[string]string {
	hs := map[string][]byte{}
	for _, c := range ordered {
		if !c.hasApproval {
			continue
		}
		h := hs[c.Approval]
		h = appendKey(h, c.ID, string(c.policy.MarshalCedar()))
		hs[c.Approval] = h
	}
	out := make(map[string]string, len(hs))
	for name, h := range hs {
		sum := sha256.Sum256(h)
		out[name] = hex.EncodeToString(sum[:8])
	}
	return out
}

// ApprovalVersion names what the set asks of each of the approval names:
// a fingerprint of the forbids annotated @approval with them ("-" for a
// name no forbid carries). An approval granted under one version lifts
// nothing under another: a changed policy asks again.
func (s *Set) ApprovalVersion(names []string) string {
	if s == nil {
		return ""
	}
	sorted := slices.Clone(names)
	slices.Sort(sorted)
	var k []byte
	for _, n := range slices.Compact(sorted) {
		v := s.approvalVersions[n]
		if v == "" {
			v = "-"
		}
		k = appendKey(k, n, v)
	}
	sum := sha256.Sum256(k)
	return "pv1:" + hex.EncodeToString(sum[:12])
}

// ApprovalDecision is a person deciding a held action: the question
// approval.decide policies answer.
type ApprovalDecision struct {
	// Person is the decider's identity; Groups the groups mandate knows
	// them to be in.
	Person string   `json:"person"`
	Groups []string `json:"groups,omitempty"`
	// Request is the approval request's id; the other fields describe it.
	Request    string   `json:"request"`
	Agent      string   `json:"agent"`
	AgentTier  string   `json:"agent_tier"`
	AgentOwner string   `json:"agent_owner"`
	Task       string   `json:"task"`
	OnBehalfOf string   `json:"on_behalf_of"`
	Principal  string   `json:"principal"`
	Action     string   `json:"action"`
	Resource   string   `json:"resource"`
	Approvals  []string `json:"approvals,omitempty"`
	// Verdict is VerdictApprove or VerdictDeny; Reach ReachOnce or
	// ReachTask.
	Verdict string    `json:"verdict"`
	Reach   string    `json:"reach"`
	Time    time.Time `json:"time,omitzero"`
}

// Validate checks the fields policies rely on.
func (r *ApprovalDecision) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	switch {
	case r.Person == "" || len(r.Person) > MaxIDLen:
		return bad("person is required (at most %d bytes)", MaxIDLen)
	case r.Request == "" || len(r.Request) > MaxIDLen:
		return bad("request is required")
	case r.Verdict != VerdictApprove && r.Verdict != VerdictDeny:
		return bad("verdict must be approve or deny")
	case r.Reach != ReachOnce && r.Reach != ReachTask:
		return bad("reach must be once or task")
	case TierLevel(r.AgentTier) < 0:
		return bad("agent tier %q is not assist, supervised or autonomous", r.AgentTier)
	case len(r.Groups) > MaxListLen || len(r.Approvals) > MaxListLen:
		return bad("lists must have at most %d entries", MaxListLen)
	}
	for _, s := range []string{r.Agent, r.AgentOwner, r.Task, r.OnBehalfOf, r.Principal, r.Action, r.Resource} {
		if len(s) > MaxIDLen {
			return bad("identifiers must be at most %d bytes", MaxIDLen)
		}
	}
	return nil
}

// DecideApproval decides whether a person may decide an approval request
// as asked: allow or deny (approval_required has no meaning here; an
// @approval forbid of approval.decide counts as a plain forbid). Like
// Decide, it denies by default and on any policy error.
func (s *Set) DecideApproval(r *ApprovalDecision) (Decision, error) {
	if err := r.Validate(); err != nil {
		return Decision{Effect: Deny, Errors: []string{err.Error()}}, err
	}
	if s == nil {
		return Decision{Effect: Deny}, nil
	}
	human := types.NewEntityUID(TypeHuman, types.String(r.Person))
	res := types.NewEntityUID(TypeApprovalRequest, types.String(r.Request))
	entities := types.EntityMap{
		human: {UID: human, Attributes: types.NewRecord(types.RecordMap{
			"id": types.String(r.Person), "groups": strSet(r.Groups),
		})},
		res: {UID: res, Attributes: types.NewRecord(types.RecordMap{
			"agent": types.String(r.Agent), "agent_tier": types.String(r.AgentTier),
			"agent_tier_level": types.Long(TierLevel(r.AgentTier)), "agent_owner": types.String(r.AgentOwner),
			"task": types.String(r.Task), "on_behalf_of": types.String(r.OnBehalfOf), "principal": types.String(r.Principal),
			"action": types.String(r.Action), "resource": types.String(r.Resource), "approvals": strSet(r.Approvals),
		})},
	}
	req := cedar.Request{
		Principal: human, Action: actionUID(ActionApprovalDecide), Resource: res,
		Context: types.NewRecord(types.RecordMap{"verdict": types.String(r.Verdict), "reach": types.String(r.Reach)}),
	}
	fs, ps := s.candidates(ActionApprovalDecide, res, types.EntityUID{}, false)
	list := newPolicyList()
	list.set(fs, ps)
	var diag cedar.Diagnostic
	if !list.empty() {
		_, diag = cedar.Authorize(list, entities, req)
	}
	var forbids, permits, errs []Reason
	var errText []string
	for _, m := range diag.Reasons {
		rs := s.reason(m.PolicyID)
		if s.isForbid(m.PolicyID) {
			forbids = append(forbids, rs)
		} else {
			permits = append(permits, rs)
		}
	}
	for _, e := range diag.Errors {
		rs := s.reason(e.PolicyID)
		rs.Effect, rs.Message = "error", e.Message
		errs = append(errs, rs)
		errText = append(errText, fmt.Sprintf("policy %s (%s) errored: %s", rs.Policy, rs.Position, e.Message))
	}
	switch {
	case len(errs) > 0:
		return Decision{Effect: Deny, Reasons: errs, Errors: errText}, nil
	case len(forbids) > 0:
		return Decision{Effect: Deny, Reasons: forbids}, nil
	case len(permits) == 0:
		return Decision{Effect: Deny}, nil
	}
	return Decision{Effect: Allow, Reasons: permits}, nil
}

// DecideApproval decides r against the live set. See Set.DecideApproval.
func (e *Engine) DecideApproval(r *ApprovalDecision) (Decision, error) {
	return e.cur.Load().DecideApproval(r)
}

// ApprovalVersion is the live set's ApprovalVersion.
func (e *Engine) ApprovalVersion(names []string) string {
	return e.cur.Load().ApprovalVersion(names)
}
