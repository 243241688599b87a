package task

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
)

// Entitlement is the ceiling an admin sets for one agent: the largest
// scope, the highest data sensitivity and the longest lifetime any of its
// tasks may ever have, however the task is started (by an admin, by the
// agent itself through token exchange, or by delegation to it). An agent
// without an entitlement cannot start tasks by itself and cannot be
// delegated to; only an admin can start its tasks.
//
// The type lives here rather than in package identity because it is made
// of task scopes and sensitivities, and package task already depends on
// package identity.
type Entitlement struct {
	// Scope is the widest scope a task may have: every pattern of a
	// task's scope must be covered by one of these (see Pattern.Covers).
	Scope Scope
	// MaxSensitivity is the highest sensitivity ceiling a task may have.
	MaxSensitivity Sensitivity
	// MaxTaskTTL is the longest a task may live, from its creation to its
	// expiry.
	MaxTaskTTL time.Duration
}

// Limits on entitlements.
const (
	// MinEntitlementTTL is the shortest task lifetime an entitlement may
	// allow; a task's lifetime is counted in whole seconds.
	MinEntitlementTTL = time.Second
	// MaxEntitlementTTL is the longest task lifetime an entitlement may
	// allow, whatever the server's own limit.
	MaxEntitlementTTL = 366 * 24 * time.Hour
)

// Entitlement errors.
var (
	// ErrNoEntitlement: the agent has no entitlement, so it cannot start
	// tasks by itself or receive delegated ones.
	ErrNoEntitlement = errors.New("agent has no entitlement")
	// ErrNotEntitled: a task is wider than its agent's entitlement. The
	// error is an *ExceedsError saying which limit it passes.
	ErrNotEntitled = errors.New("task exceeds its agent's entitlement")
)

// The limits of an entitlement, as named by ExceedsError.Limit.
const (
	LimitScope       = "scope"
	LimitSensitivity = "sensitivity"
	LimitLifetime    = "lifetime"
)

// ExceedsError is the error Entitlement.Admits returns: the task passes
// the entitlement's Limit (LimitScope, LimitSensitivity or LimitLifetime).
// It wraps ErrNotEntitled.
type ExceedsError struct {
	Limit  string
	detail string
}

// Error describes what the task asks for beyond the entitlement.
func (e *ExceedsError) Error() string { return ErrNotEntitled.Error() + ": " + e.detail }

// Unwrap returns ErrNotEntitled.
func (e *ExceedsError) Unwrap() error { return ErrNotEntitled }

// Validate checks an entitlement: a non-empty scope of at most
// MaxScopePatterns canonical patterns, a known sensitivity and a lifetime
// from MinEntitlementTTL to MaxEntitlementTTL in whole seconds. Errors wrap
// ErrInvalid.
func (e *Entitlement) Validate() error {
	if e == nil {
		return fmt.Errorf("%w: entitlement is required", ErrInvalid)
	}
	if len(e.Scope) == 0 {
		return fmt.Errorf("%w: entitlement scope is required", ErrInvalid)
	}
	// Re-parse the canonical forms: a Scope built in code (not parsed)
	// must hold exactly what its patterns say, without duplicates.
	canon, err := ParseScopeList(e.Scope.Strings())
	if err != nil {
		return fmt.Errorf("entitlement scope: %w", err)
	}
	if len(canon) != len(e.Scope) {
		return fmt.Errorf("%w: entitlement scope lists a pattern twice", ErrInvalid)
	}
	if _, err := ParseSensitivity(string(e.MaxSensitivity)); err != nil {
		return fmt.Errorf("entitlement max_sensitivity: %w", err)
	}
	if e.MaxTaskTTL < MinEntitlementTTL || e.MaxTaskTTL > MaxEntitlementTTL || e.MaxTaskTTL%time.Second != 0 {
		return fmt.Errorf("%w: entitlement max_task_ttl %s must be whole seconds from %s to %s", ErrInvalid, e.MaxTaskTTL, MinEntitlementTTL, MaxEntitlementTTL)
	}
	return nil
}

// Admits reports whether t fits inside the entitlement: every pattern of
// its scope is covered by a pattern of the entitlement's, its sensitivity
// is no higher than MaxSensitivity and its lifetime (ExpiresAt minus
// CreatedAt) is no longer than MaxTaskTTL. A nil entitlement admits
// nothing (ErrNoEntitlement); otherwise a task that does not fit gets an
// *ExceedsError.
func (e *Entitlement) Admits(t *Task) error {
	if e == nil {
		return ErrNoEntitlement
	}
	if len(t.Scope) == 0 {
		return &ExceedsError{Limit: LimitScope, detail: "the task has no scope"}
	}
	if q, ok := e.Scope.Uncovered(t.Scope); !ok {
		return &ExceedsError{Limit: LimitScope, detail: fmt.Sprintf("scope pattern %q is not within the entitlement %q", q, e.Scope)}
	}
	if t.Sensitivity.Rank() > e.MaxSensitivity.Rank() {
		return &ExceedsError{Limit: LimitSensitivity, detail: fmt.Sprintf("sensitivity %s is above the entitlement's %s", t.Sensitivity, e.MaxSensitivity)}
	}
	if life := t.ExpiresAt.Sub(t.CreatedAt); life > e.MaxTaskTTL {
		return &ExceedsError{Limit: LimitLifetime, detail: fmt.Sprintf("lifetime %s is longer than the entitlement's %s", life.Round(time.Second), e.MaxTaskTTL)}
	}
	return nil
}

// entitlementJSON is an entitlement's JSON form; max_task_ttl is a Go
// duration string ("8h0m0s").
type entitlementJSON struct {
	Scope          Scope  `json:"scope"`
	MaxSensitivity string `json:"max_sensitivity"`
	MaxTaskTTL     string `json:"max_task_ttl"`
}

// MarshalJSON encodes the entitlement as {"scope": [...],
// "max_sensitivity": "...", "max_task_ttl": "8h0m0s"}.
func (e Entitlement) MarshalJSON() ([]byte, error) {
	return json.Marshal(entitlementJSON{Scope: e.Scope, MaxSensitivity: string(e.MaxSensitivity), MaxTaskTTL: e.MaxTaskTTL.String()})
}

// UnmarshalJSON decodes the form MarshalJSON writes, refusing unknown
// fields; it does not range-check (call Validate).
func (e *Entitlement) UnmarshalJSON(b []byte) error {
	var v entitlementJSON
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, ErrInvalid) {
			return err
		}
		return fmt.Errorf("%w: entitlement must be an object with scope, max_sensitivity and max_task_ttl: %v", ErrInvalid, err)
	}
	if v.Scope == nil || v.MaxSensitivity == "" || v.MaxTaskTTL == "" {
		return fmt.Errorf("%w: entitlement needs scope, max_sensitivity and max_task_ttl", ErrInvalid)
	}
	d, err := time.ParseDuration(v.MaxTaskTTL)
	if err != nil {
		return fmt.Errorf("%w: entitlement max_task_ttl %q is not a duration such as \"8h\"", ErrInvalid, v.MaxTaskTTL)
	}
	*e = Entitlement{Scope: v.Scope, MaxSensitivity: Sensitivity(v.MaxSensitivity), MaxTaskTTL: d}
	return nil
}

// EntitlementStore persists agents' entitlements, at most one per agent,
// kept with the agent. Implementations are safe for concurrent use.
type EntitlementStore interface {
	// GetEntitlement returns the agent's entitlement, ErrNoEntitlement if
	// it has none, or identity.ErrNotFound if there is no such agent.
	GetEntitlement(ctx context.Context, agent identity.ID) (*Entitlement, error)
	// SetEntitlement replaces the agent's entitlement with e (nil removes
	// it) at time at, atomically, and returns the previous one (nil if it
	// had none). It returns identity.ErrNotFound for an unknown agent and
	// an error wrapping ErrInvalid if e fails Validate.
	SetEntitlement(ctx context.Context, agent identity.ID, e *Entitlement, at time.Time) (prev *Entitlement, err error)
}
