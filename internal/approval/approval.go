// Package approval holds sensitive actions for a person's step-up
// approval, bound to the exact action: an approval request names the
// agent, the task (with its delegation chain and on-behalf-of), the action
// and resource, the keyed digest of the canonical arguments, the policy
// reasons and approval names that held it and the policy version that
// asked. An approval lifts exactly the approval names it covers, for
// exactly that digest: approving deploy(env=staging) never authorizes
// deploy(env=prod). Its reach is this call once (the default) or this
// tool with any arguments for the rest of the task.
//
// A request is pending until it is approved, denied, expired or
// cancelled, exactly once (the state machine refuses the rest with
// ErrNotFound, ErrExpired, ErrDecided, ErrDigestMismatch,
// ErrPolicyChanged). The Service opens or finds requests (coalesced by
// task, action, resource and digest; rate-limited per task), answers the
// decision pipeline's question "which approvals does this action carry"
// (Approved), records every step in the audit ledger, notifies by webhook
// and lets enforcement points wait for the outcome. Who may decide is not
// decided here: Decide asks its caller's Authorize, which is the access
// pipeline's approval.decide policy decision.
package approval

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// Status is where a request is in its life.
type Status string

// Statuses. Pending is the only one that changes.
const (
	StatusPending   Status = "pending"
	StatusApproved  Status = "approved"
	StatusDenied    Status = "denied"
	StatusExpired   Status = "expired"
	StatusCancelled Status = "cancelled"
)

// Terminal reports whether s never changes again.
func (s Status) Terminal() bool { return s != StatusPending }

// Reach is what an approval covers.
type Reach string

// Reaches.
const (
	// ReachOnce: this call, with these arguments, once.
	ReachOnce Reach = "once"
	// ReachTask: this action on this resource with any arguments, for the
	// rest of the task.
	ReachTask Reach = "task"
)

// ParseReach parses "once" (also the empty string) or "task".
func ParseReach(s string) (Reach, error) {
	switch s {
	case "", string(ReachOnce):
		return ReachOnce, nil
	case string(ReachTask):
		return ReachTask, nil
	}
	return "", fmt.Errorf("%w: reach %q is not once or task", ErrInvalid, s)
}

// ID identifies a request: "apr_" and 26 base32 characters (128 random
// bits): unguessable, as an ARAP task handle must be.
type ID string

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a fresh random ID.
func NewID() ID {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return ID("apr_" + strings.ToLower(idEncoding.EncodeToString(b[:])))
}

// ParseID checks that s is an ID. Anything else, in any other case or
// encoding, is refused (ErrInvalid).
func ParseID(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, "apr_")
	if !ok || len(rest) != 26 || strings.ToLower(rest) != rest {
		return "", fmt.Errorf("%w: %q is not an approval request id (apr_ and 26 base32 characters)", ErrInvalid, s)
	}
	if _, err := idEncoding.DecodeString(strings.ToUpper(rest)); err != nil {
		return "", fmt.Errorf("%w: %q is not an approval request id", ErrInvalid, s)
	}
	return ID(s), nil
}

// Request is one held action and its approval.
type Request struct {
	ID    ID     `json:"id"`
	Agent string `json:"agent"`
	// AgentTier, AgentOwner and Escalation are the agent's at the time of
	// the request (policies decide who approves from them).
	AgentTier  string  `json:"agent_tier"`
	AgentOwner string  `json:"agent_owner"`
	Escalation string  `json:"escalation,omitempty"`
	Task       task.ID `json:"task"`
	// TaskExpiresAt is when the task expires: the longest an approval of
	// reach task lasts.
	TaskExpiresAt time.Time `json:"task_expires_at,omitzero"`
	Chain         []string  `json:"chain,omitempty"`
	OnBehalfOf    string    `json:"on_behalf_of,omitempty"`
	// Principal is the person at the root of the task's chain.
	Principal string `json:"principal,omitempty"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
	Server    string `json:"server,omitempty"`
	// ArgsDigest is the keyed digest of the canonical arguments
	// (audit.Redactor.Digest): what an approval is bound to.
	ArgsDigest string `json:"args_digest"`
	// Arguments are the canonical arguments as the store keeps them:
	// sealed (internal/seal) when the Service has a sealer. They are shown
	// to approvers (Service.Arguments), never to the ledger.
	Arguments []byte `json:"-"`
	// Reasons are the policies that held the action; Approvals the
	// approval names it asks for; PolicyVersion what the policy set asked
	// of those names (policy.Set.ApprovalVersion).
	Reasons       []string  `json:"reasons,omitempty"`
	Approvals     []string  `json:"approvals"`
	PolicyVersion string    `json:"policy_version"`
	Point         string    `json:"point,omitempty"`
	CreatedAt     time.Time `json:"created_at"`
	// ExpiresAt is when a pending request expires.
	ExpiresAt time.Time `json:"expires_at"`
	Status    Status    `json:"status"`
	// Decider is who moved the request out of pending (a person, or
	// "system" for an expiry); Reason why.
	Decider   string    `json:"decider,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	Reason    string    `json:"reason,omitempty"`
	// Reach is what an approval covers; ApprovedUntil when it lapses.
	Reach         Reach     `json:"reach,omitempty"`
	ApprovedUntil time.Time `json:"approved_until,omitzero"`
	// Used marks a once approval spent by a decision.
	Used      bool      `json:"used,omitempty"`
	UsedAt    time.Time `json:"used_at,omitzero"`
	Escalated bool      `json:"escalated,omitempty"`
	// Callback is an ARAP callback (its Callback Notifications profile)
	// registered for the request's outcome, if any.
	Callback *Callback `json:"callback,omitempty"`
}

// Callback is where an enforcement point asked to be told the outcome.
type Callback struct {
	Endpoint string `json:"endpoint"`
	State    string `json:"state,omitempty"`
}

// key is what coalesces requests: one open request per task, action,
// resource and digest.
func (r *Request) key() string { return coalesceKey(r.Task, r.Action, r.Resource, r.ArgsDigest) }

func coalesceKey(t task.ID, action, resource, digest string) string {
	return string(t) + "\x00" + action + "\x00" + resource + "\x00" + digest
}

// clone returns a deep enough copy for callers: slices are shared
// read-only (nothing modifies them after creation).
func (r *Request) clone() *Request {
	c := *r
	if r.Callback != nil {
		cb := *r.Callback
		c.Callback = &cb
	}
	return &c
}

// Filter selects requests; zero fields match everything.
type Filter struct {
	Status     Status
	Task       task.ID
	Agent      string
	AgentOwner string
	// Limit bounds the result (0: the store's default of 1000).
	Limit int
}

// Errors. The Service's refusals wrap one of them; messages are safe to
// show to the caller.
var (
	ErrInvalid  = errors.New("invalid approval request")
	ErrNotFound = errors.New("no such approval request")
	ErrExists   = errors.New("approval request exists")
	// ErrConflict: the request is not in the state an update expected.
	ErrConflict = errors.New("approval request changed meanwhile")
	// ErrDecided: the request is no longer pending.
	ErrDecided = errors.New("approval request is already decided")
	// ErrExpired: the request expired before it was decided.
	ErrExpired = errors.New("approval request expired")
	// ErrDigestMismatch: the decider named other arguments than the
	// request's.
	ErrDigestMismatch = errors.New("the arguments digest does not match the request's")
	// ErrPolicyChanged: the policy no longer asks what the request asked.
	ErrPolicyChanged = errors.New("the policy changed since the request was made")
	// ErrRateLimited: the task opened too many requests.
	ErrRateLimited = errors.New("too many approval requests from this task")
	// ErrForbidden: the person may not decide this request (policy).
	ErrForbidden = errors.New("not allowed to decide this approval request")
)

// Store keeps approval requests. Implementations are safe for concurrent
// use; returned requests are the caller's.
type Store interface {
	// CreateApproval stores a new request. ErrExists if its ID is taken.
	CreateApproval(ctx context.Context, r *Request) error
	// GetApproval returns a request. ErrNotFound if there is none.
	GetApproval(ctx context.Context, id ID) (*Request, error)
	// UpdateApproval writes r's status, decider, decided_at, reason,
	// reach, approved_until, escalated and callback, if the stored request
	// has status from. ErrNotFound for an unknown request, ErrConflict if
	// its status is not from.
	UpdateApproval(ctx context.Context, r *Request, from Status) error
	// UseApproval marks an approved, unused request used at at.
	// ErrNotFound for an unknown request, ErrConflict if it is not
	// approved or already used.
	UseApproval(ctx context.Context, id ID, at time.Time) error
	// ListApprovals returns the requests f selects, newest first.
	ListApprovals(ctx context.Context, f Filter) ([]*Request, error)
}

// Event types the Service records (approval.requested, .granted and
// .denied are audit's).
const (
	TypeRequested audit.Type = audit.TypeApprovalRequested
	TypeGranted   audit.Type = audit.TypeApprovalGranted
	TypeDenied    audit.Type = audit.TypeApprovalDenied
	TypeExpired   audit.Type = "approval.expired"
	TypeCancelled audit.Type = "approval.cancelled"
	TypeUsed      audit.Type = "approval.used"
	TypeRefused   audit.Type = "approval.refused"
	TypeEscalated audit.Type = "approval.escalated"
	TypeNotified  audit.Type = "approval.notified"
)

// Approver is the person deciding, as the listener that authenticated
// them established it.
type Approver struct {
	// Person is their identity (an e-mail address or IdP subject).
	Person string
	// Via names how they were authenticated ("admin:token:<id>",
	// "admin:local"), for the ledger.
	Via string
	// Groups are the groups mandate knows them to be in ("approvers").
	Groups []string
}

type approverKey struct{}

// WithApprover returns ctx carrying a.
func WithApprover(ctx context.Context, a Approver) context.Context {
	return context.WithValue(ctx, approverKey{}, a)
}

// ApproverFromContext returns the approver in ctx, if any.
func ApproverFromContext(ctx context.Context) (Approver, bool) {
	a, ok := ctx.Value(approverKey{}).(Approver)
	return a, ok && a.Person != ""
}
