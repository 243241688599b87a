package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"

	"golang.org/x/time/rate"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
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

func (u MCPUpstream) upstream() mcpproxy.Upstream {
	return mcpproxy.Upstream{Name: u.Name, Command: u.Command, Args: u.Args, Env: u.Env, Dir: u.Dir, URL: u.URL, Headers: u.Headers}
}

// mountMCP builds the MCP gateway when upstreams are configured and mounts
// it (at /mcp, with its RFC 9728 metadata) and the tool pin admin API.
func (s *Server) mountMCP(mux, sockMux *http.ServeMux, rec audit.Recorder, tokens adminTokens) error {
	c := s.cfg.MCP
	if len(c.Upstreams) == 0 {
		return nil
	}
	ups := make([]mcpproxy.Upstream, 0, len(c.Upstreams))
	for _, u := range c.Upstreams {
		ups = append(ups, u.upstream())
	}
	// Pins live in the store (table mcp_tool_pins); a backend without the
	// table keeps them in a file in the data directory.
	pins, ok := s.backend.(mcpproxy.PinStore)
	if !ok {
		fp, err := mcpproxy.OpenFilePins(filepath.Join(s.cfg.DataDir, "mcp-pins.json"))
		if err != nil {
			return err
		}
		pins = fp
	}
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams:            ups,
		Authenticator:        mcpproxy.TokenAuthenticator{Verifier: s.authz.Verifier()},
		Decider:              s.mcpDecider(),
		Audit:                rec,
		Pins:                 pins,
		PublicURL:            s.publicURL,
		AuthorizationServers: []string{s.publicURL},
		Limits: mcpproxy.Limits{
			CallTimeout: c.CallTimeout, MaxMessageBytes: int64(c.MaxMessageBytes),
			AgentRate: rate.Limit(c.AgentRate), ToolRate: rate.Limit(c.ToolRate), TaskCalls: int64(c.TaskCalls),
		},
		Logger: s.log.With("component", "mcp"),
	})
	if err != nil {
		return err
	}
	s.mcp = gw
	for _, p := range []string{"/mcp", "/mcp/", "/.well-known/oauth-protected-resource/mcp", "/.well-known/oauth-protected-resource/mcp/"} {
		mux.Handle(p, gw)
	}
	tools := httpapi.NewTools(httpapi.ToolsConfig{Pins: gw.Pins(), Logger: s.log.With("component", "adminapi")})
	for _, p := range []string{"/admin/v1/tools", "/admin/v1/tools/"} {
		mux.Handle(p, requireAdminToken(tokens, s.log, tools))
		sockMux.Handle(p, localAdmin(tools))
	}
	return nil
}

// mcpDecider is the decision pipeline as the gateway's Decider, or one
// that denies everything when there is no pipeline (fail closed).
func (s *Server) mcpDecider() mcpproxy.Decider {
	if s.acc == nil || s.acc.pipeline == nil {
		return noPipeline{}
	}
	return &accessDecider{p: s.acc.pipeline}
}

// noPipeline denies every MCP call.
type noPipeline struct{}

func (noPipeline) Decide(context.Context, mcpproxy.Request) (mcpproxy.Decision, error) {
	return mcpproxy.Decision{Effect: mcpproxy.Deny, Reasons: []string{"no decision pipeline is configured on this server (denied by default)"}}, nil
}

// accessDecider adapts the access pipeline to the gateway. The gateway has
// authenticated the request already (DPoP proofs are single-use), so it
// decides as the authenticated subject; the pipeline records the decision
// (action.decided) itself. List previews (tools/list, prompts/list) are
// answered from the task's scope alone, without recording: the policy
// decides each call.
type accessDecider struct {
	p *access.Pipeline
	// annotations memoizes decoded tool annotations by their JSON: each
	// call carries its tool's, and a session's tools change rarely.
	annotations sync.Map // string -> *policy.ToolAnnotations
	memoized    atomic.Int64
}

// maxMemoizedAnnotations bounds accessDecider.annotations; past it the
// memo starts over (upstreams choose their tools' annotations).
const maxMemoizedAnnotations = 1024

// toolAnnotations returns the decoded annotations raw, or nil for ones
// that do not decode. Callers share the result and must not modify it.
func (d *accessDecider) toolAnnotations(raw json.RawMessage) *policy.ToolAnnotations {
	if v, ok := d.annotations.Load(string(raw)); ok {
		return v.(*policy.ToolAnnotations)
	}
	var out *policy.ToolAnnotations
	if ann := new(policy.ToolAnnotations); json.Unmarshal(raw, ann) == nil {
		out = ann
	}
	if d.memoized.Add(1) > maxMemoizedAnnotations {
		d.annotations.Clear()
		d.memoized.Store(1)
	}
	d.annotations.Store(string(raw), out)
	return out
}

// scopeCache memoizes parsed scopes by their string (tokens repeat them).
var scopeCache sync.Map

func (d *accessDecider) Decide(ctx context.Context, r mcpproxy.Request) (mcpproxy.Decision, error) {
	if r.Principal == nil {
		return mcpproxy.Decision{}, errors.New("no principal")
	}
	if r.Preview {
		sc, ok := scopeCache.Load(r.Principal.Scope)
		if !ok {
			parsed, err := task.ParseScope(r.Principal.Scope)
			if err != nil {
				return mcpproxy.Decision{Effect: mcpproxy.Deny, Reasons: []string{"task scope is invalid"}}, nil
			}
			scopeCache.Store(r.Principal.Scope, parsed)
			sc = parsed
		}
		if !sc.(task.Scope).Allows(r.Action, r.Resource) {
			return mcpproxy.Decision{Effect: mcpproxy.Deny, Reasons: []string{"outside the task's scope"}}, nil
		}
		return mcpproxy.Decision{Effect: mcpproxy.Allow}, nil
	}
	act := access.Action{Kind: r.Action, Resource: r.Resource, Server: r.Upstream, Point: "mcp", Trusted: true}
	if len(r.Annotations) > 0 {
		act.Annotations = d.toolAnnotations(r.Annotations)
	}
	dec, err := d.p.DecideAs(ctx, access.Subject{Task: task.ID(r.Principal.Task), Agent: r.Principal.Agent}, act)
	out := mcpproxy.Decision{Recorded: true}
	switch dec.Effect {
	case policy.Allow:
		out.Effect = mcpproxy.Allow
	case policy.ApprovalRequired:
		out.Effect = mcpproxy.ApprovalRequired
	default:
		out.Effect = mcpproxy.Deny
	}
	for _, rs := range dec.Reasons {
		out.Reasons = append(out.Reasons, rs.Policy+": "+rs.Message)
	}
	out.Reasons = append(out.Reasons, dec.Errors...)
	if err != nil && out.Effect != mcpproxy.Deny {
		out.Effect = mcpproxy.Deny
	}
	if err != nil {
		out.Reasons = append(out.Reasons, err.Error())
		// The pipeline records its refusals; only a failure to record
		// leaves the gateway to do it.
		out.Recorded = !errors.Is(err, audit.ErrUnavailable)
	}
	if out.Effect == mcpproxy.Deny && len(out.Reasons) == 0 {
		out.Reasons = []string{"no policy permits this action (denied by default)"}
	}
	for _, o := range dec.Obligations {
		out.Obligations = append(out.Obligations, mcpproxy.Obligation{Kind: o})
	}
	return out, nil
}
