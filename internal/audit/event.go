// Package audit defines mandate's security events and the interface every
// part of mandate records them through. Every admin change, every token
// issued or refused and (later) every decided action is one Event.
//
// This package is the single write path for events; the tamper-evident
// ledger that makes them provable is built behind the same Recorder
// interface.
package audit

import (
	"context"
	"errors"
	"time"
)

// Type names what happened. Types are dotted, noun first.
type Type string

// Event types recorded by the core authority.
const (
	TypeAgentRegistered   Type = "agent.registered"
	TypeAgentSuspended    Type = "agent.suspended"
	TypeAgentResumed      Type = "agent.resumed"
	TypeAgentRetired      Type = "agent.retired"
	TypeTaskStarted       Type = "task.started"
	TypeTaskDelegated     Type = "task.delegated"
	TypeTaskEnded         Type = "task.ended"
	TypeTaskRevoked       Type = "task.revoked"
	TypeTaskExpired       Type = "task.expired"
	TypeTokenIssued       Type = "token.issued"
	TypeTokenRefused      Type = "token.refused"
	TypeTokenRevoked      Type = "token.revoked"
	TypeSigningKeyRotated Type = "signing_key.rotated"
)

// Decision outcomes recorded on events.
const (
	DecisionAllow = "allow"
	DecisionDeny  = "deny"
)

// Event types recorded by the decision pipeline (package access) and the
// policy admin API.
const (
	TypeAccessDecided       Type = "access.decided"
	TypePolicyShadowDiffers Type = "policy.shadow_differs"
	TypePolicyChanged       Type = "policy.changed"
	// DecisionApprovalRequired is the decision of an action held for
	// human approval.
	DecisionApprovalRequired = "approval_required"
)

// Event is one audit record.
type Event struct {
	// Seq is assigned by the store when the event is appended; zero before.
	Seq  int64     `json:"seq,omitempty"`
	Time time.Time `json:"time"`
	Type Type      `json:"type"`
	// Actor is who caused the event: an admin ("admin:local" for the local
	// socket), or an agent's SPIFFE ID.
	Actor string `json:"actor,omitempty"`
	// Agent is the agent the event concerns, as a SPIFFE ID.
	Agent string `json:"agent,omitempty"`
	// Chain is the delegation chain of agents, root first.
	Chain      []string `json:"chain,omitempty"`
	OnBehalfOf string   `json:"on_behalf_of,omitempty"`
	Task       string   `json:"task,omitempty"`
	Action     string   `json:"action,omitempty"`
	Resource   string   `json:"resource,omitempty"`
	Decision   string   `json:"decision,omitempty"`
	// Reason is a human-readable explanation (why a token was refused).
	Reason string `json:"reason,omitempty"`
	// Details carries type-specific fields (grant type, token ID, scope).
	// Never secrets.
	Details   map[string]string `json:"details,omitempty"`
	RequestID string            `json:"request_id,omitempty"`
	// Point names the enforcement point or endpoint that produced the event.
	Point string `json:"point,omitempty"`
}

// ErrUnavailable is returned by a Recorder that cannot make an event
// durable. Callers fail closed: the action the event describes must not
// proceed.
var ErrUnavailable = errors.New("audit log unavailable")

// Recorder records events. Record returns only once the event is durable;
// a non-nil error means it is not, and the caller must deny the action.
// Implementations are safe for concurrent use.
type Recorder interface {
	Record(ctx context.Context, ev Event) error
}

// Query selects events in Store.ListEvents. Zero fields match everything.
type Query struct {
	Type     Type
	Agent    string
	Task     string
	AfterSeq int64
	Since    time.Time
	Until    time.Time
	Limit    int
}

// Store persists events in append order. Implementations are safe for
// concurrent use.
type Store interface {
	// AppendEvents durably appends events in order, assigning each its
	// sequence number (in place) in one transaction.
	AppendEvents(ctx context.Context, evs []*Event) error
	// ListEvents returns the events matching q in sequence order.
	ListEvents(ctx context.Context, q Query) ([]*Event, error)
}

// StoreRecorder is a Recorder that appends each event to a Store.
type StoreRecorder struct {
	Store Store
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
}

// Record stamps ev with the current time (if unset) and appends it.
func (r *StoreRecorder) Record(ctx context.Context, ev Event) error {
	if ev.Time.IsZero() {
		if r.Now != nil {
			ev.Time = r.Now()
		} else {
			ev.Time = time.Now()
		}
	}
	ev.Time = ev.Time.UTC()
	if err := r.Store.AppendEvents(ctx, []*Event{&ev}); err != nil {
		return errors.Join(ErrUnavailable, err)
	}
	return nil
}
