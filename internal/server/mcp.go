package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"golang.org/x/time/rate"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// checkMCP validates the MCP gateway's configuration.
func checkMCP(c *MCPConfig) error {
	var errs []error
	for i, u := range c.Upstreams {
		up := u.upstream()
		if err := up.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("mcp.upstreams[%d]: %v", i, err))
		}
	}
	if c.CallTimeout < 0 || c.MaxMessageBytes < 0 || c.AgentRate < 0 || c.ToolRate < 0 || c.TaskCalls < 0 {
		errs = append(errs, errors.New("mcp: limits must not be negative"))
	}
	return errors.Join(errs...)
}

func (c *MCPConfig) upstreams() []mcpproxy.Upstream {
	ups := make([]mcpproxy.Upstream, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		ups = append(ups, u.upstream())
	}
	return ups
}

// mcpAudiences are the audiences the authorization server issues task
// tokens for (RFC 8707): the issuer, the default, and, when the gateway is
// mounted, the resource identifier of each of its endpoints, exactly as
// its protected resource metadata advertises them.
func mcpAudiences(c *MCPConfig, publicURL string) []string {
	auds := []string{publicURL}
	if len(c.Upstreams) > 0 {
		auds = append(auds, mcpproxy.Resources(mcpproxy.Config{PublicURL: publicURL, Upstreams: c.upstreams()})...)
	}
	return auds
}

func (u MCPUpstream) upstream() mcpproxy.Upstream {
	return mcpproxy.Upstream{Name: u.Name, Command: u.Command, Args: u.Args, Env: u.Env, Dir: u.Dir, URL: u.URL, Headers: u.Headers}
}

// mountMCP builds the MCP gateway when upstreams are configured and mounts
// it (at /mcp, with its RFC 9728 metadata) and the tool pin admin API.
func (s *Server) mountMCP(mux, sockMux *http.ServeMux, rec audit.Recorder, tokens adminTokens, broker *secrets.Broker, stops *stopHook) error {
	c := s.cfg.MCP
	if len(c.Upstreams) == 0 {
		return nil
	}
	ups := c.upstreams()
	// Pins live in the store; the gateway serves by them and the admin
	// API approves through the same Pins, so an approval applies at once.
	pins := toolpin.New(toolpin.Config{Store: s.backend, Audit: rec, Log: s.log.With("component", "toolpin")})
	var auth mcpproxy.Authenticator = noPipeline{}
	var decider mcpproxy.Decider = noPipeline{}
	if s.acc != nil && s.acc.pipeline != nil {
		p := mcpproxy.NewPipeline(s.acc.pipeline)
		auth, decider = p, p
	}
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams:            ups,
		Authenticator:        auth,
		Decider:              decider,
		Audit:                rec,
		Credentials:          gatewayCredentials{broker},
		Redactor:             s.ledger.Redactor(), // keyed digests; audit.redact_fields applies
		Pins:                 pins,
		Approvals:            &approvalWaiter{svc: s.approvals.svc, decider: decider, timeout: s.cfg.Approvals.WaitTimeout, publicURL: s.publicURL}, // approvals.go
		PublicURL:            s.publicURL,
		AuthorizationServers: []string{s.publicURL},
		Issuer:               s.publicURL,
		// Rate limits and the call budget are the pipeline's (mcpLimits).
		Limits: mcpproxy.Limits{CallTimeout: c.CallTimeout, MaxMessageBytes: int64(c.MaxMessageBytes)},
		Logger: s.log.With("component", "mcp"),
	})
	if err != nil {
		return err
	}
	s.mcp = gw
	stops.gw.Store(gw) // a stopped task's sessions close at once
	for _, p := range []string{"/mcp", "/mcp/", "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp/"} {
		mux.Handle(p, gw)
	}
	tools := httpapi.NewTools(httpapi.ToolsConfig{Pins: pins, Logger: s.log.With("component", "adminapi")})
	for _, p := range []string{"/admin/v1/tools", "/admin/v1/tools/"} {
		mux.Handle(p, requireAdminToken(tokens, s.log, tools))
		sockMux.Handle(p, localAdmin(tools))
	}
	return nil
}

// mcpLimits are the gateway's rate limits and call budget, decided by
// the access pipeline for the actions of point "mcp".
func mcpLimits(c MCPConfig) map[string]access.Limits {
	return map[string]access.Limits{mcpproxy.Point: {
		AgentRate: rate.Limit(c.AgentRate), ToolRate: rate.Limit(c.ToolRate), TaskCalls: int64(c.TaskCalls),
	}}
}

// noPipeline refuses every MCP request when there is no pipeline (fail
// closed).
type noPipeline struct{}

func (noPipeline) Authenticate(context.Context, mcpproxy.Credential) (*mcpproxy.Principal, error) {
	return nil, errors.New("no decision pipeline is configured on this server")
}

func (noPipeline) Decide(context.Context, mcpproxy.Request) (mcpproxy.Decision, error) {
	return mcpproxy.Decision{Effect: mcpproxy.Deny, Reasons: []string{"no decision pipeline is configured on this server (denied by default)"}}, nil
}
