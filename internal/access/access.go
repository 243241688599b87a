// Package access is mandate's one decision pipeline. Every enforcement
// point (MCP gateway, egress proxy, coding-agent hooks, the AuthZEN API)
// hands an attempted action to Pipeline.Decide and enforces the answer;
// nothing else decides.
//
//  1. authenticate — verify the task token (and its DPoP proof) with the
//     shared token.Verifier (cached), or accept a task named by an
//     authenticated enforcement point (DecideFor)
//  2. task check   — active, unexpired, inside budget and scope
//  3. policy       — build the Cedar request (agent, task, delegation
//     chain, risk, resource sensitivity, destination, taint, time) and
//     decide it with the live policy set; a shadow (candidate) set, if
//     any, is evaluated beside it and differences are recorded
//  4. audit        — the decision event is durable before Decide returns;
//     if it cannot be written the action is denied
//
// Approval waiting and obligations fulfilment (secrets injection) belong
// to the enforcement points and the approval service; Decide returns
// approval_required with the approvals that would lift it, and the
// obligations of an allow.
package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// Event types recorded by the pipeline.
const (
	// TypeDecided is recorded for every decision, allow or not.
	TypeDecided = audit.TypeActionDecided
	// TypeShadowDiffers is recorded when the shadow (candidate) policy
	// set would have decided differently from the live one.
	TypeShadowDiffers = audit.TypePolicyShadowDiffers
)

// Sentinel errors returned by Decide (with a deny decision).
var (
	// ErrUnauthenticated: the credential is missing, invalid, revoked or
	// not a task token.
	ErrUnauthenticated = errors.New("task credential not accepted")
	// ErrInvalidAction: the action cannot be decided (unknown kind,
	// missing resource, oversized field).
	ErrInvalidAction = errors.New("invalid action")
)

// Credential is what an agent presents with an action: its task token
// and, for a DPoP-bound token, the proof for the HTTP request carrying it.
type Credential struct {
	Token     string
	DPoPProof string
	// Scheme is the Authorization scheme the token came with
	// (token.FromHeader); a DPoP-bound token needs token.SchemeDPoP.
	Scheme token.Scheme
	// Method and URL of the HTTP request the proof was made for.
	Method string
	URL    string
	// Agent, if set, is the agent the caller claims to be: the token must
	// be that agent's.
	Agent string
	// Audiences, if set, are the audiences the enforcement point accepts
	// (token.VerifyRequest.Audiences: its own resource identifier and the
	// issuer); empty means the issuer only.
	Audiences []string
}

// Action is one attempted operation.
type Action struct {
	// Kind is one of policy.Actions.
	Kind string
	// Resource is the resource as named in scope patterns.
	Resource string
	// Server is the MCP server of a tool, prompt or resource.
	Server      string
	Destination policy.Destination
	Command     string
	// Annotations are the tool's MCP annotations; used only when Trusted.
	Annotations *policy.ToolAnnotations
	// Sensitivity may raise (never lower) the configured sensitivity of
	// the resource.
	Sensitivity string
	// Labels add resource labels; used only when Trusted.
	Labels []string
	// Trusted marks hints (annotations, labels) supplied by an
	// authenticated enforcement point rather than by the agent itself:
	// an agent could otherwise declare its tools read-only.
	Trusted bool
	// Approvals are approvals granted for this exact action, asserted by
	// an enforcement point; used only when Trusted (an agent cannot
	// approve its own actions). The pipeline also asks Config.Approvals.
	Approvals []string
	// Arguments are the action's arguments (canonical JSON), if the
	// enforcement point has them: an approval is bound to their digest.
	Arguments json.RawMessage
	// Point names the enforcement point (mcp, egress, hook, authzen);
	// Caller identifies which instance asked (an enforcement point's
	// token name), if any; RequestID correlates the event.
	Point     string
	Caller    string
	RequestID string
	// preview marks an evaluation for Preview: nothing recorded or spent.
	preview bool
	// delegateTier is the delegate's tier, for task.delegate: the pipeline
	// reads it from the delegate's record (Resource is its agent ID).
	delegateTier string
}

// Decision is a policy decision with the task and agent it was made for.
type Decision struct {
	policy.Decision
	Task  task.ID `json:"task,omitempty"`
	Agent string  `json:"agent,omitempty"`
	// Risk is the risk class the action was given.
	Risk string `json:"risk,omitempty"`
	// RetryAfter, on a mandate:rate-limit denial, is when to try again.
	RetryAfter time.Duration `json:"-"`
	// ApprovalID, on approval_required, is the approval request the
	// decision opened or found (Config.ApprovalService); ApprovalRefused
	// says why none could be opened.
	ApprovalID      string `json:"approval_request,omitempty"`
	ApprovalRefused string `json:"approval_refused,omitempty"`
}

// Verifier authenticates task tokens (token.Verifier).
type Verifier interface {
	Verify(ctx context.Context, r token.VerifyRequest) (*token.Claims, error)
}

// Revocations reports live revocation state (token.Revocations). Every
// decision holds HoldDecisions from its check of Inactive until its event
// is recorded (ReleaseDecisions), so that a revocation, which waits for the
// holders, is never followed by an allow decided before it.
type Revocations interface {
	// Inactive reports whether the task or any of the agents (SPIFFE
	// IDs) is inactive.
	Inactive(taskID task.ID, agents []string) bool
	HoldDecisions()
	ReleaseDecisions()
}

// DenialObserver is told of each denied action of a task; Denied must
// not block.
type DenialObserver interface {
	Denied(taskID task.ID, agent string)
}

// ApprovalChecker finds the approvals granted for an action of a task:
// the names of the @approval forbids they lift. The approval service
// implements it, binding each approval to the action's exact arguments.
type ApprovalChecker interface {
	Approved(ctx context.Context, taskID task.ID, act Action) ([]string, error)
}

// Config configures a Pipeline.
type Config struct {
	Verifier    Verifier
	Revocations Revocations
	Tasks       interface {
		GetTask(ctx context.Context, id task.ID) (*task.Task, error)
		AddUsage(ctx context.Context, deltas map[task.ID]task.Usage) error
		RaiseTaint(ctx context.Context, id task.ID, level task.Sensitivity, at, until time.Time) error
	}
	Agents interface {
		GetAgent(ctx context.Context, id identity.ID) (*identity.Agent, error)
	}
	Engine *policy.Engine
	// Approvals, if set, is asked for the approvals granted to each
	// action (held and approved requests bound to its arguments).
	Approvals ApprovalChecker
	// Denials, if set, is told of every action the policies deny (once
	// its decision is recorded): the watch on repeated denials.
	Denials DenialObserver
	// ApprovalService, if set, opens (or finds) an approval request for
	// every approval_required decision, and is the ApprovalChecker when
	// Approvals is nil (see approval.go).
	ApprovalService *approval.Service
	// Shadow, if set, is a candidate policy set evaluated beside Engine
	// without being enforced.
	Shadow     *policy.Engine
	Classifier *policy.Classifier
	Recorder   audit.Recorder
	// MaxDelegationDepth is the delegation depth limit (tasks.max_depth):
	// a task at this depth may not delegate; zero allows no delegation.
	// Policies see it as context.delegation.max_depth.
	MaxDelegationDepth int
	// Limits are the rate limits and call budgets of each enforcement
	// point, by Action.Point (see Limits).
	Limits map[string]Limits
	// CacheTTL bounds how long a task or agent record is reused (default
	// DefaultCacheTTL). Status is not taken from the cached records:
	// revocation, task end and agent suspension are checked against
	// Revocations on every decision.
	CacheTTL time.Duration
	// AgentTaintWindow is how long an agent stays tainted after one of
	// its tasks read sensitive data (default DefaultAgentTaintWindow; see
	// taint.go).
	AgentTaintWindow time.Duration
	Now              func() time.Time
	Logger           *slog.Logger
}

// DefaultCacheTTL is how long task and agent records are cached.
const DefaultCacheTTL = 30 * time.Second

// maxTracked bounds the per-task state kept in memory; expired tasks'
// state is swept every sweepEvery new tasks.
const (
	maxTracked = 100_000
	sweepEvery = 1024
)

// Pipeline decides actions. It is safe for concurrent use.
type Pipeline struct {
	cfg     Config
	log     *slog.Logger
	metrics pipelineMetrics
	lim     limiter

	mu     sync.RWMutex
	tasks  map[task.ID]*taskState
	agents map[identity.ID]*agentEntry
	taints agentTaints // agent taints raised here (taint.go)
}

// taskState is what the pipeline tracks per task: the cached record, the
// actions counted against its budget and its taint.
type taskState struct {
	mu      sync.Mutex
	t       *task.Task
	fetched time.Time
	used    task.Usage
	// pending is the part of used not yet written to the task store
	// (see FlushUsage).
	pending task.Usage
	taint   taskTaint // raised since loaded (taint.go)
	// scope and chain are t's scope patterns and delegation chain as
	// strings, computed once per load.
	scope, chain []string
	// scopeString is t.Scope.String(): a token carrying it is not
	// narrower than its task.
	scopeString string
	// inScope memoizes scope checks by token scope, action and resource;
	// tokenScopes the token scopes parsed.
	inScope     map[string]inScope
	tokenScopes map[string]task.Scope
	// untracked marks a task the pipeline had no room to track: its
	// taint is unknown, so it is treated as restricted (fail closed).
	untracked bool
}

type agentEntry struct {
	a       *identity.Agent
	fetched time.Time
}

// New returns a Pipeline.
func New(cfg Config) (*Pipeline, error) {
	if cfg.Verifier == nil || cfg.Revocations == nil || cfg.Tasks == nil || cfg.Agents == nil || cfg.Engine == nil || cfg.Recorder == nil {
		return nil, errors.New("access: pipeline needs a verifier, revocations, task and agent stores, a policy engine and a recorder")
	}
	if cfg.CacheTTL <= 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.AgentTaintWindow <= 0 {
		cfg.AgentTaintWindow = DefaultAgentTaintWindow
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Approvals == nil && cfg.ApprovalService != nil {
		cfg.Approvals = serviceChecker{cfg.ApprovalService}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Pipeline{cfg: cfg, log: log, metrics: newPipelineMetrics(),
		tasks: make(map[task.ID]*taskState), agents: make(map[identity.ID]*agentEntry)}, nil
}

// Subject is an authenticated agent acting under a task, as returned by
// Authenticate.
type Subject struct {
	Task  task.ID
	Agent string
	// Scope is the token's scope claim: every decision for the subject
	// must lie in it as well as in the task's scope. An empty Scope allows
	// nothing.
	Scope string
	// Claims are the verified token's claims (shared: do not modify).
	Claims *token.Claims
}

// Active reports whether a task and the agents acting in it (its agent
// and delegators, SPIFFE IDs) are still active: not ended, revoked or
// suspended. It reads the live revocation state only (no store), for
// holders of what a task was given, such as the MCP gateway's sessions
// and their upstream processes, to let go of it when the task ends.
func (p *Pipeline) Active(taskID task.ID, agents []string) bool {
	return !p.cfg.Revocations.Inactive(taskID, agents)
}

// Authenticate verifies cred as a task token (with its DPoP proof, which
// is single-use: authenticate once per HTTP request, then decide any
// number of actions with DecideAs). A failure is recorded as a denied
// attempt at act and returned as ErrUnauthenticated.
func (p *Pipeline) Authenticate(ctx context.Context, cred Credential, act Action) (Subject, error) {
	claims, err := p.cfg.Verifier.Verify(ctx, token.VerifyRequest{
		Token: cred.Token, DPoPProof: cred.DPoPProof, Scheme: cred.Scheme, Method: cred.Method, URL: cred.URL, Use: token.UseTask,
		Audiences: cred.Audiences,
	})
	if err != nil {
		_, err = p.refuse(ctx, "", "", act, authFailure(err))
		return Subject{}, err
	}
	if cred.Agent != "" && cred.Agent != claims.ClientID {
		_, err = p.refuse(ctx, task.ID(claims.TaskID), claims.ClientID, act, fmt.Errorf("%w: the token is not %s's", ErrUnauthenticated, cred.Agent))
		return Subject{}, err
	}
	return Subject{Task: task.ID(claims.TaskID), Agent: claims.ClientID, Scope: claims.Scope, Claims: claims}, nil
}

// Decide authenticates cred as a task token (with its DPoP proof) and
// decides act for that task. The returned error explains a denial that
// was not a policy decision (ErrUnauthenticated, ErrInvalidAction,
// audit.ErrUnavailable, a store failure); the Decision is then a deny.
func (p *Pipeline) Decide(ctx context.Context, cred Credential, act Action) (Decision, error) {
	subj, err := p.Authenticate(ctx, cred, act)
	if err != nil {
		return Decision{Decision: policy.Decision{Effect: policy.Deny, Errors: []string{err.Error()}}}, err
	}
	return p.decide(ctx, subj.Task, subj.Agent, subj.Scope, act)
}

// DecideAs decides act for a subject returned by Authenticate. The task's
// and agent's status are checked again: a subject authenticated before a
// revocation is refused after it.
func (p *Pipeline) DecideAs(ctx context.Context, subj Subject, act Action) (Decision, error) {
	return p.decide(ctx, subj.Task, subj.Agent, subj.Scope, act)
}

// DecideFor decides act for a task named by an authenticated enforcement
// point, which vouches that agent is acting under taskID (it verified the
// agent's credential itself). The task and agent must be active.
func (p *Pipeline) DecideFor(ctx context.Context, taskID task.ID, agent string, act Action) (Decision, error) {
	if _, err := identity.ParseID(agent); err != nil {
		return p.refuse(ctx, taskID, "", act, fmt.Errorf("%w: subject is not an agent ID", ErrUnauthenticated))
	}
	return p.decide(ctx, taskID, agent, noTokenScope, act)
}

// noTokenScope is the token scope of a decision made without a token
// (DecideFor): only the task's scope applies. No scope claim has a NUL.
const noTokenScope = "\x00" // never a scope claim

// refuse records and returns a denial that did not come from policy.
func (p *Pipeline) refuse(ctx context.Context, taskID task.ID, agent string, act Action, cause error) (Decision, error) {
	d := Decision{Decision: policy.Decision{Effect: policy.Deny}, Task: taskID, Agent: agent}
	d.Errors = []string{cause.Error()}
	if err := p.record(ctx, d, act, nil); err != nil {
		return d, errors.Join(cause, err)
	}
	return d, cause
}

// decide decides act for agent under taskID. tokenScope is the scope of
// the token the agent presented (noTokenScope if none): the action must lie
// in both the task's scope and the token's, which may be narrower.
func (p *Pipeline) decide(ctx context.Context, taskID task.ID, agent, tokenScope string, act Action) (Decision, error) {
	now := p.cfg.Now()
	defer func(start time.Time) { p.metrics.seconds.Observe(time.Since(start).Seconds()) }(time.Now())
	// From the revocation check below until the decision is recorded: a
	// revocation returns only after this decision is in the ledger.
	p.cfg.Revocations.HoldDecisions()
	defer p.cfg.Revocations.ReleaseDecisions()
	if d, limited, err := p.rateLimited(ctx, taskID, agent, act); limited {
		return d, err
	}
	if policy.ResourceType(act.Kind) == "" || act.Resource == "" || len(act.Resource) > policy.MaxIDLen {
		return p.refuse(ctx, taskID, agent, act, fmt.Errorf("%w: unknown action kind %q or missing resource", ErrInvalidAction, act.Kind))
	}
	if err := resource.Check(act.Kind, act.Resource); err != nil {
		act.Resource = resource.Quote(act.Resource) // recorded as refused, safely
		return p.refuse(ctx, taskID, agent, act, fmt.Errorf("%w: %w", ErrInvalidAction, err))
	}
	st, err := p.taskState(ctx, taskID, now)
	if err != nil {
		return p.refuse(ctx, taskID, agent, act, err)
	}
	st.mu.Lock()
	t, scope, chain, used := st.t, st.scope, st.chain, st.used
	st.mu.Unlock()
	if t.Agent.String() != agent {
		return p.refuse(ctx, taskID, agent, act, fmt.Errorf("%w: the task belongs to another agent", ErrUnauthenticated))
	}
	// chain ends with the task's agent (task.Validate), checked above to be
	// agent: one look covers the task, the agent and its delegators.
	if p.cfg.Revocations.Inactive(taskID, chain) {
		return p.refuse(ctx, taskID, agent, act, fmt.Errorf("%w: task %s or an agent of its chain is no longer active", ErrUnauthenticated, taskID))
	}
	ag, err := p.agent(ctx, t.Agent, now)
	if err != nil {
		return p.refuse(ctx, taskID, agent, act, err)
	}
	// The agent's status is Revocations' (checked above): a cached record
	// would keep a resumed agent refused, or a suspended one allowed.
	if !t.ActiveAt(now) {
		return p.refuse(ctx, taskID, agent, act, fmt.Errorf("%w: task %s is not active", ErrUnauthenticated, taskID))
	}
	taskIn, tokenIn, err := st.allows(t, tokenScope, act.Kind, act.Resource)
	if err != nil {
		return p.refuse(ctx, taskID, agent, act, err)
	}
	if act.Kind == policy.ActionTaskDelegate {
		if err := p.delegate(ctx, &act, now); err != nil {
			return p.refuse(ctx, taskID, agent, act, err)
		}
	}

	class := p.cfg.Classifier.Classify(act.Kind, act.Resource, trustedAnnotations(act))
	req := &policy.Request{
		Agent:    policy.Agent{ID: agent, Tier: string(ag.Tier), Owner: ag.Owner, Labels: ag.Labels},
		Action:   act.Kind,
		Resource: policy.Resource{ID: act.Resource, Server: act.Server, Sensitivity: class.Sensitivity, Labels: class.Labels, Tier: act.delegateTier},
		Risk:     class.Risk, HighImpact: class.HighImpact,
		Destination: act.Destination, Command: act.Command,
		Time: now,
		Task: policy.TaskInfo{
			ID: string(t.ID), Purpose: t.Purpose, OnBehalfOf: t.OnBehalfOf, Scope: scope,
			InScope:     taskIn && tokenIn,
			Sensitivity: string(t.Sensitivity), Depth: t.Depth, MaxDepth: p.cfg.MaxDelegationDepth, Chain: chain,
		},
	}
	if policy.SensitivityLevel(act.Sensitivity) > policy.SensitivityLevel(req.Resource.Sensitivity) {
		req.Resource.Sensitivity = act.Sensitivity
	}
	if act.Trusted {
		for _, l := range act.Labels {
			if !slices.Contains(req.Resource.Labels, l) {
				req.Resource.Labels = append(req.Resource.Labels, l)
			}
		}
	}
	if act.Trusted {
		req.Approvals = append(req.Approvals, act.Approvals...)
	}
	if p.cfg.Approvals != nil && !act.preview {
		granted, err := p.cfg.Approvals.Approved(ctx, taskID, act)
		if err != nil {
			return p.refuse(ctx, taskID, agent, act, fmt.Errorf("access: approvals: %w", err))
		}
		req.Approvals = append(req.Approvals, granted...)
	}
	req.Task.ActionsLeft = left(t.Budget.MaxActions, used.Actions)
	req.Task.WritesLeft = left(t.Budget.MaxWrites, used.Writes)
	req.Taint, req.AgentTaint = p.taintOf(ctx, st, ag, now)

	var d Decision
	switch pd, err := p.cfg.Engine.Decide(req); {
	case err != nil:
		return p.refuse(ctx, taskID, agent, act, fmt.Errorf("%w: %v", ErrInvalidAction, err))
	case pd.Effect == policy.Deny:
		d.Decision = pd
	case !taskIn:
		// The task's scope bounds everything, whatever the policies say.
		d.Decision = policy.Decision{Effect: policy.Deny, Reasons: []policy.Reason{{Policy: PolicyTaskScope, Effect: "forbid", Message: "the action is outside the task's scope"}}}
	case !tokenIn:
		// So does the scope of the token, which may be narrower.
		d.Decision = policy.Decision{Effect: policy.Deny, Reasons: []policy.Reason{{Policy: PolicyTokenScope, Effect: "forbid", Message: "the action is outside the presented token's scope"}}}
	case act.Kind == policy.ActionTaskDelegate && p.tooDeep(t):
		// And the depth limit bounds delegation.
		d.Decision = policy.Decision{Effect: policy.Deny, Reasons: []policy.Reason{{Policy: PolicyDelegationDepth, Effect: "forbid", Message: fmt.Sprintf("the task is at the delegation depth limit of %d", p.cfg.MaxDelegationDepth)}}}
	case spent(req.Task.ActionsLeft) || class.Risk != policy.RiskRead && spent(req.Task.WritesLeft):
		// So does its budget.
		d.Decision = budgetSpent()
	default:
		d.Decision = pd
	}
	d.Task, d.Agent, d.Risk = taskID, agent, class.Risk
	if act.preview {
		return d, nil
	}
	// An allow holds its share of the budget before it is returned: the
	// count read above may be stale by the time the decision is made.
	reserved := d.Allowed() && st.reserve(t.Budget, class.Risk)
	if d.Allowed() && !reserved {
		d.Decision = budgetSpent()
	}
	d = p.spendCall(taskID, act, d)
	if reserved && !d.Allowed() {
		st.unreserve(class.Risk)
		reserved = false
	}
	// A sensitive read taints the task durably before it is allowed: a
	// read whose taint cannot be stored does not happen.
	if err := p.raiseTaint(ctx, st, req, d, now); err != nil {
		p.releaseCall(taskID, act, d)
		if reserved {
			st.unreserve(class.Risk)
		}
		return p.refuse(ctx, taskID, agent, act, err)
	}

	if d.Effect == policy.ApprovalRequired && p.cfg.ApprovalService != nil {
		d.ApprovalID, d.ApprovalRefused = p.openApproval(ctx, t, ag, act, d)
	}

	var shadow *policy.Decision
	if p.cfg.Shadow != nil {
		if sd, err := p.cfg.Shadow.Decide(req); err == nil && sd.Effect != d.Effect {
			shadow = &sd
		}
	}
	if err := p.record(ctx, d, act, req); err != nil {
		// Fail closed: an action that cannot be audited does not happen.
		p.releaseCall(taskID, act, d)
		if reserved {
			st.unreserve(class.Risk)
		}
		denied := Decision{Decision: policy.Decision{Effect: policy.Deny, Errors: []string{"audit log unavailable"}}, Task: taskID, Agent: agent, Risk: class.Risk}
		return denied, err
	}
	if shadow != nil {
		p.recordShadow(ctx, d, *shadow, act)
	}
	if d.Effect == policy.Deny && p.cfg.Denials != nil {
		p.cfg.Denials.Denied(taskID, agent)
	}
	return d, nil
}

// Policy IDs of the denials the pipeline makes itself.
const (
	PolicyTaskScope  = "mandate:task-scope"
	PolicyTokenScope = "mandate:token-scope"
	PolicyBudget     = "mandate:budget"
)

func budgetSpent() policy.Decision {
	return policy.Decision{Effect: policy.Deny, Reasons: []policy.Reason{{Policy: PolicyBudget, Effect: "forbid", Message: "the task's budget is spent"}}}
}

func trustedAnnotations(act Action) *policy.ToolAnnotations {
	if act.Trusted {
		return act.Annotations
	}
	return nil
}

func spent(left *int64) bool { return left != nil && *left <= 0 }

func left(limit, used int64) *int64 {
	if limit == 0 {
		return nil
	}
	n := max(limit-used, 0)
	return &n
}

func actorStrings(ids []identity.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}

// maxScopeMemo bounds a task's memo of scope checks; maxTokenScopes the
// distinct token scopes parsed per task (a task's tokens are few: the
// task's own scope and the narrowings its agent asked for).
const (
	maxScopeMemo   = 1024
	maxTokenScopes = 16
)

// inScope is a memoized scope check: in the task's scope, in the token's.
type inScope struct{ task, token bool }

// allows reports whether action on resource lies in t's scope and in the
// token scope tokenScope (noTokenScope: no token), memoized; scope
// patterns are immutable and matching walks the glob. A token scope that
// does not parse is an error: the token claims nothing it can be held to.
func (st *taskState) allows(t *task.Task, tokenScope, action, resource string) (taskIn, tokenIn bool, err error) {
	var buf [256]byte
	key := append(append(append(append(append(buf[:0], tokenScope...), 0), action...), 0), resource...)
	st.mu.Lock()
	m, hit := st.inScope[string(key)]
	st.mu.Unlock()
	if hit {
		return m.task, m.token, nil
	}
	m.task = t.Scope.Allows(action, resource)
	m.token = m.task
	if tokenScope != noTokenScope && tokenScope != st.scopeString {
		sc, err := st.tokenScope(tokenScope)
		if err != nil {
			return false, false, err
		}
		m.token = sc.Allows(action, resource)
	}
	st.mu.Lock()
	if st.inScope == nil || len(st.inScope) >= maxScopeMemo {
		st.inScope = make(map[string]inScope)
	}
	st.inScope[string(key)] = m
	st.mu.Unlock()
	return m.task, m.token, nil
}

// tokenScope parses a token's scope claim, memoized per task.
func (st *taskState) tokenScope(s string) (task.Scope, error) {
	st.mu.Lock()
	sc, ok := st.tokenScopes[s]
	st.mu.Unlock()
	if ok {
		return sc, nil
	}
	sc, err := task.ParseScope(s)
	if err != nil {
		return nil, fmt.Errorf("%w: the token's scope does not parse: %v", ErrUnauthenticated, err)
	}
	st.mu.Lock()
	if st.tokenScopes == nil || len(st.tokenScopes) >= maxTokenScopes {
		st.tokenScopes = make(map[string]task.Scope)
	}
	st.tokenScopes[s] = sc
	st.mu.Unlock()
	return sc, nil
}

// reserve counts one action (and one write, unless risk is read) against
// budget if the budget has room for it, atomically: no interleaving of
// decisions allows more actions than the budget.
func (st *taskState) reserve(budget task.Budget, risk string) bool {
	write := risk != policy.RiskRead
	st.mu.Lock()
	defer st.mu.Unlock()
	if spent(left(budget.MaxActions, st.used.Actions)) || write && spent(left(budget.MaxWrites, st.used.Writes)) {
		return false
	}
	st.used.Actions++
	st.pending.Actions++
	if write {
		st.used.Writes++
		st.pending.Writes++
	}
	return true
}

// unreserve gives back what reserve counted for an allow that did not
// happen (it could not be recorded). If the count was already flushed to
// the store, the store keeps it: an over-count only ever denies.
func (st *taskState) unreserve(risk string) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.used.Actions--
	st.pending.Actions = max(st.pending.Actions-1, 0)
	if risk != policy.RiskRead {
		st.used.Writes--
		st.pending.Writes = max(st.pending.Writes-1, 0)
	}
}

// taskState returns the tracked state of a task, loading (or refreshing)
// its record. Budget usage starts from the stored usage.
func (p *Pipeline) taskState(ctx context.Context, id task.ID, now time.Time) (*taskState, error) {
	p.mu.RLock()
	st := p.tasks[id]
	p.mu.RUnlock()
	if st != nil {
		st.mu.Lock()
		fresh := now.Sub(st.fetched) < p.cfg.CacheTTL
		st.mu.Unlock()
		if fresh {
			return st, nil
		}
	}
	t, err := p.cfg.Tasks.GetTask(ctx, id)
	if err != nil {
		if errors.Is(err, task.ErrNotFound) {
			return nil, fmt.Errorf("%w: unknown task", ErrUnauthenticated)
		}
		return nil, fmt.Errorf("access: load task: %w", err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if st = p.tasks[id]; st != nil {
		st.mu.Lock()
		st.t, st.fetched = t, now
		st.scope, st.chain, st.scopeString = t.Scope.Strings(), actorStrings(t.Actors), t.Scope.String()
		st.mu.Unlock()
		return st, nil
	}
	if len(p.tasks) >= maxTracked || len(p.tasks)%sweepEvery == sweepEvery-1 {
		// Finished-by-time tasks need no state: sweep them now and then.
		for k, s := range p.tasks {
			if !now.Before(s.t.ExpiresAt) {
				delete(p.tasks, k)
			}
		}
	}
	st = &taskState{t: t, fetched: now, used: t.Used, scope: t.Scope.Strings(), chain: actorStrings(t.Actors), scopeString: t.Scope.String()}
	if len(p.tasks) < maxTracked {
		p.tasks[id] = st
	} else {
		st.untracked = true
		p.log.Warn("too many active tasks to track taint and budget; treating the task as tainted", "task", id, "limit", maxTracked)
	}
	return st, nil
}

// agent returns the agent's record, cached for CacheTTL. What decisions
// take from it — tier, owner, labels — is fixed at registration; its
// status is not taken from the cache but checked against Revocations on
// every decision.
func (p *Pipeline) agent(ctx context.Context, id identity.ID, now time.Time) (*identity.Agent, error) {
	p.mu.RLock()
	e := p.agents[id]
	p.mu.RUnlock()
	if e != nil && now.Sub(e.fetched) < p.cfg.CacheTTL {
		return e.a, nil
	}
	a, err := p.cfg.Agents.GetAgent(ctx, id)
	if err != nil {
		if errors.Is(err, identity.ErrNotFound) {
			return nil, fmt.Errorf("%w: unknown agent", ErrUnauthenticated)
		}
		return nil, fmt.Errorf("access: load agent: %w", err)
	}
	p.mu.Lock()
	if len(p.agents) >= maxTracked {
		clear(p.agents)
	}
	p.agents[id] = &agentEntry{a: a, fetched: now}
	p.mu.Unlock()
	return a, nil
}

// Forget drops cached task and agent records (not budget or taint
// state): the next decision reloads them.
func (p *Pipeline) Forget() {
	p.mu.Lock()
	defer p.mu.Unlock()
	clear(p.agents)
	for _, st := range p.tasks {
		st.mu.Lock()
		st.fetched = time.Time{}
		st.mu.Unlock()
	}
}

func reasonText(d policy.Decision) (ids, text string) {
	var idl, msgs []string
	for _, r := range d.Reasons {
		idl = append(idl, r.Policy)
		if r.Message != "" {
			msgs = append(msgs, r.Message)
		}
	}
	msgs = append(msgs, d.Errors...)
	return strings.Join(idl, ","), strings.Join(msgs, "; ")
}

// record writes the decision event; it returns only once the event is
// durable.
func (p *Pipeline) record(ctx context.Context, d Decision, act Action, req *policy.Request) error {
	if act.preview {
		return nil
	}
	ids, text := reasonText(d.Decision)
	ev := audit.Event{
		Type: TypeDecided, Actor: d.Agent, Agent: d.Agent, Task: string(d.Task),
		Action: act.Kind, Resource: typedResource(act), Decision: string(d.Effect), Reason: text,
		RequestID: act.RequestID, Point: act.Point, ApprovalID: d.ApprovalID,
		Details: map[string]string{},
	}
	if d.ApprovalRefused != "" {
		ev.Details["approval_refused"] = d.ApprovalRefused
	}
	for _, r := range d.Reasons {
		ev.Reasons = append(ev.Reasons, audit.PolicyReason{Policy: r.Policy, Message: r.Message})
	}
	if ids != "" {
		ev.Details["policies"] = ids
	}
	if d.Risk != "" {
		ev.Details["risk"] = d.Risk
	}
	if act.Caller != "" {
		ev.Details["caller"] = act.Caller
	}
	if len(d.Obligations) > 0 {
		ev.Details["obligations"] = strings.Join(d.Obligations, ",")
	}
	if len(d.Approvals) > 0 {
		ev.Details["approvals"] = strings.Join(d.Approvals, ",")
	}
	if req != nil {
		ev.Chain = req.Task.Chain
		ev.OnBehalfOf = req.Task.OnBehalfOf
		if req.Taint != "" {
			ev.Details["taint"] = req.Taint
		}
		if req.AgentTaint != "" {
			ev.Details["agent_taint"] = req.AgentTaint
		}
		if req.Resource.Sensitivity != "" {
			ev.Details["sensitivity"] = req.Resource.Sensitivity
		}
		if req.Destination.Host != "" {
			ev.Details["destination"] = req.Destination.Method + " " + req.Destination.Host + req.Destination.Path
		}
		ev.Details["in_scope"] = strconv.FormatBool(req.Task.InScope)
	}
	err := p.cfg.Recorder.Record(ctx, ev)
	switch {
	case err == nil && d.Effect == policy.Allow:
		p.metrics.allow.Inc()
	case err == nil && d.Effect == policy.ApprovalRequired:
		p.metrics.held.Inc()
	default:
		p.metrics.deny.Inc()
	}
	if err != nil {
		p.log.Error("decision not recorded; denying", "err", err, "task", d.Task, "action", act.Kind)
		if errors.Is(err, audit.ErrUnavailable) {
			return err
		}
		return errors.Join(audit.ErrUnavailable, err)
	}
	return nil
}

// typedResource names the resource as the ledger does (policy.TypedResource).
func typedResource(act Action) string { return policy.TypedResource(act.Kind, act.Resource) }

// recordShadow records that the candidate set would have decided
// differently. It is best effort: the live decision stands either way.
func (p *Pipeline) recordShadow(ctx context.Context, live Decision, shadow policy.Decision, act Action) {
	p.metrics.shadowDiffers.Inc()
	ids, text := reasonText(shadow)
	ev := audit.Event{
		Type: TypeShadowDiffers, Actor: live.Agent, Agent: live.Agent, Task: string(live.Task),
		Action: act.Kind, Resource: typedResource(act), Decision: string(live.Effect), Reason: text,
		RequestID: act.RequestID, Point: act.Point,
		Details: map[string]string{"shadow_decision": string(shadow.Effect), "shadow_policies": ids},
	}
	if err := p.cfg.Recorder.Record(ctx, ev); err != nil {
		p.log.Warn("shadow difference not recorded", "err", err)
	}
}
