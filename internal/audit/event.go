// Package audit is mandate's tamper-evident audit ledger.
//
// Every admin change, every token issued or refused, and every decided
// action is one Event, recorded through the Recorder interface. The Ledger
// implementation makes each event durable before Record returns (group
// commit: concurrent appends share one transaction) and makes the whole
// log provable: events are the leaves of an RFC 6962/9162 Merkle tree built
// with golang.org/x/mod/sumdb/tlog, whose roots are signed periodically and
// on demand as C2SP checkpoints (golang.org/x/mod/sumdb/note, Ed25519).
// Inclusion proofs show that an event is in a checkpointed tree;
// consistency proofs show that a later checkpoint extends an earlier one.
// Verify checks the live ledger and VerifyExport an exported one offline,
// naming the first sequence number that does not check out.
//
// Arguments of actions are kept as a keyed digest by default; when a
// policy asks for full arguments, secret-looking values and configured
// fields are replaced by keyed hmac-sha256: values (see Redactor).
package audit

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/fault"
)

// Type names what happened. Types are dotted, noun first.
type Type string

// Event types recorded by the core authority.
const (
	TypeAgentRegistered        Type = "agent.registered"
	TypeAgentSuspended         Type = "agent.suspended"
	TypeAgentResumed           Type = "agent.resumed"
	TypeAgentRetired           Type = "agent.retired"
	TypeAgentKeyAdded          Type = "agent.key_added"
	TypeAgentKeyRemoved        Type = "agent.key_removed"
	TypeAgentFederationAdded   Type = "agent.federation_added"
	TypeAgentFederationRemoved Type = "agent.federation_removed"
	TypeTaskStarted            Type = "task.started"
	TypeTaskDelegated          Type = "task.delegated"
	TypeTaskEnded              Type = "task.ended"
	TypeTaskRevoked            Type = "task.revoked"
	TypeTaskExpired            Type = "task.expired"
	TypeTokenIssued            Type = "token.issued"
	TypeTokenRefused           Type = "token.refused"
	TypeTokenRevoked           Type = "token.revoked"
	TypeSigningKeyRotated      Type = "signing_key.rotated"
	// TypeLedgerReset is the first event of a ledger that an operator
	// started over with `mandate serve --accept-new-store`, although the
	// anchor in the data directory shows an older ledger; its details
	// name that ledger's anchored size and root hash, and why it was not
	// continued.
	TypeLedgerReset Type = "ledger.reset"
	// TypeActionDecided is an attempted action and the decision on it,
	// from any enforcement point.
	TypeActionDecided Type = "action.decided"
	// TypeActionCompleted records the outcome of an allowed action.
	TypeActionCompleted Type = "action.completed"
	// TypeApprovalRequested, TypeApprovalGranted and TypeApprovalDenied
	// follow a held action through human step-up approval.
	TypeApprovalRequested Type = "approval.requested"
	TypeApprovalGranted   Type = "approval.granted"
	TypeApprovalDenied    Type = "approval.denied"
)

// Event types about entitlements, the ceilings of agents' tasks.
const (
	// TypeAgentEntitlementChanged: an admin set, changed or removed an
	// agent's entitlement; details hold the old and new ceilings.
	TypeAgentEntitlementChanged Type = "agent.entitlement_changed"
	// TypeTaskRefused: an admin asked for a task its agent's entitlement
	// does not admit. (A refused token exchange is token.refused.)
	TypeTaskRefused Type = "task.refused"
)

// Event types recorded by the MCP gateway.
const (
	// TypeMCPCall is a decided MCP call (tools/call, resources/read,
	// prompts/get), recorded before the call proceeds.
	TypeMCPCall Type = "mcp.call"
	// TypeMCPResult is the outcome of an allowed MCP call.
	TypeMCPResult Type = "mcp.result"
	// TypeToolPinned: a tool definition was seen for the first time and pinned.
	TypeToolPinned Type = "tool.pinned"
	// TypeToolQuarantined: an upstream changed a pinned tool definition.
	TypeToolQuarantined Type = "tool.quarantined"
	// TypeToolApproved: an admin approved a changed tool definition.
	TypeToolApproved Type = "tool.approved"
	// TypeToolCollision: upstreams offer tools under the same name.
	TypeToolCollision Type = "tool.collision"
)

// Decision outcomes recorded on events.
const (
	DecisionAllow            = "allow"
	DecisionDeny             = "deny"
	DecisionApprovalRequired = "approval_required"
)

// Event types recorded by the policy admin API and shadow evaluation.
const (
	TypePolicyShadowDiffers Type = "policy.shadow_differs"
	TypePolicyChanged       Type = "policy.changed"
)

// Event is one audit record: a leaf of the ledger's Merkle tree.
//
// The JSON encoding of an Event is part of the ledger format: its leaf
// hash is computed over Canonical(ev). Adding, renaming or reordering
// fields changes the hashes of new events; such a change must bump V.
type Event struct {
	// V is the canonical format version; zero (omitted) is version 1.
	V int `json:"v,omitempty"`
	// Seq is the event's position in the ledger, from 1; the Merkle leaf
	// index is Seq-1. Assigned when the event is appended; zero before.
	Seq  int64     `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	Type Type      `json:"type"`
	// Actor is who caused the event: an admin ("admin:local" for the local
	// socket), or an agent's SPIFFE ID.
	Actor string `json:"actor,omitempty"`
	// Agent is the agent the event concerns, as a SPIFFE ID.
	Agent string `json:"agent,omitempty"`
	// Chain is the whole delegation chain of agents, root first.
	Chain      []string `json:"chain,omitempty"`
	OnBehalfOf string   `json:"on_behalf_of,omitempty"`
	Task       string   `json:"task,omitempty"`
	// Action is the attempted operation, e.g. tool.call or file.write.
	Action string `json:"action,omitempty"`
	// Resource is the typed resource acted on, e.g. file:/repo/main.go.
	Resource string `json:"resource,omitempty"`
	// Decision is allow, deny or approval_required.
	Decision string `json:"decision,omitempty"`
	// Reason is a human-readable explanation (why a token was refused).
	Reason string `json:"reason,omitempty"`
	// Reasons are the policies that determined the decision.
	Reasons []PolicyReason `json:"reasons,omitempty"`
	// ApprovalID names the approval request a held action matched or opened.
	ApprovalID string `json:"approval_id,omitempty"`
	// Outcome is what happened when an allowed action ran.
	Outcome *Outcome `json:"outcome,omitempty"`
	// ArgsDigest is the keyed digest of the action's canonical arguments
	// ("hmac-sha256:<hex>", see Redactor.Digest): it correlates equal
	// arguments without revealing them.
	ArgsDigest string `json:"args_digest,omitempty"`
	// Args are the full arguments, kept only when a policy obligation asks
	// for them, with secret-looking values and configured fields replaced
	// by hmac-sha256: values (see Redactor.Redact). Canonical JSON.
	Args json.RawMessage `json:"args,omitempty"`
	// Details carries type-specific fields (grant type, token ID, scope).
	// Never secrets.
	Details   map[string]string `json:"details,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	// Point names the enforcement point or endpoint that produced the
	// event: mcp, egress, hook, authzen, oauth, admin.
	Point string `json:"point,omitempty"`
}

// PolicyReason is one policy's contribution to a decision.
type PolicyReason struct {
	Policy  string `json:"policy"`
	Message string `json:"message,omitempty"`
}

// Outcome is the result of an action that ran.
type Outcome struct {
	// Status is ok, error, or an enforcement point's own status word.
	Status string `json:"status"`
	// Error is the error message of a failed action (never a secret).
	Error string `json:"error,omitempty"`
	// Bytes is the size of the action's result or transfer.
	Bytes int64 `json:"bytes,omitempty"`
	// Duration is how long the action ran.
	Duration time.Duration `json:"duration_ns,omitempty"`
}

// ErrUnavailable is returned by a Recorder that cannot make an event
// durable. Callers fail closed: the action the event describes must not
// proceed. It is in the class fault.ErrUnavailable: an operator can fix
// it, and HTTP callers are answered 503.
var ErrUnavailable = fmt.Errorf("audit log unavailable: %w", fault.ErrUnavailable)

// ErrInvalid is returned for an event, query or proof request that is not
// well-formed; its message is safe to show to the caller.
var ErrInvalid = errors.New("invalid audit request")

// ErrNotFound is returned for an event or checkpoint that does not exist
// (or was pruned).
var ErrNotFound = errors.New("not found in the audit ledger")

// Recorder records events. Record returns only once the event is durable;
// a non-nil error means it is not, and the caller must deny the action.
// Implementations are safe for concurrent use.
type Recorder interface {
	Record(ctx context.Context, ev Event) error
}

type unhurriedKey struct{}

// Unhurried marks the events recorded under ctx as ones nobody is held up
// for — an outcome recorded after the answer went out, say. A recorder
// that commits in groups may then keep such an event for the next commit
// that others start (briefly: the Ledger waits at most
// LedgerConfig.UnhurriedWait before it commits the event itself), instead
// of starting a commit of its own. Record still returns only once the
// event is durable.
func Unhurried(ctx context.Context) context.Context {
	return context.WithValue(ctx, unhurriedKey{}, true)
}

func isUnhurried(ctx context.Context) bool {
	v, _ := ctx.Value(unhurriedKey{}).(bool)
	return v
}
