// Package task defines task mandates: the binding of one agent to one purpose,
// on behalf of a human or a parent task, with a scope, a data-sensitivity
// ceiling, an expiry and budgets. Every token an agent uses to act is bound to
// a task; ending, revoking or expiring the task ends everything it holds, and
// revoking a task cascades to every task delegated from it.
//
// The package owns the Task type, scope patterns and their narrowing rules,
// the Store contract that storage backends implement, and its sentinel errors.
package task

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
)

// ID identifies a task: "tsk_" followed by 26 base32 characters (128 random bits).
type ID string

const idPrefix = "tsk_"

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// NewID returns a fresh random task ID.
func NewID() ID {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return ID(idPrefix + strings.ToLower(idEncoding.EncodeToString(b[:])))
}

// ParseID validates s as a task ID.
func ParseID(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, idPrefix)
	if !ok || len(rest) != 26 {
		return "", fmt.Errorf("%w: %q is not a task ID", ErrInvalid, s)
	}
	if _, err := idEncoding.DecodeString(strings.ToUpper(rest)); err != nil {
		return "", fmt.Errorf("%w: %q is not a task ID", ErrInvalid, s)
	}
	return ID(s), nil
}

// Status is a task's lifecycle state. Only active tasks authorize anything;
// every other status is final.
type Status string

// Task statuses.
const (
	StatusActive  Status = "active"
	StatusEnded   Status = "ended"   // finished normally by its agent or an admin
	StatusRevoked Status = "revoked" // stopped by an admin, a cascade or the agent's suspension
	StatusExpired Status = "expired" // reached ExpiresAt
)

// Sensitivity is a data-sensitivity level. Levels are ordered.
type Sensitivity string

// Sensitivity levels, from least to most sensitive.
const (
	SensitivityPublic       Sensitivity = "public"
	SensitivityInternal     Sensitivity = "internal"
	SensitivityConfidential Sensitivity = "confidential"
	SensitivityRestricted   Sensitivity = "restricted"
)

var sensitivityRank = map[Sensitivity]int{
	SensitivityPublic: 0, SensitivityInternal: 1, SensitivityConfidential: 2, SensitivityRestricted: 3,
}

// ParseSensitivity parses s as a Sensitivity level.
func ParseSensitivity(s string) (Sensitivity, error) {
	if _, ok := sensitivityRank[Sensitivity(s)]; !ok {
		return "", fmt.Errorf("%w: unknown sensitivity %q (want public, internal, confidential or restricted)", ErrInvalid, s)
	}
	return Sensitivity(s), nil
}

// Rank orders sensitivity levels; an unknown level ranks above all others so
// that it is never treated as less sensitive than it is.
func (s Sensitivity) Rank() int {
	if r, ok := sensitivityRank[s]; ok {
		return r
	}
	return len(sensitivityRank)
}

// Budget caps what a task may do. Zero means unlimited.
type Budget struct {
	MaxActions int64 `json:"max_actions,omitempty"`
	MaxWrites  int64 `json:"max_writes,omitempty"`
}

// Narrows reports whether b is no looser than parent.
func (b Budget) Narrows(parent Budget) bool {
	return narrowsLimit(b.MaxActions, parent.MaxActions) && narrowsLimit(b.MaxWrites, parent.MaxWrites)
}

func narrowsLimit(child, parent int64) bool {
	return parent == 0 || child != 0 && child <= parent
}

// Usage counts what a task has done against its budget.
type Usage struct {
	Actions int64 `json:"actions"`
	Writes  int64 `json:"writes"`
}

// Limits on task fields.
const (
	MaxPurposeLen = 1024
	// DefaultMaxDepth is the default delegation depth limit: a root task
	// has depth 0.
	DefaultMaxDepth = 4
)

// Sentinel errors returned by this package and by Store implementations.
var (
	ErrNotFound  = errors.New("task not found")
	ErrExists    = errors.New("task already exists")
	ErrInvalid   = errors.New("invalid task")
	ErrNotActive = errors.New("task is not active")
	// ErrNotNarrower: a child task would widen its parent's scope, budget,
	// sensitivity ceiling or lifetime.
	ErrNotNarrower = errors.New("delegated task must not exceed its parent")
)

// Task is a mandate for one agent to do one piece of work.
type Task struct {
	ID    ID          `json:"id"`
	Agent identity.ID `json:"agent"`
	// OnBehalfOf is the principal the work is done for: a human's subject
	// at their identity provider (for a root task) or "task:<id>" of the
	// parent task (for a delegated one).
	OnBehalfOf string `json:"on_behalf_of"`
	// Principal is the human (or, for an agent-initiated task with no
	// human, the agent) at the root of the delegation chain: the subject
	// of the task's tokens.
	Principal   string      `json:"principal"`
	Purpose     string      `json:"purpose"`
	Scope       Scope       `json:"scope"`
	Sensitivity Sensitivity `json:"sensitivity"`
	Budget      Budget      `json:"budget"`
	Used        Usage       `json:"used"`
	// Taint is the highest sensitivity the task has been exposed to: read
	// itself, read by a task delegated from it, or started with (its
	// parent's taint, its agent's taint at creation). Empty: none. It is
	// only ever raised (Store.RaiseTaint).
	Taint  Sensitivity `json:"taint,omitempty"`
	Parent ID          `json:"parent,omitempty"`
	Depth  int         `json:"depth"`
	// Actors is the delegation chain of agents, root first, ending with
	// Agent.
	Actors       []identity.ID `json:"actors"`
	Status       Status        `json:"status"`
	StatusReason string        `json:"status_reason,omitempty"`
	CreatedAt    time.Time     `json:"created_at"`
	ExpiresAt    time.Time     `json:"expires_at"`
	EndedAt      time.Time     `json:"ended_at,omitzero"`
}

// ActiveAt reports whether the task authorizes anything at time now.
func (t *Task) ActiveAt(now time.Time) bool {
	return t.Status == StatusActive && now.Before(t.ExpiresAt)
}

// Validate checks a task's own fields (not its relation to a parent).
func (t *Task) Validate() error {
	if _, err := ParseID(string(t.ID)); err != nil {
		return err
	}
	if t.Agent.IsZero() {
		return fmt.Errorf("%w: agent is required", ErrInvalid)
	}
	if strings.TrimSpace(t.OnBehalfOf) == "" {
		return fmt.Errorf("%w: on_behalf_of is required: a task acts for a human or a parent task", ErrInvalid)
	}
	if strings.TrimSpace(t.Purpose) == "" {
		return fmt.Errorf("%w: purpose is required", ErrInvalid)
	}
	if len(t.Purpose) > MaxPurposeLen || len(t.OnBehalfOf) > MaxPurposeLen {
		return fmt.Errorf("%w: purpose and on_behalf_of must be at most %d bytes", ErrInvalid, MaxPurposeLen)
	}
	if len(t.Scope) == 0 {
		return fmt.Errorf("%w: scope is required", ErrInvalid)
	}
	if _, err := ParseSensitivity(string(t.Sensitivity)); err != nil {
		return err
	}
	if t.Taint != "" {
		if _, err := ParseSensitivity(string(t.Taint)); err != nil {
			return fmt.Errorf("taint: %w", err)
		}
	}
	if t.Budget.MaxActions < 0 || t.Budget.MaxWrites < 0 {
		return fmt.Errorf("%w: budgets must not be negative", ErrInvalid)
	}
	if !t.ExpiresAt.After(t.CreatedAt) {
		return fmt.Errorf("%w: expires_at must be after created_at", ErrInvalid)
	}
	if t.Depth < 0 || (t.Depth == 0) != (t.Parent == "") {
		return fmt.Errorf("%w: depth %d does not match parent %q", ErrInvalid, t.Depth, t.Parent)
	}
	if len(t.Actors) != t.Depth+1 || t.Actors[len(t.Actors)-1] != t.Agent {
		return fmt.Errorf("%w: actors must list the delegation chain ending with the task's agent", ErrInvalid)
	}
	return nil
}

// CheckNarrows reports whether child is a narrowing of parent: the parent
// is active, the child is one level deeper, and its scope, sensitivity
// ceiling, budget and expiry are no wider than the parent's. Whether the
// delegation may happen at all (the depth limit, the delegate's tier) is a
// decision of the access pipeline (task.delegate).
func CheckNarrows(parent, child *Task, now time.Time) error {
	if !parent.ActiveAt(now) {
		return fmt.Errorf("%w: parent %s is %s", ErrNotActive, parent.ID, parent.Status)
	}
	if child.Depth != parent.Depth+1 {
		return fmt.Errorf("%w: depth %d under a parent at depth %d", ErrInvalid, child.Depth, parent.Depth)
	}
	if !parent.Scope.Covers(child.Scope) {
		return fmt.Errorf("%w: scope %q is not within the parent's %q", ErrNotNarrower, child.Scope, parent.Scope)
	}
	if child.Sensitivity.Rank() > parent.Sensitivity.Rank() {
		return fmt.Errorf("%w: sensitivity %s is above the parent's %s", ErrNotNarrower, child.Sensitivity, parent.Sensitivity)
	}
	if !child.Budget.Narrows(parent.Budget) {
		return fmt.Errorf("%w: budget is larger than the parent's", ErrNotNarrower)
	}
	if child.ExpiresAt.After(parent.ExpiresAt) {
		return fmt.Errorf("%w: expiry %s is after the parent's %s", ErrNotNarrower, child.ExpiresAt.UTC().Format(time.RFC3339), parent.ExpiresAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// Filter selects tasks in Store.ListTasks. Zero fields match everything.
type Filter struct {
	Agent  identity.ID
	Status Status
	Parent ID
	// OnBehalfOf selects the tasks run for one principal.
	OnBehalfOf string
	Limit      int
}

// Store persists tasks. Implementations are safe for concurrent use.
type Store interface {
	// CreateTask stores a new task. It returns ErrExists if the ID is taken.
	// A child task is created only if its parent is still active: otherwise
	// ErrNotActive (checked in the same transaction, so a concurrent revoke
	// of the parent cannot leave a live orphan). The task starts tainted:
	// its stored Taint is the highest of t.Taint, the parent's Taint and
	// its agent's taint in force at t.CreatedAt (identity.Agent.TaintAt),
	// read in the same transaction; t.Taint is set to it.
	CreateTask(ctx context.Context, t *Task) error
	// GetTask returns the task with the given ID, or ErrNotFound.
	GetTask(ctx context.Context, id ID) (*Task, error)
	// ListTasks returns the tasks matching f, newest first.
	ListTasks(ctx context.Context, f Filter) ([]*Task, error)
	// FinishTask moves an active task and all of its active descendants to
	// status (ended, revoked or expired) with reason, at time at, in one
	// transaction. It returns the IDs of every task it changed, the given
	// one first. It returns ErrNotFound for an unknown task and ErrNotActive
	// if the task is already finished.
	FinishTask(ctx context.Context, id ID, status Status, reason string, at time.Time) ([]ID, error)
	// FinishAgentTasks revokes every active task of agent and all of their
	// descendants (of any agent) in one transaction, returning their IDs.
	FinishAgentTasks(ctx context.Context, agent identity.ID, status Status, reason string, at time.Time) ([]ID, error)
	// ExpireTasks marks every active task whose ExpiresAt is not after now
	// as expired and returns their IDs.
	ExpireTasks(ctx context.Context, now time.Time) ([]ID, error)
	// AddUsage adds each delta to its task's Used counters, in one
	// transaction. IDs of tasks that do not exist are ignored. Usage is
	// counted whatever the task's status, since actions decided before a
	// task finished still happened.
	AddUsage(ctx context.Context, deltas map[ID]Usage) error
	// RaiseTaint records that task id was exposed to data of sensitivity
	// level at time at: in one transaction it raises the Taint of the task
	// and of every task it was delegated from to level, and the taint of
	// each of their agents to level in force until until (see
	// identity.Agent.Taint): an agent's taint still in force at at is kept
	// if it is higher, and its TaintUntil becomes the later of the two.
	// Nothing is ever lowered, whatever runs concurrently: each row is
	// raised by one conditional update. It
	// returns ErrNotFound for an unknown task and ErrInvalid for an unknown
	// level or an until not after at. Finished tasks are raised too.
	RaiseTaint(ctx context.Context, id ID, level Sensitivity, at, until time.Time) error

	// InactiveTaskIDs returns the IDs of tasks that finished and have not
	// yet reached their ExpiresAt at time now: the ones whose tokens may
	// still be unexpired and must be refused.
	InactiveTaskIDs(ctx context.Context, now time.Time) ([]ID, error)
}
