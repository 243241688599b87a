package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// JSON-RPC error codes of the gateway, in the implementation-defined
// server error range. Each error's data member is an object with a
// "reasons" array (readable explanations) and, where a retry can succeed,
// "retry_after" in seconds.
const (
	// CodeDenied: the decision pipeline denied the call.
	CodeDenied = -32010
	// CodeApprovalRequired: the call needs a human approval that was not
	// given (or no approver is configured).
	CodeApprovalRequired = -32011
	// CodeRateLimited: a per-agent or per-tool rate limit; retry later.
	CodeRateLimited = -32012
	// CodeBudgetExceeded: the task's call budget is spent.
	CodeBudgetExceeded = -32013
	// CodeQuarantined: the tool's definition changed since it was
	// approved; an admin must approve it (mandate tool approve).
	CodeQuarantined = -32014
	// CodeUpstreamUnavailable: the upstream could not be reached or
	// crashed; retry later.
	CodeUpstreamUnavailable = -32015
	// CodeUpstreamTimeout: the upstream did not answer in time.
	CodeUpstreamTimeout = -32016
	// CodeTooLarge: the upstream's result exceeds the size limit.
	CodeTooLarge = -32017
	// CodeUnauthenticated: the request carried no usable credential
	// (only when a session's credential is missing at call time).
	CodeUnauthenticated = -32018
	// CodeUnavailable: the gateway's own store or ledger is unavailable
	// (tools cannot be pinned or checked); retry after retry_after. On
	// the gateway's own answers (see front) the HTTP status is 503 with
	// Retry-After.
	CodeUnavailable = -32019
)

// unavailable logs why what could not be done and returns the
// CodeUnavailable error the caller is answered with, which names no
// cause.
func (g *Gateway) unavailable(what string, err error) *jsonrpc.Error {
	g.log.Error(what+" unavailable", "err", err)
	after, _ := strconv.Atoi(fault.RetryAfter)
	return rpcError(CodeUnavailable, what+" is temporarily unavailable; retry later", errorData{RetryAfter: after})
}

// errorData is the data member of the gateway's JSON-RPC errors.
type errorData struct {
	Reasons    []string `json:"reasons,omitempty"`
	RetryAfter int      `json:"retry_after,omitempty"`
	Upstream   string   `json:"upstream,omitempty"`
	Digest     string   `json:"digest,omitempty"`
}

func rpcError(code int64, msg string, d errorData) *jsonrpc.Error {
	return &jsonrpc.Error{Code: code, Message: msg, Data: jsonData(d)}
}

func retrySeconds(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// errorFor maps an upstream-side error to the JSON-RPC error sent
// downstream: upstream JSON-RPC errors pass through unchanged.
func (g *Gateway) errorFor(err error, upstream string) error {
	if err == nil {
		return nil
	}
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return we
	}
	var re *retryError
	if errors.As(err, &re) {
		return rpcError(CodeUpstreamUnavailable, re.Error(), errorData{RetryAfter: retrySeconds(re.after), Upstream: upstream})
	}
	var te *timeoutError
	if errors.As(err, &te) {
		return rpcError(CodeUpstreamTimeout, te.Error(), errorData{Upstream: te.upstream})
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, errUpstreamDown) {
		return rpcError(CodeUpstreamUnavailable, err.Error(), errorData{RetryAfter: 1, Upstream: upstream})
	}
	g.log.Error("mcp relay failed", "upstream", upstream, "err", err)
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
}

// listUpstream collects every item (all pages) that list yields from u,
// within one upstream call. On a per-upstream endpoint a failing upstream
// is the caller's error; on the aggregated endpoint it is skipped
// (ok=false, err=nil) so the others still answer.
func listUpstream[T any](ctx context.Context, s *session, u *upConn, list func(context.Context, *mcp.ClientSession) iter.Seq2[T, error]) (items []T, ok bool, err error) {
	cs, err := u.get(ctx)
	if err == nil {
		err = u.call(ctx, cs, func(ctx context.Context) error {
			items = items[:0]
			for item, err := range list(ctx, cs) {
				if err != nil {
					return err
				}
				items = append(items, item)
			}
			return nil
		})
	}
	switch {
	case err == nil:
		return items, true, nil
	case s.upstream != "":
		return nil, false, s.gw.errorFor(err, u.cfg.Name)
	}
	return nil, false, nil
}

// refreshTools lists every upstream's tools and hands each upstream's
// whole listing to the pins (toolpin.Pins.Observe), which pins new
// definitions and quarantines changed ones and renames, recording each
// before the list is served. When the pins cannot be read, written or
// recorded the list fails with CodeUnavailable: no tool is served
// unchecked.
func (s *session) refreshTools(ctx context.Context) (map[string]*toolEntry, error) {
	out := map[string]*toolEntry{}
	bare := map[string][]string{}
	for _, u := range s.ups {
		tools, ok, err := listUpstream(ctx, s, u, func(ctx context.Context, cs *mcp.ClientSession) iter.Seq2[*mcp.Tool, error] {
			return cs.Tools(ctx, nil)
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		status, digests, err := s.observe(ctx, u.cfg.Name, tools)
		if err != nil {
			return nil, err
		}
		for i, t := range tools {
			name := s.exposed(u, t.Name)
			if prev := out[name]; prev != nil {
				// Two definitions under one name: report and expose
				// neither, never pick one silently.
				s.gw.clash.report(ctx, name, []string{prev.up.cfg.Name, u.cfg.Name})
				out[name] = &toolEntry{up: u, tool: t, digest: digests[i], status: toolpin.Collision, resource: u.cfg.Name + "/" + t.Name}
				continue
			}
			var ann json.RawMessage
			if t.Annotations != nil {
				ann, _ = json.Marshal(t.Annotations)
			}
			out[name] = &toolEntry{up: u, tool: t, digest: digests[i], status: status[i], ann: ann, resource: u.cfg.Name + "/" + t.Name}
			bare[t.Name] = append(bare[t.Name], u.cfg.Name)
		}
	}
	if s.upstream == "" {
		for name, ups := range bare {
			if len(ups) > 1 {
				s.gw.clash.report(ctx, name, ups)
			}
		}
	}
	s.mu.Lock()
	s.tools = out
	s.mu.Unlock()
	return out, nil
}

// observe checks one upstream's listing against its pins and returns each
// tool's standing and digest. A tool the gateway cannot express as a pin
// (see pinTool) is quarantined without a digest.
func (s *session) observe(ctx context.Context, upstream string, tools []*mcp.Tool) ([]toolpin.Status, []string, error) {
	status := make([]toolpin.Status, len(tools))
	digests := make([]string, len(tools))
	pinned := make([]toolpin.Tool, 0, len(tools))
	index := make([]int, 0, len(tools))
	for i, t := range tools {
		pt, err := pinTool(t)
		if err != nil {
			s.gw.log.Error("tool quarantined: not pinnable", "upstream", upstream, "tool", t.Name, "err", err)
			status[i] = toolpin.Quarantined
			continue
		}
		pinned = append(pinned, pt)
		index = append(index, i)
	}
	obs, err := s.gw.pins.Observe(ctx, upstream, pinned)
	if err != nil {
		return nil, nil, s.gw.unavailable("tool pinning", err)
	}
	for j, o := range obs {
		status[index[j]], digests[index[j]] = o.Status, o.Digest
	}
	return status, digests, nil
}

func (s *session) listTools(ctx context.Context, req *mcp.ListToolsRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	var cursor string
	if req.Params != nil {
		cursor = req.Params.Cursor
	}
	return s.toolList(ctx, a, cursor)
}

// toolList is tools/list for both paths: the approved tools that the
// decision pipeline would not deny to a.
func (s *session) toolList(ctx context.Context, a *authed, cursor string) (*mcp.ListToolsResult, error) {
	if cursor != "" {
		return nil, invalidParams("invalid cursor")
	}
	tools, err := s.refreshTools(ctx)
	if err != nil {
		return nil, err
	}
	res := &mcp.ListToolsResult{Tools: []*mcp.Tool{}}
	for _, name := range sortedKeys(tools) {
		e := tools[name]
		if e.status != toolpin.Approved {
			continue
		}
		d, err := s.gw.cfg.Decider.Decide(ctx, s.toolRequest(a, e, nil, true))
		if err != nil || d.Effect == Deny {
			continue
		}
		t := e.tool
		if name != t.Name {
			c := *t
			c.Name = name
			t = &c
		}
		res.Tools = append(res.Tools, t)
	}
	return res, nil
}

func (s *session) toolRequest(a *authed, e *toolEntry, args json.RawMessage, preview bool) Request {
	return Request{
		Credential: a.cred, Principal: a.p, Action: ActionToolCall,
		Upstream: e.up.cfg.Name, Name: e.tool.Name, Resource: e.resource,
		Arguments: args, Annotations: e.ann, Preview: preview,
	}
}

// outcomeFunc records a governed call's outcome (toolError: a tools/call
// result with isError) under ctx's values (not its cancellation: the
// outcome is recorded also when the client went away), and returns err.
type outcomeFunc func(ctx context.Context, toolError bool, err error) error

// admitTool resolves a tools/call's tool and admits the call: the tool
// must be known, unambiguous and approved, and the call allowed (govern).
// It returns the tool and the function that records the call's outcome,
// or the JSON-RPC error to answer with. Both relay paths use it; args
// must be canonical JSON (see canonicalArguments).
func (s *session) admitTool(ctx context.Context, a *authed, name string, args json.RawMessage) (*toolEntry, outcomeFunc, error) {
	e, err := s.tool(ctx, name)
	if err != nil {
		return nil, nil, err
	}
	if e == nil {
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: ActionToolCall, Name: name, Resource: name, Arguments: args}, "unknown tool")
		return nil, nil, invalidParams("unknown tool %q", name)
	}
	switch {
	case e.status == toolpin.Collision:
		s.gw.refused(ctx, s, s.toolRequest(a, e, args, false), "tool name is ambiguous across upstreams")
		return nil, nil, invalidParams("tool name %q is ambiguous across upstreams; it is not served", name)
	case !s.gw.pins.Approved(e.up.cfg.Name, e.tool.Name, e.digest):
		// Checked at call time: the pin may have changed (or been
		// approved) since the list.
		why := s.quarantineReason(ctx, e)
		s.gw.refused(ctx, s, s.toolRequest(a, e, args, false), "tool is quarantined: "+why)
		return nil, nil, s.quarantined(name, why, e.digest)
	}
	done, err := s.gw.govern(ctx, s, s.toolRequest(a, e, args, false))
	if err != nil {
		return nil, nil, err
	}
	return e, done, nil
}

// tool returns the tool exposed as name, or nil if there is none, listing
// the upstreams' tools first if the session has no list yet.
func (s *session) tool(ctx context.Context, name string) (*toolEntry, error) {
	s.mu.Lock()
	e := s.tools[name]
	known := s.tools != nil
	s.mu.Unlock()
	if e == nil && !known {
		tools, err := s.refreshTools(ctx)
		if err != nil {
			return nil, err
		}
		e = tools[name]
	}
	return e, nil
}

// callTool is the SDK path of tools/call (stdio upstreams).
func (s *session) callTool(ctx context.Context, req *mcp.CallToolRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	p := req.Params
	args, err := canonicalArguments(p.Arguments)
	if err != nil {
		return nil, err
	}
	e, done, err := s.admitTool(ctx, a, p.Name, args)
	if err != nil {
		return nil, err
	}
	defer s.track(ctx, req.Session, progressToken(p.Meta))()
	cs, err := e.up.get(ctx)
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, e.up.cfg.Name))
	}
	send := any(args)
	if args == nil {
		send = map[string]any{}
	}
	var res *mcp.CallToolResult
	err = e.up.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{
			Meta: e.up.upstreamMeta(p.Meta), Name: e.tool.Name, Arguments: send,
			InputResponses: p.InputResponses, RequestState: p.RequestState,
		})
		return err
	})
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, e.up.cfg.Name))
	}
	return res, done(ctx, res.IsError, s.gw.checkSize(res))
}

// quarantineReason says why e is not approved: a rename (a pin with no
// approved definition) or a changed definition.
func (s *session) quarantineReason(ctx context.Context, e *toolEntry) string {
	if pin, err := s.gw.pins.Get(ctx, e.up.cfg.Name, e.tool.Name); err == nil && pin.Digest == "" {
		return "it appeared as another tool with its description or input schema disappeared (a rename) and is not approved yet"
	}
	return "its definition changed since it was approved"
}

func (s *session) quarantined(name, why, digest string) error {
	return rpcError(CodeQuarantined, fmt.Sprintf("tool %q is quarantined: %s; an admin must review it (mandate tool diff) and approve it (mandate tool approve)", name, why),
		errorData{Reasons: []string{why}, Digest: digest})
}

// canonicalArguments checks that a call's arguments are a JSON object (or
// absent) and returns their canonical JSON: what is decided, digested in
// the ledger and sent upstream.
func canonicalArguments(raw json.RawMessage) (json.RawMessage, error) {
	if raw == nil {
		return nil, nil
	}
	if !isObject(raw) {
		return nil, invalidParams("tool arguments must be a JSON object")
	}
	c, err := audit.CanonicalJSON(raw)
	if err != nil {
		return nil, invalidParams("tool arguments: %v", err)
	}
	return c, nil
}

func isObject(raw json.RawMessage) bool {
	b := strings.TrimLeft(string(raw), " \t\r\n")
	return strings.HasPrefix(b, "{") || b == "null"
}

func progressToken(m mcp.Meta) any {
	if m == nil {
		return nil
	}
	return m["progressToken"]
}

func (g *Gateway) checkSize(res mcp.Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "result not encodable"}
	}
	if len(b) > g.cfg.Limits.MaxResultBytes {
		return rpcError(CodeTooLarge, fmt.Sprintf("upstream result of %d bytes exceeds the gateway's limit of %d", len(b), g.cfg.Limits.MaxResultBytes), errorData{})
	}
	return nil
}

// govern has r decided (by the Decider: rate limits, budgets and rules
// are all its), holds it for approval when needed, records the decision
// unless the decider did, and returns a function that records the
// outcome. The error is the JSON-RPC error to send when the call may not
// proceed.
func (g *Gateway) govern(ctx context.Context, s *session, r Request) (outcomeFunc, error) {
	ev := g.event(s, r)
	deny := func(code int64, msg string, d errorData) error {
		ev.Decision = audit.DecisionDeny
		ev.Reason = strings.Join(d.Reasons, "; ")
		if err := g.cfg.Audit.Record(context.WithoutCancel(ctx), ev); err != nil {
			g.log.Error("audit record failed", "err", err)
		}
		return rpcError(code, msg, d)
	}
	dec, err := g.cfg.Decider.Decide(ctx, r)
	if err != nil {
		g.log.Error("decision failed", "err", err)
		dec = Decision{Effect: Deny, Reasons: []string{"decision failed (denied by default)"}}
	}
	if dec.Risk != "" {
		ev.Details["risk"] = dec.Risk
	}
	if dec.Effect == ApprovalRequired {
		if g.cfg.Approvals == nil {
			ev.Decision = audit.DecisionApprovalRequired
			ev.Reason = strings.Join(dec.Reasons, "; ")
			if !dec.Recorded {
				_ = g.cfg.Audit.Record(context.WithoutCancel(ctx), ev)
			}
			return nil, rpcError(CodeApprovalRequired, "approval required: "+orDefault(ev.Reason, "this call needs a human approval")+" (no approver is configured)", errorData{Reasons: dec.Reasons})
		}
		dec, err = g.cfg.Approvals.Wait(ctx, r, dec)
		if err != nil {
			dec = Decision{Effect: Deny, Reasons: []string{"approval not obtained: " + err.Error()}}
		}
	}
	for _, o := range dec.Obligations {
		switch {
		case dec.Effect != Allow:
		case o.Kind == ObligationFullArguments:
			if err := g.cfg.Redactor.Arguments(&ev, r.Arguments, true); err != nil && r.Arguments != nil {
				dec = Decision{Effect: Deny, Reasons: []string{"the arguments cannot be recorded as the policy requires: " + err.Error()}}
			}
		default:
			dec = Decision{Effect: Deny, Reasons: []string{fmt.Sprintf("obligation %q is not supported by the MCP gateway", o.Kind)}}
		}
	}
	if dec.Effect != Allow {
		if dec.Effect == ApprovalRequired {
			dec.Effect = Deny
		}
		code, msg, data := int64(CodeDenied), "denied: "+orDefault(strings.Join(dec.Reasons, "; "), "not allowed"), errorData{Reasons: dec.Reasons}
		switch dec.Limit {
		case LimitRate:
			data.RetryAfter = retrySeconds(dec.RetryAfter)
			code, msg = CodeRateLimited, fmt.Sprintf("rate limit for %s exceeded; retry after %ds", r.Resource, data.RetryAfter)
		case LimitBudget:
			code, msg = CodeBudgetExceeded, "the task's budget is spent: "+orDefault(strings.Join(dec.Reasons, "; "), "no calls left")
		}
		if dec.Recorded {
			return nil, rpcError(code, msg, data)
		}
		return nil, deny(code, msg, data)
	}
	ev.Decision = audit.DecisionAllow
	ev.Reason = strings.Join(dec.Reasons, "; ")
	if !dec.Recorded {
		if err := g.cfg.Audit.Record(ctx, ev); err != nil {
			g.log.Error("audit record failed; call denied", "err", err)
			return nil, rpcError(CodeDenied, "denied: the audit log is unavailable", errorData{Reasons: []string{"audit log unavailable (fail closed)"}})
		}
	}
	start := time.Now()
	return func(rctx context.Context, toolError bool, err error) error {
		out := ev
		out.Type = audit.TypeMCPResult
		out.Time = time.Time{}
		out.Details = mapsClone(ev.Details)
		out.Details["duration_us"] = strconv.FormatInt(time.Since(start).Microseconds(), 10)
		switch {
		case err != nil:
			out.Details["outcome"] = "error"
			out.Reason = err.Error()
		case toolError:
			out.Details["outcome"] = "tool_error"
		default:
			out.Details["outcome"] = "ok"
		}
		if rerr := g.cfg.Audit.Record(context.WithoutCancel(rctx), out); rerr != nil {
			g.log.Error("audit record of outcome failed", "err", rerr)
		}
		return err
	}, nil
}

// refused records a call the gateway refused before asking the decider
// (unknown, ambiguous or quarantined tool), so that every attempted call
// is in the ledger.
func (g *Gateway) refused(ctx context.Context, s *session, r Request, reason string) {
	ev := g.event(s, r)
	ev.Decision = audit.DecisionDeny
	ev.Reason = reason
	if err := g.cfg.Audit.Record(context.WithoutCancel(ctx), ev); err != nil {
		g.log.Error("audit record failed", "err", err)
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func mapsClone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (g *Gateway) event(s *session, r Request) audit.Event {
	p := r.Principal
	ev := audit.Event{
		Type: audit.TypeMCPCall, Actor: p.Agent, Agent: p.Agent, Chain: p.Chain, OnBehalfOf: p.OnBehalfOf,
		Task: p.Task, Action: r.Action, Resource: r.Resource, Point: "mcp",
		Details: map[string]string{"upstream": r.Upstream, "name": r.Name, "endpoint": s.resource},
	}
	if r.Arguments != nil {
		// Arguments can hold secrets: the ledger keeps their keyed digest
		// (brute-forcing a short secret needs the installation's key).
		if err := g.cfg.Redactor.Arguments(&ev, r.Arguments, false); err != nil {
			ev.Details["arguments"] = "not JSON"
		}
	}
	return ev
}

// --- resources and prompts ---

func (s *session) listResources(ctx context.Context, req *mcp.ListResourcesRequest) (mcp.Result, error) {
	if s.upstream != "" {
		u := s.ups[0]
		cs, err := u.get(ctx)
		if err != nil {
			return nil, s.gw.errorFor(err, u.cfg.Name)
		}
		var res *mcp.ListResourcesResult
		err = u.call(ctx, cs, func(ctx context.Context) (err error) {
			res, err = cs.ListResources(ctx, req.Params)
			return err
		})
		return res, s.gw.errorFor(err, u.cfg.Name)
	}
	if req.Params != nil && req.Params.Cursor != "" {
		return nil, invalidParams("invalid cursor")
	}
	idx := map[string]*upConn{}
	res := &mcp.ListResourcesResult{Resources: []*mcp.Resource{}}
	for _, u := range s.ups {
		cs, err := u.get(ctx)
		if err != nil || !hasResources(u) {
			continue
		}
		_ = u.call(ctx, cs, func(ctx context.Context) error {
			for r, err := range cs.Resources(ctx, nil) {
				if err != nil {
					return err
				}
				if _, dup := idx[r.URI]; !dup {
					idx[r.URI] = u
					res.Resources = append(res.Resources, r)
				}
			}
			return nil
		})
	}
	s.mu.Lock()
	s.resources = idx
	s.mu.Unlock()
	return res, nil
}

func hasResources(u *upConn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.init != nil && u.init.Capabilities != nil && u.init.Capabilities.Resources != nil
}

func (s *session) listTemplates(ctx context.Context, req *mcp.ListResourceTemplatesRequest) (mcp.Result, error) {
	res := &mcp.ListResourceTemplatesResult{ResourceTemplates: []*mcp.ResourceTemplate{}}
	if s.upstream != "" {
		u := s.ups[0]
		cs, err := u.get(ctx)
		if err != nil {
			return nil, s.gw.errorFor(err, u.cfg.Name)
		}
		err = u.call(ctx, cs, func(ctx context.Context) (err error) {
			res, err = cs.ListResourceTemplates(ctx, req.Params)
			return err
		})
		return res, s.gw.errorFor(err, u.cfg.Name)
	}
	for _, u := range s.ups {
		cs, err := u.get(ctx)
		if err != nil || !hasResources(u) {
			continue
		}
		_ = u.call(ctx, cs, func(ctx context.Context) error {
			for t, err := range cs.ResourceTemplates(ctx, nil) {
				if err != nil {
					return err
				}
				res.ResourceTemplates = append(res.ResourceTemplates, t)
			}
			return nil
		})
	}
	return res, nil
}

// resourceUpstream finds the upstream serving uri.
func (s *session) resourceUpstream(ctx context.Context, uri string) (*upConn, error) {
	if s.upstream != "" {
		return s.ups[0], nil
	}
	s.mu.Lock()
	u := s.resources[uri]
	s.mu.Unlock()
	if u != nil {
		return u, nil
	}
	var with []*upConn
	for _, c := range s.ups {
		if _, err := c.get(ctx); err == nil && hasResources(c) {
			with = append(with, c)
		}
	}
	if len(with) == 1 {
		return with[0], nil
	}
	return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("resource %q is not known on the aggregated endpoint; list resources first or use an upstream's endpoint", uri)}
}

// admitResource admits a resources/read: it finds the upstream serving
// uri and governs the read.
func (s *session) admitResource(ctx context.Context, a *authed, uri string) (*upConn, outcomeFunc, error) {
	u, err := s.resourceUpstream(ctx, uri)
	if err != nil {
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: ActionResourceRead, Name: uri, Resource: uri}, "no upstream serves the resource")
		return nil, nil, err
	}
	done, err := s.gw.govern(ctx, s, Request{
		Credential: a.cred, Principal: a.p, Action: ActionResourceRead,
		Upstream: u.cfg.Name, Name: uri, Resource: uri,
	})
	if err != nil {
		return nil, nil, err
	}
	return u, done, nil
}

// readResource is the SDK path of resources/read (stdio upstreams).
func (s *session) readResource(ctx context.Context, req *mcp.ReadResourceRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	u, done, err := s.admitResource(ctx, a, req.Params.URI)
	if err != nil {
		return nil, err
	}
	defer s.track(ctx, req.Session, progressToken(req.Params.Meta))()
	cs, err := u.get(ctx)
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	p := *req.Params
	p.Meta = u.upstreamMeta(p.Meta)
	var res *mcp.ReadResourceResult
	err = u.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.ReadResource(ctx, &p)
		return err
	})
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	return res, done(ctx, false, s.gw.checkSize(res))
}

func (s *session) listPrompts(ctx context.Context, req *mcp.ListPromptsRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	if req.Params != nil && req.Params.Cursor != "" {
		return nil, invalidParams("invalid cursor")
	}
	res := &mcp.ListPromptsResult{Prompts: []*mcp.Prompt{}}
	idx := map[string]*promptEntry{}
	for _, u := range s.ups {
		ps, ok, err := listUpstream(ctx, s, u, func(ctx context.Context, cs *mcp.ClientSession) iter.Seq2[*mcp.Prompt, error] {
			return cs.Prompts(ctx, nil)
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, p := range ps {
			d, err := s.gw.cfg.Decider.Decide(ctx, Request{
				Credential: a.cred, Principal: a.p, Action: ActionPromptGet, Upstream: u.cfg.Name,
				Name: p.Name, Resource: u.cfg.Name + "/" + p.Name, Preview: true,
			})
			if err != nil || d.Effect == Deny {
				continue
			}
			name := s.exposed(u, p.Name)
			idx[name] = &promptEntry{up: u, name: p.Name}
			if name != p.Name {
				c := *p
				c.Name = name
				p = &c
			}
			res.Prompts = append(res.Prompts, p)
		}
	}
	s.mu.Lock()
	s.prompts = idx
	s.mu.Unlock()
	return res, nil
}

// admitPrompt admits a prompts/get of the prompt exposed as exposed: it
// returns the upstream, the prompt's name there and the outcome recorder.
func (s *session) admitPrompt(ctx context.Context, a *authed, exposed string, arguments map[string]string) (*upConn, string, outcomeFunc, error) {
	u, name, ok := s.split(exposed)
	if !ok {
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: ActionPromptGet, Name: exposed, Resource: exposed}, "unknown prompt")
		return nil, "", nil, invalidParams("unknown prompt %q", exposed)
	}
	var args json.RawMessage
	if arguments != nil {
		raw, _ := json.Marshal(arguments)
		args, _ = audit.CanonicalJSON(raw)
	}
	done, err := s.gw.govern(ctx, s, Request{
		Credential: a.cred, Principal: a.p, Action: ActionPromptGet, Upstream: u.cfg.Name,
		Name: name, Resource: u.cfg.Name + "/" + name, Arguments: args,
	})
	if err != nil {
		return nil, "", nil, err
	}
	return u, name, done, nil
}

// getPrompt is the SDK path of prompts/get (stdio upstreams).
func (s *session) getPrompt(ctx context.Context, req *mcp.GetPromptRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	u, name, done, err := s.admitPrompt(ctx, a, req.Params.Name, req.Params.Arguments)
	if err != nil {
		return nil, err
	}
	defer s.track(ctx, req.Session, progressToken(req.Params.Meta))()
	cs, err := u.get(ctx)
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	p := *req.Params
	p.Name = name
	p.Meta = u.upstreamMeta(p.Meta)
	var res *mcp.GetPromptResult
	err = u.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.GetPrompt(ctx, &p)
		return err
	})
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	return res, done(ctx, false, s.gw.checkSize(res))
}
