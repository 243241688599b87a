package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// Pipeline is the access pipeline as the gateway's Authenticator and
// Decider: the gateway decides nothing itself. Authentication failures
// are the pipeline's recorded refusals; each call is decided (and
// recorded as action.decided) by the pipeline, rate limits and the call
// budget included (access.Limits of point "mcp"); tools/list and
// prompts/list ask access.Pipeline.Preview. It is safe for concurrent
// use.
type Pipeline struct {
	p *access.Pipeline
	// annotations memoizes decoded tool annotations by their JSON: each
	// call carries its tool's, and a session's tools change rarely.
	annotations sync.Map // string -> *policy.ToolAnnotations
	memoized    atomic.Int64
}

var (
	_ Authenticator = (*Pipeline)(nil)
	_ Decider       = (*Pipeline)(nil)
)

// NewPipeline returns the gateway's view of p.
func NewPipeline(p *access.Pipeline) *Pipeline { return &Pipeline{p: p} }

// Point is the enforcement point name of the gateway's actions.
const Point = "mcp"

// Authenticate implements Authenticator with access.Pipeline.Authenticate:
// a refused credential is a recorded denial (at the endpoint, the
// resource cred.Resource) and wraps ErrUnauthenticated; a credential
// that could not be checked (access.ErrAuthUnavailable, an unavailable
// ledger) is returned as it is.
func (a *Pipeline) Authenticate(ctx context.Context, c Credential) (*Principal, error) {
	act := access.Action{Resource: c.Resource, Point: Point}
	if c.Malformed != nil {
		err := a.p.RefuseCredential(ctx, act, c.Malformed)
		return nil, authError(err)
	}
	subj, err := a.p.Authenticate(ctx, access.Credential{
		Token: c.Token, DPoPProof: c.DPoPProof, Scheme: c.Scheme, Method: c.Method, URL: c.URL, Audiences: c.Audiences,
	}, act)
	if err != nil {
		return nil, authError(err)
	}
	cl := subj.Claims
	p := &Principal{
		Task: string(subj.Task), Agent: subj.Agent, Chain: cl.Act.Chain(), OnBehalfOf: cl.Subject,
		Tier: cl.Tier, Scope: cl.Scope, TokenID: cl.ID,
	}
	if cl.Expiry != nil {
		p.Expiry = cl.Expiry.Time()
	}
	return p, nil
}

// Live reports whether p's task, its agent and delegators are still
// active (access.Pipeline.Active).
func (a *Pipeline) Live(p *Principal) bool {
	return a.p.Active(task.ID(p.Task), append(slices.Clip(p.Chain), p.Agent))
}

// authError keeps a refusal a refusal (401) only when it was recorded:
// a refusal the ledger could not take, or a check that could not be
// made, is the gateway's 503.
func authError(err error) error {
	if errors.Is(err, access.ErrUnauthenticated) && !errors.Is(err, audit.ErrUnavailable) {
		return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
	}
	return err
}

// maxMemoizedAnnotations bounds Pipeline.annotations; past it the memo
// starts over (upstreams choose their tools' annotations).
const maxMemoizedAnnotations = 1024

// toolAnnotations returns the decoded annotations raw, or nil for ones
// that do not decode. Callers share the result and must not modify it.
func (a *Pipeline) toolAnnotations(raw json.RawMessage) *policy.ToolAnnotations {
	if v, ok := a.annotations.Load(string(raw)); ok {
		return v.(*policy.ToolAnnotations)
	}
	var out *policy.ToolAnnotations
	if ann := new(policy.ToolAnnotations); json.Unmarshal(raw, ann) == nil {
		out = ann
	}
	if a.memoized.Add(1) > maxMemoizedAnnotations {
		a.annotations.Clear()
		a.memoized.Store(1)
	}
	a.annotations.Store(string(raw), out)
	return out
}

// Decide implements Decider: the pipeline decides (and records) r as the
// authenticated subject; a preview asks access.Pipeline.Preview, which
// records and spends nothing.
func (a *Pipeline) Decide(ctx context.Context, r Request) (Decision, error) {
	if r.Principal == nil {
		return Decision{}, errors.New("no principal")
	}
	// The tool's annotations come from the upstream the gateway is
	// configured with, not from the agent: they are trusted hints.
	act := access.Action{Kind: r.Action, Resource: r.Resource, Server: r.Upstream, Point: Point, Trusted: true, Arguments: r.Arguments}
	if len(r.Annotations) > 0 {
		act.Annotations = a.toolAnnotations(r.Annotations)
	}
	subj := access.Subject{Task: task.ID(r.Principal.Task), Agent: r.Principal.Agent, Scope: r.Principal.Scope}
	if r.Preview {
		switch a.p.Preview(ctx, subj, act) {
		case policy.Allow:
			return Decision{Effect: Allow, Recorded: true}, nil
		case policy.ApprovalRequired:
			return Decision{Effect: ApprovalRequired, Recorded: true}, nil
		}
		return Decision{Effect: Deny, Recorded: true}, nil
	}
	dec, err := a.p.DecideAs(ctx, subj, act)
	out := Decision{Recorded: true, Risk: dec.Risk, RetryAfter: dec.RetryAfter}
	switch dec.Effect {
	case policy.Allow:
		out.Effect = Allow
	case policy.ApprovalRequired:
		out.Effect = ApprovalRequired
	default:
		out.Effect = Deny
	}
	for _, rs := range dec.Reasons {
		out.Reasons = append(out.Reasons, rs.Policy+": "+rs.Message)
		switch {
		case rs.Policy == access.PolicyRateLimit:
			out.Limit = LimitRate
		case slices.Contains(budgetPolicies, rs.Policy):
			out.Limit = LimitBudget
		}
	}
	out.Reasons = append(out.Reasons, dec.Errors...)
	if err != nil {
		out.Effect = Deny
		out.Reasons = append(out.Reasons, err.Error())
		// The pipeline records its refusals; only a failure to record
		// leaves the gateway to do it.
		out.Recorded = !errors.Is(err, audit.ErrUnavailable)
	}
	if out.Effect == Deny && len(out.Reasons) == 0 {
		out.Reasons = []string{"no policy permits this action (denied by default)"}
	}
	for _, o := range dec.Obligations {
		out.Obligations = append(out.Obligations, Obligation{Kind: o})
	}
	return out, nil
}

// budgetPolicies are the policies whose denial means a spent budget: the
// gateway's call budget, the task's budget, and the default policy set's
// budget guard.
var budgetPolicies = []string{access.PolicyCallBudget, "mandate:budget", "budget"}
