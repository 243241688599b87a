// Package store opens mandate's storage backend from a data source name. It
// is the only package besides server that knows which backends exist; the
// domain packages see only their own Store interfaces.
package store

import (
	"context"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// Backend is everything a storage backend provides: one Store per domain
// package, plus lifecycle. Implementations are safe for concurrent use.
type Backend interface {
	identity.Store
	task.Store
	task.EntitlementStore
	token.Store
	audit.Store
	toolpin.Store
	// approval.Store keeps the held actions and their approvals.
	approval.Store
	// policy.SourceStore keeps the API-managed policy documents, so that
	// every replica on the store decides with the same set.
	policy.SourceStore
	// secrets.Store keeps secrets (sealed) and their leases.
	secrets.Store
	// identity.PeopleStore keeps people and their web sessions.
	identity.PeopleStore
	// token.GrantStore keeps authorization codes, refresh tokens and
	// dynamically registered clients.
	token.GrantStore
	// Ping reports whether the backend can serve requests (for /readyz).
	Ping(ctx context.Context) error
	// Close releases the backend's resources.
	Close() error
}
