package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/secrets/postgres"
	"github.com/mandatehq/mandate/internal/task"
)

// leaseHook is the task lifecycle's secrets.Broker: the lifecycle is
// built before the broker (the broker decides through the pipeline, which
// needs the token server, which needs the lifecycle), so the broker is
// filled in once it exists. No task stops before New returns.
type leaseHook struct {
	b atomic.Pointer[secrets.Broker]
}

func (h *leaseHook) RevokeTaskLeases(ctx context.Context, ids []task.ID) {
	if b := h.b.Load(); b != nil {
		b.RevokeTaskLeases(ctx, ids)
	}
}

// newSecrets builds the secrets broker, re-wraps every value under the
// primary key-encryption key (a value sealed under a KEK that is not
// configured stops the start; one that does not open is logged and only
// its secret is unusable), hooks it to the task lifecycle and adds its
// sweeper to the background work.
func (s *Server) newSecrets(ctx context.Context, hook *leaseHook, pipeline *access.Pipeline, recorder audit.Recorder, log *slog.Logger) (*secrets.Broker, error) {
	b, err := secrets.New(secrets.Config{
		Store: s.backend, Tasks: s.backend, Sealer: s.sealer, Decider: pipeline, Recorder: recorder,
		Digester: s.ledger.Redactor(),
		Backends: map[secrets.Kind]secrets.Backend{secrets.KindPostgres: postgres.New(postgres.Config{})},
		Logger:   log,
	})
	if err != nil {
		return nil, err
	}
	rep, err := b.Rewrap(ctx, "system")
	if err != nil {
		return nil, fmt.Errorf("secrets: %w", err)
	}
	if rep.Secrets+rep.Leases > 0 {
		log.Info("secrets resealed under the primary key-encryption key", "secrets", rep.Secrets, "leases", rep.Leases, "kek", rep.PrimaryKEK)
	}
	if len(rep.Unusable) > 0 {
		log.Error("secrets whose stored value does not open; they cannot be leased until put again", "secrets", rep.Unusable)
	}
	hook.b.Store(b)
	s.background = append(s.background, b.Run)
	return b, nil
}

// mountSecrets adds the secrets admin API to both listeners.
func mountSecrets(b *secrets.Broker, mux, sockMux *http.ServeMux, tokens adminTokens, log *slog.Logger) {
	h := httpapi.NewSecretsAdmin(httpapi.SecretsAdminConfig{Broker: b, Logger: log})
	for _, p := range h.Patterns() {
		mux.Handle(p, requireAdminToken(tokens, log, h))
		sockMux.Handle(p, localAdmin(h))
	}
}
