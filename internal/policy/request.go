package policy

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Action kinds: one Cedar action per kind of attempted operation.
const (
	ActionToolCall     = "tool.call"
	ActionResourceRead = "resource.read"
	ActionPromptGet    = "prompt.get"
	ActionFileRead     = "file.read"
	ActionFileWrite    = "file.write"
	ActionShellExec    = "shell.exec"
	ActionHTTPRequest  = "http.request"
	ActionSecretUse    = "secret.use"
	ActionTaskDelegate = "task.delegate"
)

// Actions lists every action kind, in schema order.
var Actions = []string{
	ActionToolCall, ActionResourceRead, ActionPromptGet,
	ActionFileRead, ActionFileWrite, ActionShellExec,
	ActionHTTPRequest, ActionSecretUse, ActionTaskDelegate,
}

// Entity types of the schema.
const (
	TypeAgent  = "Agent"
	TypeHuman  = "Human"
	TypeTask   = "Task"
	TypeTool   = "Tool"
	TypeServer = "Server"
	TypeFile   = "File"
	TypeHost   = "Host"
	TypeSecret = "Secret"
)

// ResourceType returns the entity type of the resource of action, or ""
// for an unknown action.
func ResourceType(action string) string {
	switch action {
	case ActionToolCall, ActionPromptGet, ActionShellExec:
		return TypeTool
	case ActionResourceRead, ActionFileRead, ActionFileWrite:
		return TypeFile
	case ActionHTTPRequest:
		return TypeHost
	case ActionSecretUse:
		return TypeSecret
	case ActionTaskDelegate:
		return TypeAgent
	}
	return ""
}

// TypedResource names resource id of action as the ledger does: its
// type in lower case, a colon, the id ("file:/repo/main.go",
// "tool:github/create_issue"); id alone for an unknown action or an empty id.
func TypedResource(action, id string) string {
	t := ResourceType(action)
	if t == "" || id == "" {
		return id
	}
	// One allocation, not one for the lower-case type and one for the
	// result: resource types are ASCII.
	var b strings.Builder
	b.Grow(len(t) + 1 + len(id))
	for i := range len(t) {
		c := t[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	b.WriteByte(':')
	b.WriteString(id)
	return b.String()
}

// Risk classes of an action.
const (
	RiskRead        = "read"
	RiskWrite       = "write"
	RiskDestructive = "destructive"
	RiskExternal    = "external"
	RiskPrivileged  = "privileged"
)

// Risks lists the risk classes.
var Risks = []string{RiskRead, RiskWrite, RiskDestructive, RiskExternal, RiskPrivileged}

// Tiers, as in package identity (policy does not import it: it is
// decided purely from the Request).
const (
	TierAssist     = "assist"
	TierSupervised = "supervised"
	TierAutonomous = "autonomous"
)

// Sensitivity levels, lowest first; a level's index is its Cedar
// *_level value.
var Sensitivities = []string{"public", "internal", "confidential", "restricted"}

// SensitivityLevel returns the rank of s (0 for public, 3 for restricted);
// an empty s is public, and an unknown one ranks above restricted so it
// is never treated as less sensitive than it is.
func SensitivityLevel(s string) int64 {
	if s == "" {
		return 0
	}
	if i := slices.Index(Sensitivities, s); i >= 0 {
		return int64(i)
	}
	return int64(len(Sensitivities))
}

// TierLevel returns the rank of a tier (assist 0, supervised 1,
// autonomous 2), or -1 for an unknown tier.
func TierLevel(t string) int64 {
	switch t {
	case TierAssist:
		return 0
	case TierSupervised:
		return 1
	case TierAutonomous:
		return 2
	}
	return -1
}

// Request is one attempted action, with everything a policy may consider.
// Its JSON form is the request format of `mandate policy test` and
// `mandate policy explain`.
type Request struct {
	Agent    Agent    `json:"agent" yaml:"agent"`
	Action   string   `json:"action" yaml:"action"`
	Resource Resource `json:"resource" yaml:"resource"`
	// Risk is the action's risk class (see Classifier).
	Risk string `json:"risk" yaml:"risk"`
	// HighImpact marks a tool on the configured list of high-impact tools.
	HighImpact  bool        `json:"high_impact,omitempty" yaml:"high_impact,omitempty"`
	Task        TaskInfo    `json:"task" yaml:"task"`
	Destination Destination `json:"destination,omitzero" yaml:"destination,omitempty"`
	Command     string      `json:"command,omitempty" yaml:"command,omitempty"`
	// Taint is the highest sensitivity the task has been exposed to: read
	// by it or a task delegated from it, or inherited from the task it was
	// delegated from or its agent's taint when it started.
	Taint string `json:"taint,omitempty" yaml:"taint,omitempty"`
	// AgentTaint is the taint of the requesting agent in force now: the
	// highest sensitivity any of its tasks has read within the taint
	// window.
	AgentTaint string    `json:"agent_taint,omitempty" yaml:"agent_taint,omitempty"`
	Time       time.Time `json:"time,omitzero" yaml:"time,omitempty"`
	// Approvals are the approvals this exact request carries: each lifts
	// the forbids annotated @approval with that name.
	Approvals []string `json:"approvals,omitempty" yaml:"approvals,omitempty"`
}

// Agent is the principal of a request.
type Agent struct {
	// ID is the agent's SPIFFE ID.
	ID     string            `json:"id" yaml:"id"`
	Tier   string            `json:"tier" yaml:"tier"`
	Owner  string            `json:"owner,omitempty" yaml:"owner,omitempty"`
	Labels map[string]string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// Resource is what the action is attempted on. Its Cedar entity type
// follows from the action (ResourceType).
type Resource struct {
	// ID is the resource as named in scope patterns: "server/tool" for
	// tools and prompts, a path or URI for files, a host name, a secret
	// name, a command line, or an agent's SPIFFE ID for task.delegate.
	ID string `json:"id" yaml:"id"`
	// Server is the MCP server a tool, prompt or resource belongs to: the
	// entity's parent Server.
	Server      string   `json:"server,omitempty" yaml:"server,omitempty"`
	Sensitivity string   `json:"sensitivity,omitempty" yaml:"sensitivity,omitempty"`
	Labels      []string `json:"labels,omitempty" yaml:"labels,omitempty"`
	// Tier is the delegate's tier, for task.delegate.
	Tier string `json:"tier,omitempty" yaml:"tier,omitempty"`
}

// TaskInfo is the task a request is made under.
type TaskInfo struct {
	ID          string   `json:"id" yaml:"id"`
	Purpose     string   `json:"purpose,omitempty" yaml:"purpose,omitempty"`
	OnBehalfOf  string   `json:"on_behalf_of,omitempty" yaml:"on_behalf_of,omitempty"`
	Scope       []string `json:"scope,omitempty" yaml:"scope,omitempty"`
	InScope     bool     `json:"in_scope" yaml:"in_scope"`
	Sensitivity string   `json:"sensitivity,omitempty" yaml:"sensitivity,omitempty"`
	// Depth is the delegation depth: 0 for a root task.
	Depth int `json:"depth,omitempty" yaml:"depth,omitempty"`
	// MaxDepth is the deepest a delegated task may be (tasks.max_depth):
	// a task at depth MaxDepth may not delegate. The pipeline sets it
	// from its configuration; a request that leaves it zero can delegate
	// nothing.
	MaxDepth int `json:"max_depth,omitempty" yaml:"max_depth,omitempty"`
	// Chain is the delegation chain of agent IDs, root first, ending with
	// the requesting agent. Empty means just the agent.
	Chain []string `json:"chain,omitempty" yaml:"chain,omitempty"`
	// ActionsLeft and WritesLeft are the budget left; nil is unlimited.
	ActionsLeft *int64 `json:"actions_left,omitempty" yaml:"actions_left,omitempty"`
	WritesLeft  *int64 `json:"writes_left,omitempty" yaml:"writes_left,omitempty"`
}

// Destination is where an http.request goes.
type Destination struct {
	Host   string `json:"host,omitempty" yaml:"host,omitempty"`
	Method string `json:"method,omitempty" yaml:"method,omitempty"`
	Path   string `json:"path,omitempty" yaml:"path,omitempty"`
}

// Limits on requests.
const (
	MaxIDLen     = 2048
	MaxListLen   = 256
	MaxStringLen = 8192
)

// ErrInvalidRequest marks a request that cannot be decided: an unknown
// action, a missing field, an oversized value.
var ErrInvalidRequest = errors.New("invalid policy request")

// Validate checks that r names a known action, a resource and an agent,
// and that its fields are within limits. Decide refuses (denies) a request
// that does not validate.
func (r *Request) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if ResourceType(r.Action) == "" {
		return bad("unknown action %q (want one of %s)", r.Action, strings.Join(Actions, ", "))
	}
	if r.Agent.ID == "" || len(r.Agent.ID) > MaxIDLen {
		return bad("agent.id is required (at most %d bytes)", MaxIDLen)
	}
	if TierLevel(r.Agent.Tier) < 0 {
		return bad("agent.tier %q is not assist, supervised or autonomous", r.Agent.Tier)
	}
	if r.Resource.ID == "" || len(r.Resource.ID) > MaxIDLen {
		return bad("resource.id is required (at most %d bytes)", MaxIDLen)
	}
	if len(r.Resource.Server) > MaxIDLen || len(r.Task.ID) > MaxIDLen {
		return bad("identifiers must be at most %d bytes", MaxIDLen)
	}
	if !slices.Contains(Risks, r.Risk) {
		return bad("risk %q is not one of %s", r.Risk, strings.Join(Risks, ", "))
	}
	if r.Action == ActionTaskDelegate && TierLevel(r.Resource.Tier) < 0 {
		return bad("task.delegate needs resource.tier (the delegate's tier)")
	}
	for _, s := range []string{r.Resource.Sensitivity, r.Task.Sensitivity, r.Taint, r.AgentTaint} {
		if s != "" && !slices.Contains(Sensitivities, s) {
			return bad("sensitivity %q is not one of %s", s, strings.Join(Sensitivities, ", "))
		}
	}
	if len(r.Resource.Labels) > MaxListLen || len(r.Agent.Labels) > MaxListLen || len(r.Task.Scope) > MaxListLen ||
		len(r.Task.Chain) > MaxListLen || len(r.Approvals) > MaxListLen {
		return bad("lists must have at most %d entries", MaxListLen)
	}
	if len(r.Task.Purpose) > MaxStringLen || len(r.Command) > MaxStringLen || len(r.Destination.Path) > MaxStringLen ||
		len(r.Destination.Host) > MaxIDLen || len(r.Destination.Method) > 32 || len(r.Task.OnBehalfOf) > MaxIDLen {
		return bad("a field is over its size limit")
	}
	if r.Task.Depth < 0 || r.Task.Depth > MaxListLen {
		return bad("task.depth %d is out of range", r.Task.Depth)
	}
	if r.Task.MaxDepth < 0 || r.Task.MaxDepth > MaxListLen {
		return bad("task.max_depth %d is out of range", r.Task.MaxDepth)
	}
	return nil
}
