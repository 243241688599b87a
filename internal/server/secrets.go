package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync/atomic"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/secrets/postgres"
	"github.com/mandatehq/mandate/internal/task"
)

// stopHook is what the task lifecycle tells of stopped tasks: the MCP
// gateway, which closes their sessions (and so the upstream processes and
// connections holding their credentials), then the secrets broker, which
// revokes their leases. The lifecycle is built before either (the broker
// decides through the pipeline, which needs the token server, which needs
// the lifecycle), so they are filled in once they exist. No task stops
// before New returns.
type stopHook struct {
	b  atomic.Pointer[secrets.Broker]
	gw atomic.Pointer[mcpproxy.Gateway]
}

func (h *stopHook) TasksStopped(ctx context.Context, ids []task.ID) {
	if gw := h.gw.Load(); gw != nil {
		names := make([]string, len(ids))
		for i, id := range ids {
			names[i] = string(id)
		}
		gw.EndTasks(names)
	}
	if b := h.b.Load(); b != nil {
		b.RevokeTaskLeases(ctx, ids)
	}
}

// newSecrets builds the secrets broker, re-wraps every value under the
// primary key-encryption key (a value sealed under a KEK that is not
// configured stops the start; one that does not open is logged and only
// its secret is unusable), hooks it to the task lifecycle and adds its
// sweeper to the background work.
func (s *Server) newSecrets(ctx context.Context, hook *stopHook, pipeline *access.Pipeline, recorder audit.Recorder, log *slog.Logger) (*secrets.Broker, error) {
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

// mountSecrets adds the secrets admin API to both listeners, and the
// agents' reveal endpoint to the TCP one.
func mountSecrets(b *secrets.Broker, pipeline *access.Pipeline, publicURL string, mux, sockMux *http.ServeMux, tokens adminTokens, log *slog.Logger) {
	h := httpapi.NewSecretsAdmin(httpapi.SecretsAdminConfig{Broker: b, Logger: log})
	for _, p := range h.Patterns() {
		mux.Handle(p, requireAdminToken(tokens, log, h))
		sockMux.Handle(p, localAdmin(h))
	}
	httpapi.NewReveal(httpapi.RevealConfig{Pipeline: pipeline, Broker: b, PublicURL: publicURL, Logger: log}).Register(mux)
}

// gatewayCredentials are the MCP gateway's Credentials: the secrets the
// broker delivers to an upstream, leased to the connecting session's task.
type gatewayCredentials struct{ b *secrets.Broker }

func (c gatewayCredentials) For(ctx context.Context, p *mcpproxy.Principal, upstream string) (mcpproxy.Injection, error) {
	ds, err := c.b.LeaseForUpstream(ctx, task.ID(p.Task), upstream)
	if err != nil {
		return mcpproxy.Injection{}, err
	}
	var inj mcpproxy.Injection
	for _, d := range ds {
		v := string(d.Value.Bytes())
		switch {
		case d.Target.Env != "":
			inj.Env = append(inj.Env, d.Target.Env+"="+v)
		case d.Target.Header != "":
			if inj.Headers == nil {
				inj.Headers = map[string]string{}
			}
			inj.Headers[d.Target.Header] = v
		default:
			continue
		}
		if inj.Secrets == nil {
			inj.Secrets = map[string]string{}
		}
		inj.Secrets[v] = string(d.Lease.Secret)
		if inj.Until.IsZero() || d.Lease.ExpiresAt.Before(inj.Until) {
			inj.Until = d.Lease.ExpiresAt
		}
	}
	return inj, nil
}
