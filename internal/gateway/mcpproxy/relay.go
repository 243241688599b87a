package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// The raw relay. A governed call to an upstream that speaks Streamable
// HTTP is admitted like any other (pin checks, limits, the decision, the
// ledger), then sent to the upstream as the JSON-RPC message it came as,
// on the upstream session the gateway's SDK client opened, under a relay
// id of the gateway's. What the upstream sends back on the request's
// stream goes to the downstream client in order: progress and log
// notifications as they are, requests for the client (sampling,
// elicitation, roots) under relay ids of their own, whose answers
// answerRelayed routes back, and finally the response under the client's
// id. A call's params are decoded once and sent re-encoded, so that the
// upstream gets exactly what was decided; results and everything else on
// the stream pass through with only their envelopes read.

// rawCall is a governed call in flight on the raw relay.
type rawCall struct {
	down   json.RawMessage // the downstream request's id
	key    string          // wire.IDKey(down), set by addRaw
	up     json.RawMessage // its relay id upstream
	u      *upConn
	cs     *mcp.ClientSession
	cancel context.CancelFunc
	// cancelled is set (with reason) when the downstream client cancels.
	cancelled atomic.Bool
	reason    atomic.Pointer[string]
	relayed   []string // keys of the upstream requests relayed downstream
	// relayIDs are the relay ids of those requests, by the key of the
	// upstream's own id for each.
	relayIDs map[string]json.RawMessage
}

// serveCall admits and relays a governed call whose upstream speaks
// Streamable HTTP. It reports false, leaving the call to the SDK path,
// when the upstream is a stdio server.
func (s *session) serveCall(w http.ResponseWriter, r *http.Request, a *authed, m *wire.Message) bool {
	// One writer for everything the call sends back, from a held call's
	// progress to its response: it turns into a stream at the first
	// message that comes before the response.
	out := s.downstream(w)
	var fields map[string]json.RawMessage
	fail := func(err error) bool {
		var ib *inBandApproval
		if errors.As(err, &ib) {
			out.final(&wire.Message{ID: m.ID, Result: s.heldResult(m.Method, callName(m.Method, fields), ib.InBand)})
			return true
		}
		out.fail(m.ID, err)
		return true
	}
	// Close waits for the call, and cancels it: its outcome is recorded
	// before the gateway (and the ledger behind it) goes away.
	if !s.gw.enter() {
		return fail(rpcError(CodeUpstreamUnavailable, "the gateway is shutting down", errorData{RetryAfter: 5}))
	}
	defer s.gw.wg.Done()
	ctx, release := mergeCancel(s.gw.ctx, r.Context())
	defer release()
	// What is decided, recorded and sent upstream is one reading of the
	// params: they are decoded once (duplicate keys collapse here, as
	// encoding/json reads them, whatever the upstream's parser would make
	// of the original) and sent re-encoded, with the members the gateway
	// decided on set to the values it decided on.
	fields = wire.Members(m.Params)
	if fields == nil {
		return fail(invalidParams("%s needs its params as an object", m.Method))
	}
	for _, names := range [][]string{decidedMembers[m.Method], strippedMembers} {
		if k, n, ok := wire.FoldedMember(fields, names); ok {
			return fail(invalidParams("%s params: member %q could be read as %q", m.Method, k, n))
		}
	}
	for _, k := range strippedMembers {
		delete(fields, k)
	}
	if raw, err := s.rawRoute(ctx, m.Method, fields); err != nil {
		return fail(err)
	} else if !raw {
		return false
	}
	var resumed *parkedCall // the parked call this retry continues
	if s.stateless {
		if takesURLElicitation(wire.Members(fields["_meta"])[mcp.MetaKeyClientCapabilities]) {
			ctx = withInBand(ctx) // a held call is asked in band (inband.go)
		}
		if state, _ := wire.StringMember(fields, "requestState"); s.openHeld(m.Method, callName(m.Method, fields), state) {
			// The retry of a call asked in band: decided again below.
			delete(fields, "requestState")
			delete(fields, "inputResponses")
		}
	}
	if s.stateless {
		pc, err := s.takeParked(ctx, a, m.Method, fields)
		if err != nil {
			return fail(err)
		}
		if pc != nil {
			resumed = pc
			// Unless it goes on below, the call ends here: a retry that is
			// refused or denied cancels it.
			defer func() {
				if resumed != nil {
					pc.cancel()
				}
			}()
			delete(fields, "requestState")
		} else if err := s.openStateMember(ctx, a, m.Method, fields); err != nil {
			return fail(err)
		}
	}
	if notify := rawProgress(out, fields); notify != nil {
		ctx = withProgress(ctx, notify) // for a call held for approval
	}
	var (
		u    *upConn
		done outcomeFunc
		err  error
	)
	switch m.Method {
	case "tools/call":
		name, ok := wire.StringMember(fields, "name")
		if !ok {
			return fail(invalidParams("tools/call needs params with a tool name"))
		}
		args, err := canonicalArguments(fields["arguments"])
		if err != nil {
			return fail(err)
		}
		if args != nil {
			fields["arguments"] = args
		}
		var e *toolEntry
		if e, done, err = s.admitTool(ctx, a, name, args); err != nil {
			return fail(err)
		}
		u = e.up
		fields["name"] = wire.String(e.tool.Name)
	case "resources/read":
		uri, ok := wire.StringMember(fields, "uri")
		if !ok {
			return fail(invalidParams("resources/read needs params with a uri"))
		}
		if u, done, err = s.admitResource(ctx, a, uri); err != nil {
			return fail(err)
		}
	case "prompts/get":
		name, ok := wire.StringMember(fields, "name")
		var args map[string]string
		if raw := fields["arguments"]; raw != nil && json.Unmarshal(raw, &args) != nil {
			ok = false
		}
		if !ok {
			return fail(invalidParams("prompts/get needs params with a prompt name and string arguments"))
		}
		var upName string
		if u, upName, done, err = s.admitPrompt(ctx, a, name, args); err != nil {
			return fail(err)
		}
		fields["name"] = wire.String(upName)
		if args != nil {
			fields["arguments"], _ = json.Marshal(args)
		}
	}
	if meta, ok := fields["_meta"]; ok && s.stateless && !u.sessionless() {
		// The upstream speaks a session revision: the sessionless
		// request's own revision and client are not its to read (see
		// upstreamMeta).
		fields["_meta"] = sessionMeta(meta)
	}
	if resumed != nil {
		pc := resumed
		resumed = nil
		toolError, err := s.resume(ctx, out, u, m, pc, fields)
		s.recordOutcome(ctx, out, toolError, err, done)
		return true
	}
	params, _ := json.Marshal(fields)
	s.relayCall(ctx, out, u, m, params, s.sessionlessHeaders(r.Header, u, m.Method, fields), done)
	return true
}

// rawRoute reports whether the call in fields goes to an upstream the raw
// relay serves (false: the SDK path takes it), or the error to answer
// with. A tool is routed by its upstream: an aggregated name's first
// "__" need not end the upstream's name.
func (s *session) rawRoute(ctx context.Context, method string, fields map[string]json.RawMessage) (bool, error) {
	name := callName(method, fields)
	switch method {
	case "tools/call":
		e, err := s.tool(ctx, name)
		if err != nil {
			return false, err
		}
		return e == nil || e.up.raw(), nil
	case "resources/read":
		up, err := s.resourceUpstream(ctx, name)
		return err != nil || up.raw(), nil
	case "prompts/get":
		up, _, ok := s.split(name)
		return !ok || up.raw(), nil
	}
	return true, nil
}

// decidedMembers are the params members of each governed method that the
// gateway reads to decide the call.
var decidedMembers = map[string][]string{
	"tools/call":     {"name", "arguments"},
	"resources/read": {"uri"},
	"prompts/get":    {"name", "arguments"},
}

// strippedMembers are params members the gateway does not pass on.
//
// "task" asks for a task-augmented request (MCP 2025-11-25, "Tasks"). The
// gateway does not declare the tasks capability, so it must process such
// a request normally, ignoring the augmentation; passed on, it would have
// a task-capable upstream answer with a task whose result the client
// could not fetch through the gateway (tasks/* are not relayed), and the
// call's outcome would never be recorded.
var strippedMembers = []string{"task"}

// relayCall sends an admitted call upstream and its answer downstream.
// The outcome is recorded once the answer is on its way, so that the
// client does not wait for the ledger a second time, and unhurried: it
// rides along with the next commit (the next call's decision, typically)
// rather than costing one of its own.
func (s *session) relayCall(ctx context.Context, out *downstream, u *upConn, m *wire.Message, params json.RawMessage, h http.Header, done outcomeFunc) {
	toolError, err := s.relay(ctx, out, u, m, params, h)
	s.recordOutcome(ctx, out, toolError, err, done)
}

// recordOutcome records an answered call's outcome with done.
func (s *session) recordOutcome(ctx context.Context, out *downstream, toolError bool, err error, done outcomeFunc) {
	// The client has its answer before the outcome's bookkeeping
	// (a goroutine's wake-up, on a busy machine a thread's) begins.
	_ = http.NewResponseController(out.w).Flush()
	rctx := audit.Unhurried(ctx)
	s.gw.async(func() { _ = done(rctx, toolError, err) })
}

// relay runs the exchange and writes its answer; it returns the outcome.
func (s *session) relay(ctx context.Context, out *downstream, u *upConn, m *wire.Message, params json.RawMessage, h http.Header) (toolError bool, err error) {
	if s.stateless && !u.sessionless() {
		return s.relayParkable(ctx, out, u, m, params, h)
	}
	res, err := s.exchange(ctx, u, m, params, h, out)
	return s.answerCall(out, u, m, res, err)
}

// answerCall writes the end of exchange m (its response res, or err) to
// out and returns the outcome.
func (s *session) answerCall(out *downstream, u *upConn, m *wire.Message, res *wire.Message, err error) (toolError bool, _ error) {
	if err != nil {
		if errors.Is(err, errClientCancelled) {
			out.end()
			return false, err
		}
		rerr := s.gw.errorFor(err, u.cfg.Name)
		out.fail(m.ID, rerr)
		return false, rerr
	}
	res.ID = m.ID
	if res.Error != nil {
		var je jsonrpc.Error
		if json.Unmarshal(res.Error, &je) != nil {
			je = jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "upstream sent a malformed error"}
			res.Error, _ = json.Marshal(&je)
		}
		out.final(res)
		return false, &je
	}
	if m.Method == "tools/call" {
		toolError = wire.IsToolError(res.Result)
	}
	if s.stateless {
		res.Result = s.sealStateMember(m.Method, m.Params, res.Result)
	}
	out.final(res)
	return toolError, nil
}

// answer returns the call's response, unless the client cancelled the
// call meanwhile: a cancelled request gets no response.
func (c *rawCall) answer(res *wire.Message) (*wire.Message, error) {
	if c.cancelled.Load() {
		return nil, errClientCancelled
	}
	return res, nil
}

// errClientCancelled: the downstream client cancelled the call.
var errClientCancelled = errors.New("cancelled by the client")

// exchange sends the call to the upstream, with the headers h besides
// the transport's, and returns its response, relaying what comes before
// it to out.
func (s *session) exchange(ctx context.Context, u *upConn, m *wire.Message, params json.RawMessage, h http.Header, out *downstream) (*wire.Message, error) {
	if !u.http() {
		// The call was admitted for a stdio upstream after it was routed
		// here (the upstreams' tools or resources changed in between).
		return nil, fmt.Errorf("%w: upstream %q changed while the call was routed", errUpstreamDown, u.cfg.Name)
	}
	cs, err := u.get(ctx)
	if err != nil {
		return nil, err
	}
	d := u.timeout()
	cctx, stop := s.startClock(ctx, d)
	defer stop()
	c := &rawCall{down: m.ID, up: s.gw.relayID(), u: u, cs: cs, cancel: stop}
	if !s.addRaw(c) {
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "a request with this id is already in flight on this session"}
	}
	defer s.removeRaw(c, out)
	body := (&wire.Message{ID: c.up, Method: m.Method, Params: params}).Encode()
	resp, err := s.gw.postUpstream(cctx, u, cs, body, h)
	if err != nil {
		return nil, s.failed(ctx, cctx, c, d, err)
	}
	defer resp.Body.Close()
	limit := s.gw.cfg.Limits.MaxResultBytes
	if resp.StatusCode == http.StatusNotFound {
		u.drop(cs)
		return nil, fmt.Errorf("%w: upstream %q no longer knows the session; it is reopened on the next call", errUpstreamDown, u.cfg.Name)
	}
	ct := mediaType(resp.Header.Get("Content-Type"))
	if resp.StatusCode != http.StatusOK || (ct != "application/json" && ct != "text/event-stream") {
		// Only a JSON-RPC error response in the body is worth relaying.
		if b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10)); err == nil && ct == "application/json" {
			var em wire.Message
			if json.Unmarshal(b, &em) == nil && em.IsResponse() && em.Error != nil {
				return c.answer(&em)
			}
		}
		return nil, fmt.Errorf("%w: upstream %q answered HTTP %d (%s)", errUpstreamDown, u.cfg.Name, resp.StatusCode, orDefault(ct, "no content type"))
	}
	if ct == "application/json" {
		b, err := readBody(resp, limit)
		if err != nil {
			return nil, s.failed(ctx, cctx, c, d, err)
		}
		if len(b) > limit {
			return nil, s.tooLarge(c, limit)
		}
		var res wire.Message
		if wire.Decode(b, &res) != nil || !res.IsResponse() || !wire.SameID(res.ID, c.up) {
			return nil, fmt.Errorf("%w: upstream %q answered with something other than the call's response", errUpstreamDown, u.cfg.Name)
		}
		return c.answer(&res)
	}
	events := wire.NewEventReader(resp.Body, limit)
	defer events.Release()
	for resumes := 0; ; {
		data, err := events.Next()
		if errors.Is(err, wire.ErrEventTooLarge) {
			return nil, s.tooLarge(c, limit)
		}
		if err == io.EOF && events.LastID() != "" && resumes < maxResumes && cctx.Err() == nil {
			// The upstream ended the stream before answering, having
			// given its events ids: resume after the last one, as a
			// client must (MCP 2025-11-25, "Resumability and Redelivery").
			resumes++
			body, err := s.gw.resumeUpstream(cctx, u, cs, events.LastID(), events.Retry())
			if err != nil {
				return nil, s.failed(ctx, cctx, c, d, err)
			}
			defer body.Close()
			events.Resume(body)
			continue
		}
		if err != nil {
			if err == io.EOF {
				err = errors.New("the upstream closed the stream before answering")
			}
			return nil, s.failed(ctx, cctx, c, d, err)
		}
		var in wire.Message
		// A copy: the message outlives data, which the reader reuses.
		if err := wire.Decode(bytes.Clone(data), &in); err != nil {
			s.gw.log.Warn("upstream sent an event that is not JSON-RPC; skipped", "upstream", u.cfg.Name, "err", err)
			continue
		}
		switch {
		case in.IsResponse():
			if wire.SameID(in.ID, c.up) {
				return c.answer(&in)
			}
			continue
		case in.IsRequest() && s.stateless:
			// A sessionless client cannot be asked in the middle of a call:
			// a parkable call asks it with an input_required result
			// (parked.go); others refuse.
			if out.parked == nil || inputMethods[in.Method] == "" {
				s.refuseUpstreamRequest(c, &in)
				continue
			}
			s.asking()
			answer, err := out.parked.ask(cctx, &in, d)
			s.answered()
			if err != nil {
				return nil, s.failed(ctx, cctx, c, d, err)
			}
			answer.ID = in.ID
			if err := s.gw.sendUpstream(cctx, u, cs, answer); err != nil {
				return nil, s.failed(ctx, cctx, c, d, err)
			}
			continue
		case in.IsRequest():
			in.ID = s.relayRequest(c, in.ID)
		case in.Method == "notifications/cancelled" && in.IsNotification():
			if !s.cancelsRelayed(c, &in) {
				continue
			}
		case !in.IsNotification():
			continue
		}
		if err := out.send(&in); err != nil {
			// The downstream client is gone.
			return nil, s.failed(ctx, cctx, c, d, context.Canceled)
		}
	}
}

// maxResumes bounds how often one call's stream is resumed.
const maxResumes = 8

// failed maps a failed exchange to its error, telling the upstream to stop
// working on a call that nobody will receive the result of.
func (s *session) failed(ctx, cctx context.Context, c *rawCall, d time.Duration, err error) error {
	switch {
	case c.cancelled.Load():
		reason := "cancelled by the client"
		if p := c.reason.Load(); p != nil && *p != "" {
			reason = *p
		}
		s.cancelUpstream(c, reason)
		return errClientCancelled
	case ctx.Err() != nil || errors.Is(err, context.Canceled):
		s.cancelUpstream(c, "the client went away")
		return context.Canceled
	case timedOut(cctx):
		s.cancelUpstream(c, "timed out at the gateway")
		return &timeoutError{upstream: c.u.cfg.Name, after: d}
	}
	c.u.drop(c.cs)
	return fmt.Errorf("%w: upstream %q: %v", errUpstreamDown, c.u.cfg.Name, err)
}

func (s *session) tooLarge(c *rawCall, limit int) error {
	s.cancelUpstream(c, "result too large for the gateway")
	return rpcError(CodeTooLarge, fmt.Sprintf("upstream result exceeds the gateway's limit of %d bytes", limit), errorData{Upstream: c.u.cfg.Name})
}

// cancelUpstream sends notifications/cancelled for c to its upstream, in
// the background and bounded in time.
func (s *session) cancelUpstream(c *rawCall, reason string) {
	params, _ := json.Marshal(struct {
		RequestID json.RawMessage `json:"requestId"`
		Reason    string          `json:"reason,omitempty"`
	}{c.up, reason})
	s.gw.background(func(ctx context.Context) {
		_ = s.gw.sendUpstream(ctx, c.u, c.cs, &wire.Message{Method: "notifications/cancelled", Params: params})
	})
}
