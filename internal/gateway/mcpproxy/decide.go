package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/token"
)

// Action kinds the gateway asks about. They are task scope action names
// (see task.Actions).
const (
	ActionToolCall     = "tool.call"
	ActionResourceRead = "resource.read"
	ActionPromptGet    = "prompt.get"
)

// Effect is a decision's outcome.
type Effect string

// Effects.
const (
	Allow            Effect = "allow"
	Deny             Effect = "deny"
	ApprovalRequired Effect = "approval_required"
)

// Credential is what a downstream client presented on the HTTP request
// that carried an MCP message: the access token and, for DPoP-bound tokens,
// the proof and the request it was made for (RFC 9449 §4.3).
type Credential struct {
	// Scheme is the Authorization scheme the token came with.
	Scheme    token.Scheme
	Token     string
	DPoPProof string
	Method    string
	URL       string
	// Resource is the gateway endpoint the request was for: its resource
	// identifier (RFC 8707, RFC 9728).
	Resource string
	// Audiences are the token audiences the endpoint accepts (see
	// Gateway's doc): its Resource and mandate's issuer. The
	// Authenticator must refuse a token naming none of them.
	Audiences []string
	// Malformed, if set, is why the Authorization header could not be
	// read (token.FromHeader); the Authenticator refuses (and records)
	// such a credential.
	Malformed error
}

// Principal is what the gateway's Authenticator established about the
// caller: the task the token was issued for and the acting agent.
type Principal struct {
	// Task is the task ID; every call is made under it.
	Task string
	// Agent is the acting agent's SPIFFE ID.
	Agent string
	// Chain is the delegation chain of agents, root first.
	Chain []string
	// OnBehalfOf is the principal at the root of the chain (the token's sub).
	OnBehalfOf string
	// Tier is the agent's trust tier (assist, supervised, autonomous).
	Tier string
	// Scope is the token's scope, space-separated patterns: the task's
	// scope or a narrowing of it.
	Scope string
	// Expiry is when the credential expires.
	Expiry time.Time
	// TokenID is the token's jti (for audit).
	TokenID string
}

// owner identifies the task and agent a session belongs to.
func (p *Principal) owner() string { return p.Task + " " + p.Agent }

// owns reports whether owner is p.owner(), without building that string
// (it is checked on every request to a session).
func (p *Principal) owns(owner string) bool {
	return len(owner) == len(p.Task)+1+len(p.Agent) && strings.HasPrefix(owner, p.Task) &&
		owner[len(p.Task)] == ' ' && strings.HasSuffix(owner, p.Agent)
}

// Authenticator verifies a downstream credential. It returns an error
// wrapping ErrUnauthenticated when the credential is missing, malformed,
// expired, revoked or not bound as it must be; the gateway answers such
// requests with 401 and a WWW-Authenticate challenge. An adapter over
// token.Verifier is all that is needed.
type Authenticator interface {
	Authenticate(ctx context.Context, cred Credential) (*Principal, error)
}

// A Liveness (implemented by an Authenticator, optionally) reports
// whether the task a principal acts in is still active. The gateway then
// closes the sessions of tasks that ended or were revoked, and so their
// upstream sessions and processes, within a minute, rather than when they
// fall idle.
type Liveness interface {
	Live(p *Principal) bool
}

// Request is one attempted MCP action, as the gateway hands it to the
// decision pipeline.
type Request struct {
	// Credential is the raw credential of the HTTP request that carried
	// the call, for deciders that authenticate for themselves. The DPoP
	// proof in it has already been accepted once by the Authenticator.
	Credential Credential
	// Principal is what the Authenticator established.
	Principal *Principal
	// Action is ActionToolCall, ActionResourceRead or ActionPromptGet.
	Action string
	// Upstream is the configured name of the MCP server that would serve
	// the call.
	Upstream string
	// Name is the tool or prompt name as the upstream knows it, or the
	// resource URI.
	Name string
	// Resource is the scope resource the action is matched against:
	// "<upstream>/<tool or prompt>" or the resource URI.
	Resource string
	// Arguments are the call's arguments (a JSON object, in canonical
	// form: keys sorted, no insignificant whitespace), or nil.
	Arguments json.RawMessage
	// Annotations are the tool's MCP annotations as the upstream declared
	// them (nil for resources and prompts).
	Annotations json.RawMessage
	// Preview marks a question asked only to filter a list (tools/list):
	// the decider must not record it, count it against budgets or open an
	// approval. A tool is listed unless the answer is deny.
	Preview bool
	// Progress, if not nil, tells the client what the call is waiting for
	// (an ApprovalWaiter's approval): a progress notification, when the
	// client asked for progress. Call it from the goroutine that decides
	// the call, before the decision returns.
	Progress func(message string)
	// AskPerson, if not nil, asks the person at the client, in band, to
	// approve the call at url (an MCP URL-mode elicitation, id its
	// elicitationId, on a session whose client supports them). It does not
	// wait for the answer: the approval itself is what the call waits for.
	AskPerson func(url, message, id string)
}

// Decision is the pipeline's answer.
type Decision struct {
	Effect Effect
	// Reasons are human-readable explanations (policy ids and messages);
	// they are shown to the caller on a denial.
	Reasons []string
	// Obligations the gateway must honour; unknown obligations make the
	// gateway deny (fail closed).
	Obligations []Obligation
	// Recorded reports that the decider already wrote the decision's audit
	// event (the access pipeline does); when false the gateway records it.
	Recorded bool
	// Risk is the risk class the decider gave the action (policy's one
	// classifier); the gateway's events carry it.
	Risk string
	// Limit, on a deny, says that a rate limit or a budget denied rather
	// than a rule: the gateway answers CodeRateLimited (with RetryAfter)
	// or CodeBudgetExceeded.
	Limit      Limit
	RetryAfter time.Duration
}

// Limit names the kind of limit behind a denial.
type Limit string

// Limits a Decider may report.
const (
	LimitRate   Limit = "rate"
	LimitBudget Limit = "budget"
)

// ObligationFullArguments asks that the call's arguments be kept in the
// ledger (redacted: secrets and configured fields as keyed hashes), not
// only their digest. The shipped policies attach it to approved actions.
const ObligationFullArguments = "full_arguments"

// Obligation is a duty attached to an allow: Kind names it, Value
// parameterizes it.
type Obligation struct {
	Kind  string
	Value string
}

// Decider decides attempted actions. It must fail closed: an error means
// deny. The access pipeline implements it.
type Decider interface {
	Decide(ctx context.Context, req Request) (Decision, error)
}

// ApprovalWaiter holds a call that needs human approval. Wait blocks until
// the request is approved (returning a fresh allow decision), denied or
// expired (a deny decision), or ctx ends. The approvals subsystem
// implements it; without one, approval_required is a denial.
type ApprovalWaiter interface {
	Wait(ctx context.Context, req Request, d Decision) (Decision, error)
}

// Errors the Authenticator and gateway use.
var (
	// ErrUnauthenticated: no valid credential; answered with 401.
	ErrUnauthenticated = errors.New("unauthenticated")
)
