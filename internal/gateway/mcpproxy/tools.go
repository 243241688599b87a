package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// Tools: listing and pinning them, admitting tools/call (both paths) and
// relaying it on the SDK path, quarantine, and the arguments' canonical
// form.

type toolEntry struct {
	up     *upConn
	tool   *mcp.Tool
	digest string
	status toolpin.Status
	ann    json.RawMessage // the tool's annotations as JSON, or nil
	// resource names the tool in decisions: "<upstream>/<tool name>".
	resource string
	// headers are the arguments it mirrors into Mcp-Param-* headers
	// (paramheaders.go).
	headers []headerBinding
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
			out[name] = &toolEntry{up: u, tool: t, digest: digests[i], status: status[i], ann: ann, resource: u.cfg.Name + "/" + t.Name, headers: headerBindings(t)}
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
	res := &mcp.ListToolsResult{Cacheable: perTask, Tools: []*mcp.Tool{}}
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
	var resumed *parkedCall // the parked call this retry continues (parked.go)
	if s.openHeld("tools/call", p.Name, p.RequestState) {
		// The retry of a call asked in band (inband.go): decided again.
		p.RequestState, p.InputResponses = "", nil
	}
	state := p.RequestState
	if s.stateless {
		fields := map[string]json.RawMessage{"name": wire.String(p.Name), "arguments": args, "requestState": wire.String(p.RequestState)}
		pc, err := s.takeParked(ctx, a, "tools/call", fields)
		if err != nil {
			return nil, err
		}
		if pc != nil {
			resumed = pc
			defer func() {
				if resumed != nil { // refused or denied: the call ends
					pc.cancel()
				}
			}()
		}
	}
	if resumed == nil {
		var ok bool
		if state, ok = s.openRetry(p.RequestState, "tools/call", p.Name); !ok {
			return nil, s.badState(ctx, a, "tools/call", p.Name)
		}
	}
	admitCtx := ctx
	if notify := sdkProgress(ctx, req.Session, p.Meta); notify != nil {
		admitCtx = withProgress(ctx, notify) // for a call held for approval
	}
	if s.stateless && metaTakesURLElicitation(p.Meta) {
		admitCtx = withInBand(admitCtx) // a held call is asked in band
	}
	e, done, err := s.admitTool(admitCtx, a, p.Name, args)
	var ib *inBandApproval
	if errors.As(err, &ib) {
		return s.heldToolResult(p.Name, ib.InBand)
	}
	if err != nil {
		return nil, err
	}
	defer s.track(ctx, req.Session, progressToken(p.Meta))()
	if resumed != nil {
		pc := resumed
		resumed = nil
		return parkedOutcome(ctx, done)(s.resumeTyped(ctx, e, pc, p.InputResponses))
	}
	cs, err := e.up.get(ctx)
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, e.up.cfg.Name))
	}
	if s.stateless && !e.up.http() && !e.up.sessionless() {
		return parkedOutcome(ctx, done)(s.callParkable(ctx, e, cs, p.Name, p.Meta, args))
	}
	send := any(args)
	if args == nil {
		send = map[string]any{}
	}
	var res *mcp.CallToolResult
	err = e.up.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{
			Meta: e.up.upstreamMeta(p.Meta), Name: e.tool.Name, Arguments: send,
			InputResponses: p.InputResponses, RequestState: state,
		})
		return err
	})
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, e.up.cfg.Name))
	}
	res.RequestState = s.sealRetry(res.RequestState, "tools/call", p.Name)
	return res, done(ctx, res.IsError, s.gw.checkSize(res))
}

// parkedOutcome records the outcome of a parkable call's attempt with
// done and returns what the client gets: an input_required result is an
// answer, not an error.
func parkedOutcome(ctx context.Context, done outcomeFunc) func(*mcp.CallToolResult, error) (mcp.Result, error) {
	return func(res *mcp.CallToolResult, err error) (mcp.Result, error) {
		if errors.Is(err, errInputRequired) {
			_ = done(ctx, false, err)
			return res, nil
		}
		if err != nil {
			return nil, done(ctx, false, err)
		}
		return res, done(ctx, res.IsError, nil)
	}
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
