package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
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

// relayedRequest is an upstream's request passed to the downstream client
// under a relay id, waiting for the client's answer.
type relayedRequest struct {
	u    *upConn
	cs   *mcp.ClientSession
	orig json.RawMessage
}

// serveCall admits and relays a governed call whose upstream speaks
// Streamable HTTP. It reports false, leaving the call to the SDK path,
// when the upstream is a stdio server.
func (s *session) serveCall(w http.ResponseWriter, r *http.Request, a *authed, m *wire.Message) bool {
	fail := func(err error) bool {
		s.downstream(w).fail(m.ID, err)
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
	fields := wire.Members(m.Params)
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
		// Routed by the tool's upstream: an aggregated name's first "__"
		// need not end the upstream's name.
		if e, err := s.tool(ctx, name); err != nil {
			return fail(err)
		} else if e != nil && !e.up.raw() {
			return false
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
		if up, uerr := s.resourceUpstream(ctx, uri); uerr == nil && !up.raw() {
			return false
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
		if up, _, ok := s.split(name); ok && !up.raw() {
			return false
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
	params, _ := json.Marshal(fields)
	s.relayCall(ctx, w, u, m, params, s.sessionlessHeaders(r.Header, u, m.Method, fields), done)
	return true
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

func (u *upConn) http() bool { return u.cfg.URL != "" }

func (u *upConn) timeout() time.Duration {
	if u.cfg.Timeout > 0 {
		return u.cfg.Timeout
	}
	return u.s.gw.cfg.Limits.CallTimeout
}

func (u *upConn) protocolVersion() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.init == nil {
		return ""
	}
	return u.init.ProtocolVersion
}

// relayCall sends an admitted call upstream and its answer downstream.
// The outcome is recorded once the answer is on its way, so that the
// client does not wait for the ledger a second time, and unhurried: it
// rides along with the next commit (the next call's decision, typically)
// rather than costing one of its own.
func (s *session) relayCall(ctx context.Context, w http.ResponseWriter, u *upConn, m *wire.Message, params json.RawMessage, h http.Header, done outcomeFunc) {
	toolError, err := s.relay(ctx, w, u, m, params, h)
	// The client has its answer before the outcome's bookkeeping
	// (a goroutine's wake-up, on a busy machine a thread's) begins.
	_ = http.NewResponseController(w).Flush()
	rctx := audit.Unhurried(ctx)
	s.gw.async(func() { _ = done(rctx, toolError, err) })
}

// relay runs the exchange and writes its answer; it returns the outcome.
func (s *session) relay(ctx context.Context, w http.ResponseWriter, u *upConn, m *wire.Message, params json.RawMessage, h http.Header) (toolError bool, err error) {
	out := s.downstream(w)
	res, err := s.exchange(ctx, u, m, params, h, out)
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
			// A sessionless client cannot be asked in the middle of a call
			// (2026-07-28 asks with input_required results instead).
			s.refuseUpstreamRequest(c, &in)
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

// readBody reads resp's body, or its first limit+1 bytes if it is longer
// (so that the caller can tell it is too long). A body whose length is
// declared and within limit is read into one allocation of that size
// rather than into a slice that grows (and is copied) as it fills.
func readBody(resp *http.Response, limit int) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= int64(limit) {
		// net/http's body ends after the declared length.
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
}

// maxResumes bounds how often one call's stream is resumed.
const maxResumes = 8

// resumeUpstream reopens an upstream's stream after its event lastID,
// waiting first for the reconnection time the stream asked for (at most
// a few seconds).
func (g *Gateway) resumeUpstream(ctx context.Context, u *upConn, cs *mcp.ClientSession, lastID string, retry time.Duration) (io.ReadCloser, error) {
	if retry > 0 {
		t := time.NewTimer(min(retry, 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	resp, err := g.upstreamRoundTrip(ctx, u, cs, http.MethodGet, nil, http.Header{
		"Accept":        {"text/event-stream"},
		"Last-Event-Id": {lastID},
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || mediaType(resp.Header.Get("Content-Type")) != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("resuming the stream after event %q: upstream answered HTTP %d", lastID, resp.StatusCode)
	}
	return resp.Body, nil
}

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

// background runs f with a bounded context, in a goroutine the gateway's
// Close waits for.
func (g *Gateway) background(f func(context.Context)) {
	g.async(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(g.ctx), 5*time.Second)
		defer cancel()
		f(ctx)
	})
}

// async runs f in a goroutine that Close waits for; once Close has begun,
// it runs f at once instead. The goroutine is one that an earlier f ran
// in, if one is waiting: recording a call's outcome in the ledger runs
// deep enough that a new goroutine's stack grows, and is copied, once or
// twice on every call, where a reused one has grown already.
func (g *Gateway) async(f func()) {
	if !g.enter() {
		f()
		return
	}
	select {
	case g.idle <- f:
	default:
		g.workers.Add(1)
		go g.work(f)
	}
}

// maxIdleWorkers bounds the goroutines waiting for async's work: about
// the calls whose outcomes are being recorded at once at full load.
const maxIdleWorkers = 128

// work runs f, then waits for more from async while no more than
// maxIdleWorkers goroutines wait, until Close.
func (g *Gateway) work(f func()) {
	defer g.workers.Done()
	for {
		f()
		g.wg.Done()
		if g.waiting.Add(1) > maxIdleWorkers {
			g.waiting.Add(-1)
			return
		}
		select {
		case f = <-g.idle:
			g.waiting.Add(-1)
		case <-g.ctx.Done():
			g.waiting.Add(-1)
			return
		}
	}
}

// enter registers work that Close waits for (the caller calls g.wg.Done
// when it ends); it reports false once Close has begun.
func (g *Gateway) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ctx.Err() != nil {
		return false
	}
	g.wg.Add(1)
	return true
}

// postUpstream POSTs one JSON-RPC message on the upstream session cs.
func (g *Gateway) postUpstream(ctx context.Context, u *upConn, cs *mcp.ClientSession, body []byte, extra http.Header) (*http.Response, error) {
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json, text/event-stream"},
	}
	for k, v := range extra {
		h[k] = v
	}
	return g.upstreamRoundTrip(ctx, u, cs, http.MethodPost, bytes.NewReader(body), h)
}

// upstreamRoundTrip sends a request with header h on the upstream session
// cs: with its session id and negotiated protocol version, through the
// upstream's transport (which adds its configured headers).
func (g *Gateway) upstreamRoundTrip(ctx context.Context, u *upConn, cs *mcp.ClientSession, method string, body io.Reader, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.cfg.URL, body)
	if err != nil {
		return nil, err
	}
	if id := cs.ID(); id != "" {
		h.Set("Mcp-Session-Id", id)
	}
	if v := u.protocolVersion(); v != "" {
		h.Set("Mcp-Protocol-Version", v)
	}
	req.Header = h
	return g.relayers[u.cfg.Name].RoundTrip(req)
}

// sendUpstream POSTs a notification or response, which the upstream
// accepts with 202.
func (g *Gateway) sendUpstream(ctx context.Context, u *upConn, cs *mcp.ClientSession, m *wire.Message) error {
	resp, err := g.postUpstream(ctx, u, cs, m.Encode(), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream %q answered HTTP %d", u.cfg.Name, resp.StatusCode)
	}
	return nil
}

// relayIDPrefix begins the string ids the gateway gives the messages it
// relays raw: its own requests to upstreams, and upstreams' requests it
// passes to downstream clients. The SDK numbers its requests with
// integers, so these ids cannot collide with the ids of the requests the
// gateway's SDK sessions send on the same sessions.
const relayIDPrefix = "mandate-"

// relayID returns a fresh relay id as a JSON string.
func (g *Gateway) relayID() json.RawMessage {
	n := g.relaySeq.Add(1)
	b := make([]byte, 0, len(relayIDPrefix)+22)
	b = append(b, '"')
	b = append(b, relayIDPrefix...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, '"')
}

// relayRequest registers an upstream's request to the downstream client
// and returns the relay id it goes out under.
func (s *session) relayRequest(c *rawCall, orig json.RawMessage) json.RawMessage {
	id := s.gw.relayID()
	k, _ := wire.IDKey(id)
	s.mu.Lock()
	if s.relayed == nil {
		s.relayed = map[string]*relayedRequest{}
	}
	s.relayed[k] = &relayedRequest{u: c.u, cs: c.cs, orig: orig}
	s.mu.Unlock()
	s.asking()
	c.relayed = append(c.relayed, k)
	if ok, found := wire.IDKey(orig); found {
		if c.relayIDs == nil {
			c.relayIDs = map[string]json.RawMessage{}
		}
		c.relayIDs[ok] = id
	}
	return id
}

// cancelsRelayed rewrites an upstream's notifications/cancelled for a
// request it sent on c's stream to name the relay id the downstream client
// knows that request by. It reports false for any other cancellation:
// the id it names is no request of the client's (passed on as it is, it
// could cancel an unrelated one the client is serving).
func (s *session) cancelsRelayed(c *rawCall, m *wire.Message) bool {
	var p map[string]json.RawMessage
	if json.Unmarshal(m.Params, &p) != nil {
		return false
	}
	k, ok := wire.IDKey(p["requestId"])
	id := c.relayIDs[k]
	if !ok || id == nil {
		return false
	}
	p["requestId"] = id
	m.Params, _ = json.Marshal(p)
	// The client's answer, if it comes, has nowhere to go.
	rk, _ := wire.IDKey(id)
	s.mu.Lock()
	_, waiting := s.relayed[rk]
	delete(s.relayed, rk)
	s.mu.Unlock()
	if waiting {
		s.answered()
	}
	return true
}

// answerRelayed routes the downstream client's answer to a relayed
// upstream request back to that upstream. Answers to other requests are
// the SDK's.
func (s *session) answerRelayed(w http.ResponseWriter, r *http.Request, m *wire.Message) bool {
	k, ok := wire.IDKey(m.ID)
	if !ok || !strings.HasPrefix(k, "s"+relayIDPrefix) {
		return false
	}
	if m.Result != nil && m.Error != nil {
		writeMessage(w, http.StatusBadRequest, wire.ErrorMessage(nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid response: it has both a result and an error"}))
		return true
	}
	m.Params = nil // a response has none; only what JSON-RPC defines goes upstream
	s.mu.Lock()
	p := s.relayed[k]
	delete(s.relayed, k)
	s.mu.Unlock()
	if p != nil {
		s.answered()
	}
	if p == nil {
		// The call it belonged to has ended; the answer has nowhere to go.
		w.WriteHeader(http.StatusAccepted)
		return true
	}
	m.ID = p.orig
	ctx, cancel := context.WithTimeout(r.Context(), p.u.timeout())
	defer cancel()
	if err := s.gw.sendUpstream(ctx, p.u, p.cs, m); err != nil {
		writeMessage(w, http.StatusBadGateway, wire.ErrorMessage(nil, rpcError(CodeUpstreamUnavailable,
			fmt.Sprintf("the answer could not be passed to upstream %q: %v", p.u.cfg.Name, err), errorData{Upstream: p.u.cfg.Name})))
		return true
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}

// cancelRelayed cancels a call in flight on the raw relay; cancellations
// of other requests are the SDK's.
func (s *session) cancelRelayed(w http.ResponseWriter, m *wire.Message) bool {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
		Reason    string          `json:"reason"`
	}
	if json.Unmarshal(m.Params, &p) != nil {
		return false
	}
	k, ok := wire.IDKey(p.RequestID)
	if !ok {
		return false
	}
	s.mu.Lock()
	c := s.raw[k]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.reason.Store(&p.Reason)
	c.cancelled.Store(true)
	c.cancel()
	w.WriteHeader(http.StatusAccepted)
	return true
}

// addRaw registers c under its downstream id; false if that id is in use.
// (On a task session, where each request has a stream of its own and
// clients' ids may repeat, under its relay id.)
func (s *session) addRaw(c *rawCall) bool {
	id := c.down
	if s.stateless {
		id = c.up
	}
	k, ok := wire.IDKey(id)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == nil {
		s.raw = map[string]*rawCall{}
	}
	if s.raw[k] != nil {
		return false
	}
	s.raw[k], c.key = c, k
	return true
}

// removeRaw forgets c and the upstream requests it relayed, cancelling
// (on out, before c's response) those the downstream client has not
// answered: their answers would have nowhere to go. (An upstream may well
// cancel them itself, but after its response: the Go SDK does.)
func (s *session) removeRaw(c *rawCall, out *downstream) {
	var pending []string
	s.mu.Lock()
	delete(s.raw, c.key)
	for _, r := range c.relayed {
		if s.relayed[r] != nil {
			pending = append(pending, r)
		}
		delete(s.relayed, r)
	}
	s.mu.Unlock()
	for range pending {
		s.answered()
	}
	for _, r := range pending {
		params, _ := json.Marshal(struct {
			RequestID string `json:"requestId"`
			Reason    string `json:"reason"`
		}{strings.TrimPrefix(r, "s"), "the call it was made for has ended"})
		if out.send(&wire.Message{Method: "notifications/cancelled", Params: params}) != nil {
			return
		}
	}
}

// downstream writes what a relayed call sends back: the response alone as
// application/json, or, once anything has come before it, every message
// as a text/event-stream. To a sessionless client, a protocol error alone
// is answered with its HTTP status (MCP 2026-07-28: 404 for an unknown
// method, 400 for invalid params, an unsupported revision or a missing
// client capability), as the SDK's stateless handler answers.
type downstream struct {
	w           http.ResponseWriter
	sessionless bool
	streaming   bool
	wrote       bool
}

func (s *session) downstream(w http.ResponseWriter) *downstream {
	return &downstream{w: w, sessionless: s.stateless}
}

// errorStatus is the HTTP status of a sessionless client's response m:
// 200 unless it is a protocol error.
func (d *downstream) errorStatus(m *wire.Message) int {
	if !d.sessionless || m.Error == nil {
		return http.StatusOK
	}
	var e struct {
		Code int64 `json:"code"`
	}
	_ = json.Unmarshal(m.Error, &e)
	switch e.Code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, mcp.CodeUnsupportedProtocolVersion, mcp.CodeMissingRequiredClientCapabilities:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

func (d *downstream) send(m *wire.Message) error {
	if !d.streaming {
		h := d.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		d.w.WriteHeader(http.StatusOK)
		d.streaming, d.wrote = true, true
	}
	b := m.Encode()
	buf := make([]byte, 0, len(b)+24)
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	if _, err := d.w.Write(buf); err != nil {
		return err
	}
	return http.NewResponseController(d.w).Flush()
}

// final writes the response that ends the call.
func (d *downstream) final(m *wire.Message) {
	if d.streaming {
		_ = d.send(m)
		return
	}
	d.wrote = true
	writeMessage(d.w, d.errorStatus(m), m)
}

// fail ends the call with err (nothing is written for a client that is
// gone). CodeUnavailable, when nothing has been sent yet, is an HTTP 503
// with Retry-After: the gateway itself cannot serve the request now.
func (d *downstream) fail(id json.RawMessage, err error) {
	var je *jsonrpc.Error
	if !errors.As(err, &je) {
		if errors.Is(err, context.Canceled) {
			return
		}
		je = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
	}
	if je.Code == CodeUnavailable && !d.streaming {
		d.wrote = true
		d.w.Header().Set("Retry-After", fault.RetryAfter)
		writeMessage(d.w, http.StatusServiceUnavailable, wire.ErrorMessage(id, je))
		return
	}
	d.final(wire.ErrorMessage(id, je))
}

// end closes a call that gets no response (the client cancelled it).
func (d *downstream) end() {
	if !d.wrote {
		// A request is answered with JSON or a stream; a cancelled one
		// gets a stream that ends without its response.
		d.w.Header().Set("Content-Type", "text/event-stream")
		d.w.WriteHeader(http.StatusOK)
	}
}
