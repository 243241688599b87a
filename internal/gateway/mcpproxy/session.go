// The gateway relays MCP 2025-11-25 as it is, including the logging,
// roots and sampling features the SDK marks deprecated for later protocol
// versions.
//
//lint:file-ignore SA1019 relaying deprecated-but-current protocol features is the point
package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/toolpin"
)

// NamespaceSep joins an upstream's name and a tool or prompt name on the
// aggregated endpoint: "github__create_issue".
const NamespaceSep = "__"

// session is one downstream MCP session: its own mcp.Server, paired with
// its own client session to each upstream it fronts, so that everything
// an upstream sends (requests, notifications) has exactly one downstream
// peer to go to.
type session struct {
	gw       *Gateway
	upstream string // "" for the aggregated endpoint
	endpoint string // the endpoint's path
	resource string
	server   *mcp.Server
	ups      []*upConn
	byName   map[string]*upConn

	// Set when the session is initialized: the downstream session's id,
	// the negotiated protocol version, and the principal (task and agent)
	// the session belongs to.
	id, version, owner string
	// stateless marks a task session (sessionless.go): it serves one
	// principal's sessionless requests, each on an mcp.ServerSession of its
	// own, under taskKey.
	stateless bool
	taskKey   string
	// busy counts the session's POSTs in flight; lastUsed is when the
	// last one ended (unix nanoseconds). The gateway closes sessions idle
	// for longer than Limits.SessionTimeout.
	busy     atomic.Int64
	lastUsed atomic.Int64

	clocks clocks // of the calls in flight

	mu         sync.Mutex
	ss         *mcp.ServerSession
	clientCaps *mcp.ClientCapabilities // the downstream client's, mirrored upstream
	closed     bool
	inflight   []*inflight
	tools      map[string]*toolEntry
	prompts    map[string]*promptEntry
	resources  map[string]*upConn
	raw        map[string]*rawCall        // raw-relayed calls by downstream id
	relayed    map[string]*relayedRequest // upstream requests relayed downstream, by relay id
}

type inflight struct {
	ctx   context.Context
	ss    *mcp.ServerSession // the downstream session it came on
	token any                // progress token, if any
}

type toolEntry struct {
	up     *upConn
	tool   *mcp.Tool
	digest string
	status toolpin.Status
	ann    json.RawMessage // the tool's annotations as JSON, or nil
	// resource names the tool in decisions: "<upstream>/<tool name>".
	resource string
}

type promptEntry struct {
	up   *upConn
	name string
}

func (g *Gateway) newSession(upstream, endpoint string) *session {
	s := &session{gw: g, upstream: upstream, endpoint: endpoint, resource: g.cfg.PublicURL + endpoint, byName: map[string]*upConn{}}
	names := g.names
	if upstream != "" {
		names = []string{upstream}
	}
	for _, n := range names {
		u := &upConn{s: s, cfg: g.ups[n]}
		s.ups = append(s.ups, u)
		s.byName[n] = u
	}
	s.server = mcp.NewServer(&mcp.Implementation{Name: "mandate", Version: "1"}, &mcp.ServerOptions{
		Logger: g.log,
		// Advertised capabilities are replaced by the upstreams' in the
		// initialize result; these only let the SDK relay what upstreams
		// send.
		Capabilities: &mcp.ServerCapabilities{
			Tools:       &mcp.ToolCapabilities{ListChanged: true},
			Prompts:     &mcp.PromptCapabilities{ListChanged: true},
			Resources:   &mcp.ResourceCapabilities{ListChanged: true, Subscribe: true},
			Logging:     &mcp.LoggingCapabilities{},
			Completions: &mcp.CompletionCapabilities{},
		},
		SubscribeHandler:            s.subscribe,
		UnsubscribeHandler:          s.unsubscribe,
		CompletionHandler:           s.complete,
		InitializedHandler:          s.initialized,
		RootsListChangedHandler:     func(ctx context.Context, _ *mcp.RootsListChangedRequest) { s.syncRoots(ctx) },
		ProgressNotificationHandler: s.clientProgress,
	})
	s.server.AddReceivingMiddleware(s.middleware)
	return s
}

// middleware intercepts the methods the gateway governs or relays; the
// rest (ping, cancellation, subscriptions, completion through the
// handlers above) go to the SDK.
func (s *session) middleware(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		switch method {
		case "initialize":
			return s.initialize(ctx, next, method, req)
		case "server/discover":
			return s.discover(ctx, next, method, req)
		case "tools/list":
			return s.listTools(ctx, req.(*mcp.ListToolsRequest))
		case "tools/call":
			return s.callTool(ctx, req.(*mcp.CallToolRequest))
		case "resources/list":
			return s.listResources(ctx, req.(*mcp.ListResourcesRequest))
		case "resources/templates/list":
			return s.listTemplates(ctx, req.(*mcp.ListResourceTemplatesRequest))
		case "resources/read":
			return s.readResource(ctx, req.(*mcp.ReadResourceRequest))
		case "prompts/list":
			return s.listPrompts(ctx, req.(*mcp.ListPromptsRequest))
		case "prompts/get":
			return s.getPrompt(ctx, req.(*mcp.GetPromptRequest))
		case "logging/setLevel":
			p := req.GetParams().(*mcp.SetLoggingLevelParams)
			if err := s.each(ctx, func(ctx context.Context, cs *mcp.ClientSession) error {
				return cs.SetLoggingLevel(ctx, p)
			}); err != nil {
				return nil, err
			}
			return next(ctx, method, req)
		}
		return next(ctx, method, req)
	}
}

// initialize connects the upstreams (mirroring the downstream client's
// capabilities to them) and answers with their capabilities.
func (s *session) initialize(ctx context.Context, next mcp.MethodHandler, method string, req mcp.Request) (mcp.Result, error) {
	ss, _ := req.GetSession().(*mcp.ServerSession)
	ip, _ := req.GetParams().(*mcp.InitializeParams)
	s.mu.Lock()
	s.ss = ss
	if ip != nil {
		s.clientCaps = ip.Capabilities
	}
	s.mu.Unlock()
	inits, err := s.connectAll(ctx)
	if err != nil {
		s.abort()
		return nil, err
	}
	res, err := next(ctx, method, req)
	if err != nil {
		s.abort()
		return nil, err
	}
	r := res.(*mcp.InitializeResult)
	var owner string
	if a := principalFrom(req.GetExtra()); a != nil {
		owner = a.p.owner()
	}
	var info *mcp.Implementation
	r.Capabilities, r.Instructions, info = s.advertised(inits)
	if info != nil {
		r.ServerInfo = info
	}
	s.gw.mu.Lock()
	if s.gw.ctx.Err() != nil {
		s.gw.mu.Unlock()
		s.abort()
		return nil, &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "gateway is shutting down"}
	}
	s.gw.sessions[s] = struct{}{}
	s.mu.Lock()
	s.id, s.version, s.owner = ss.ID(), r.ProtocolVersion, owner
	s.mu.Unlock()
	s.lastUsed.Store(time.Now().UnixNano())
	if s.id != "" {
		s.gw.byID[s.id] = s
	}
	s.gw.wg.Add(1)
	s.gw.mu.Unlock()
	go func() {
		defer s.gw.wg.Done()
		_ = ss.Wait()
		s.abort()
	}()
	return r, nil
}

// connectAll connects every upstream and returns the initialize results
// of those that answered; if none did, the error to answer with.
func (s *session) connectAll(ctx context.Context) ([]*mcp.InitializeResult, error) {
	var inits []*mcp.InitializeResult
	var errs []error
	for _, u := range s.ups {
		if _, err := u.get(ctx); err != nil {
			errs = append(errs, err)
			continue
		}
		u.mu.Lock()
		inits = append(inits, u.init)
		u.mu.Unlock()
	}
	if len(inits) == 0 {
		return nil, s.gw.errorFor(errors.Join(errs...), "")
	}
	return inits, nil
}

// advertised is what the endpoint tells a client it serves, from the
// upstreams' initialize results: an upstream's endpoint, what the
// upstream says (and who it is); the aggregated one, the union.
func (s *session) advertised(inits []*mcp.InitializeResult) (caps *mcp.ServerCapabilities, instructions string, info *mcp.Implementation) {
	if s.upstream != "" {
		up := inits[0]
		return up.Capabilities, up.Instructions, up.ServerInfo
	}
	return mergeCaps(inits), "mandate MCP gateway: tools and prompts of every upstream, named <upstream>" + NamespaceSep + "<name>.", nil
}

func mergeCaps(inits []*mcp.InitializeResult) *mcp.ServerCapabilities {
	c := &mcp.ServerCapabilities{}
	for _, in := range inits {
		u := in.Capabilities
		if u == nil {
			continue
		}
		if u.Tools != nil {
			c.Tools = &mcp.ToolCapabilities{ListChanged: true}
		}
		if u.Prompts != nil {
			c.Prompts = &mcp.PromptCapabilities{ListChanged: true}
		}
		if u.Resources != nil {
			if c.Resources == nil {
				c.Resources = &mcp.ResourceCapabilities{}
			}
			c.Resources.ListChanged = c.Resources.ListChanged || u.Resources.ListChanged
			c.Resources.Subscribe = c.Resources.Subscribe || u.Resources.Subscribe
		}
		if u.Logging != nil {
			c.Logging = &mcp.LoggingCapabilities{}
		}
		if u.Completions != nil {
			c.Completions = &mcp.CompletionCapabilities{}
		}
	}
	return c
}

func (s *session) initialized(ctx context.Context, _ *mcp.InitializedRequest) {
	go s.syncRoots(context.WithoutCancel(ctx))
}

// syncRoots mirrors the downstream client's roots to every upstream.
func (s *session) syncRoots(ctx context.Context) {
	s.mu.Lock()
	ss := s.ss
	s.mu.Unlock()
	if ss == nil {
		return
	}
	ip := ss.InitializeParams()
	if ip == nil || ip.Capabilities == nil || (ip.Capabilities.RootsV2 == nil && !ip.Capabilities.Roots.ListChanged) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := ss.ListRoots(ctx, nil)
	if err != nil {
		return
	}
	for _, u := range s.ups {
		u.mu.Lock()
		c, old := u.client, u.roots
		u.roots = nil
		for _, r := range res.Roots {
			u.roots = append(u.roots, r.URI)
		}
		u.mu.Unlock()
		if c == nil {
			continue
		}
		c.RemoveRoots(old...)
		c.AddRoots(res.Roots...)
	}
}

// abort releases the upstream sessions of a session whose initialization
// failed. It does not close the downstream session: it runs inside that
// session's initialize handler, and the SDK closes a session that failed
// to initialize.
func (s *session) abort() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	for _, u := range s.ups {
		u.close()
	}
	s.unregister()
}

// close ends the session and its upstream sessions; it is idempotent.
func (s *session) close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	ss := s.ss
	s.mu.Unlock()
	for _, u := range s.ups {
		u.close()
	}
	if ss != nil {
		_ = ss.Close()
	}
	s.unregister()
}

// unregister forgets an ended session.
func (s *session) unregister() {
	s.gw.mu.Lock()
	delete(s.gw.sessions, s)
	if s.id != "" && s.gw.byID[s.id] == s {
		delete(s.gw.byID, s.id)
	}
	if s.taskKey != "" && s.gw.byTask[s.taskKey] == s {
		delete(s.gw.byTask, s.taskKey)
	}
	s.gw.mu.Unlock()
}

// lookupSession returns the initialized session with the given id on the
// endpoint, or nil.
func (g *Gateway) lookupSession(endpoint, id string) *session {
	if id == "" {
		return nil
	}
	g.mu.Lock()
	s := g.byID[id]
	g.mu.Unlock()
	if s == nil || s.endpoint != endpoint {
		return nil
	}
	return s
}

// ownedBy reports whether the session belongs to p's task and agent.
func (s *session) ownedBy(p *Principal) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.owner != "" && p.owns(s.owner)
}

// begin and end bracket each POST on the session.
func (s *session) begin() { s.busy.Add(1) }
func (s *session) end() {
	s.lastUsed.Store(time.Now().UnixNano())
	s.busy.Add(-1)
}

// idle reports whether the session has had no request for longer than d.
func (s *session) idle(now time.Time, d time.Duration) bool {
	return s.busy.Load() == 0 && now.Sub(time.Unix(0, s.lastUsed.Load())) > d
}

// clientOptions are the options of the client that speaks to upstream u:
// the downstream client's capabilities, and handlers that relay what the
// upstream sends to the downstream client.
func (s *session) clientOptions(u *upConn) *mcp.ClientOptions {
	o := &mcp.ClientOptions{
		Logger:                     s.gw.log,
		ToolListChangedHandler:     func(context.Context, *mcp.ToolListChangedRequest) { s.listChanged("tools") },
		PromptListChangedHandler:   func(context.Context, *mcp.PromptListChangedRequest) { s.listChanged("prompts") },
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { s.listChanged("resources") },
		ResourceUpdatedHandler: func(ctx context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			_ = s.server.ResourceUpdated(ctx, r.Params)
		},
		LoggingMessageHandler: func(ctx context.Context, r *mcp.LoggingMessageRequest) {
			defer u.order.handled.Add(1)
			if rctx, ss := s.relayTarget(ctx, nil); ss != nil {
				_ = ss.Log(rctx, r.Params)
			}
		},
		ProgressNotificationHandler: func(ctx context.Context, r *mcp.ProgressNotificationClientRequest) {
			defer u.order.handled.Add(1)
			if rctx, ss := s.relayTarget(ctx, r.Params.ProgressToken); ss != nil {
				_ = ss.NotifyProgress(rctx, r.Params)
			}
		},
		Capabilities: &mcp.ClientCapabilities{},
		// A sessionless client asks for input itself: an upstream's
		// input_required results go to it as they are, and its retries,
		// each decided, come back (see callTool).
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: s.stateless},
	}
	s.mu.Lock()
	caps := s.clientCaps
	s.mu.Unlock()
	if caps != nil {
		c := *caps
		o.Capabilities = &c
		if caps.Sampling != nil {
			o.CreateMessageHandler = func(ctx context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
				rctx, ss := s.relayTarget(ctx, nil)
				return ss.CreateMessage(rctx, r.Params)
			}
		}
		if caps.Elicitation != nil {
			o.ElicitationHandler = func(ctx context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				rctx, ss := s.relayTarget(ctx, nil)
				return ss.Elicit(rctx, r.Params)
			}
		}
	}
	return o
}

// relayRequests passes an upstream's sampling and elicitation requests to
// the downstream client as they are: the downstream client (not the
// gateway's SDK client) validates them and their results.
func (s *session) relayRequests(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		rctx, ss := s.relayTarget(ctx, nil)
		if ss == nil {
			return next(ctx, method, req)
		}
		// While the client answers, the session's calls stop counting
		// upstream time (see callClock).
		switch method {
		case "elicitation/create":
			s.asking()
			defer s.answered()
			return ss.Elicit(rctx, req.GetParams().(*mcp.ElicitParams))
		case "sampling/createMessage":
			if p, ok := req.GetParams().(*mcp.CreateMessageParams); ok {
				s.asking()
				defer s.answered()
				return ss.CreateMessage(rctx, p)
			}
		}
		return next(ctx, method, req)
	}
}

func (s *session) session() *mcp.ServerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ss
}

// listChanged tells the downstream client that a list changed. The SDK
// sends list_changed notifications when a server's features change, so a
// placeholder feature is added and removed (the two changes are debounced
// into one notification; the placeholder is never listed, because the
// gateway answers list requests itself).
func (s *session) listChanged(kind string) {
	s.mu.Lock()
	switch kind {
	case "tools":
		s.tools = nil
	case "prompts":
		s.prompts = nil
	case "resources":
		s.resources = nil
	}
	s.mu.Unlock()
	const ph = "mandate.list_changed"
	switch kind {
	case "tools":
		s.server.AddTool(&mcp.Tool{Name: ph, InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, errors.New("placeholder")
		})
		s.server.RemoveTools(ph)
	case "prompts":
		s.server.AddPrompt(&mcp.Prompt{Name: ph}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return nil, errors.New("placeholder")
		})
		s.server.RemovePrompts(ph)
	case "resources":
		s.server.AddResource(&mcp.Resource{Name: ph, URI: "mandate:list-changed"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return nil, errors.New("placeholder")
		})
		s.server.RemoveResources("mandate:list-changed")
	}
}

// track registers an in-flight downstream request so that what upstreams
// send while serving it goes back on its stream.
func (s *session) track(ctx context.Context, ss *mcp.ServerSession, token any) func() {
	f := &inflight{ctx: ctx, ss: ss, token: token}
	s.mu.Lock()
	s.inflight = append(s.inflight, f)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.inflight = slices.DeleteFunc(s.inflight, func(x *inflight) bool { return x == f })
		s.mu.Unlock()
	}
}

// relayTarget picks the downstream request a message from an upstream
// belongs to: the one with the message's progress token, else the most
// recent in-flight request. It returns the session to send on (the
// request's own, on a task session, whose requests each have one) and a
// context with that request's values (so the SDK sends on its stream)
// and ctx's cancellation.
func (s *session) relayTarget(ctx context.Context, token any) (context.Context, *mcp.ServerSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pick *inflight
	for i := len(s.inflight) - 1; i >= 0; i-- {
		f := s.inflight[i]
		if token != nil && fmt.Sprint(f.token) == fmt.Sprint(token) {
			pick = f
			break
		}
		if pick == nil {
			pick = f
		}
	}
	if pick == nil {
		return ctx, s.ss
	}
	ss := pick.ss
	if ss == nil {
		ss = s.ss
	}
	return valuesFrom{Context: ctx, values: pick.ctx}, ss
}

type valuesFrom struct {
	context.Context
	values context.Context
}

func (c valuesFrom) Value(k any) any {
	if v := c.values.Value(k); v != nil {
		return v
	}
	return c.Context.Value(k)
}

// each runs f against every upstream's session.
func (s *session) each(ctx context.Context, f func(context.Context, *mcp.ClientSession) error) error {
	for _, u := range s.ups {
		cs, err := u.get(ctx)
		if err != nil {
			if s.upstream == "" {
				continue
			}
			return s.gw.errorFor(err, u.cfg.Name)
		}
		if err := u.call(ctx, cs, func(ctx context.Context) error { return f(ctx, cs) }); err != nil {
			return s.gw.errorFor(err, u.cfg.Name)
		}
	}
	return nil
}

// call runs f with the upstream's timeout (see callClock); a transport
// failure drops the session so the next call reconnects.
func (u *upConn) call(ctx context.Context, cs *mcp.ClientSession, f func(context.Context) error) error {
	d := u.timeout()
	cctx, stop := u.s.startClock(ctx, d)
	defer stop()
	err := f(cctx)
	u.order.barrier()
	if err == nil {
		return nil
	}
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return err
	}
	if timedOut(cctx) && ctx.Err() == nil {
		// The SDK cancels the call upstream. A stdio server that does not
		// answer in time may be stuck: it is restarted. An HTTP server's
		// session stays, as on the raw relay (dropping it now could end
		// the session before the cancellation arrives).
		if !u.http() {
			u.drop(cs)
		}
		return &timeoutError{upstream: u.cfg.Name, after: d}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	u.drop(cs)
	return fmt.Errorf("%w: upstream %q: %v", errUpstreamDown, u.cfg.Name, err)
}

type timeoutError struct {
	upstream string
	after    time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("upstream %q did not answer within %s", e.upstream, e.after)
}

// exposed returns the downstream name of an upstream's tool or prompt.
func (s *session) exposed(u *upConn, name string) string {
	if s.upstream != "" {
		return name
	}
	return u.cfg.Name + NamespaceSep + name
}

func (s *session) subscribe(ctx context.Context, r *mcp.SubscribeRequest) error {
	return s.onResourceUpstream(ctx, r.Params.URI, func(ctx context.Context, u *upConn, cs *mcp.ClientSession) error {
		return cs.Subscribe(ctx, &mcp.SubscribeParams{Meta: u.upstreamMeta(r.Params.Meta), URI: r.Params.URI})
	})
}

func (s *session) unsubscribe(ctx context.Context, r *mcp.UnsubscribeRequest) error {
	return s.onResourceUpstream(ctx, r.Params.URI, func(ctx context.Context, u *upConn, cs *mcp.ClientSession) error {
		return cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{Meta: u.upstreamMeta(r.Params.Meta), URI: r.Params.URI})
	})
}

// onResourceUpstream runs f on the session of the upstream serving uri.
func (s *session) onResourceUpstream(ctx context.Context, uri string, f func(context.Context, *upConn, *mcp.ClientSession) error) error {
	u, err := s.resourceUpstream(ctx, uri)
	if err != nil {
		return err
	}
	cs, err := u.get(ctx)
	if err != nil {
		return s.gw.errorFor(err, u.cfg.Name)
	}
	return s.gw.errorFor(u.call(ctx, cs, func(ctx context.Context) error { return f(ctx, u, cs) }), u.cfg.Name)
}

func (s *session) complete(ctx context.Context, r *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	p := *r.Params
	var u *upConn
	if p.Ref != nil && p.Ref.Type == "ref/prompt" {
		if s.upstream == "" {
			up, name, ok := s.split(p.Ref.Name)
			if !ok {
				return nil, invalidParams("unknown prompt %q", p.Ref.Name)
			}
			ref := *p.Ref
			ref.Name = name
			p.Ref = &ref
			u = up
		} else {
			u = s.ups[0]
		}
	} else if p.Ref != nil {
		up, err := s.resourceUpstream(ctx, p.Ref.URI)
		if err != nil {
			return nil, err
		}
		u = up
	} else {
		return nil, invalidParams("completion needs a ref")
	}
	cs, err := u.get(ctx)
	if err != nil {
		return nil, s.gw.errorFor(err, u.cfg.Name)
	}
	var res *mcp.CompleteResult
	err = u.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.Complete(ctx, &p)
		return err
	})
	return res, s.gw.errorFor(err, u.cfg.Name)
}

// clientProgress relays progress the downstream client reports (on a
// sampling or elicitation request) to every upstream.
func (s *session) clientProgress(ctx context.Context, r *mcp.ProgressNotificationServerRequest) {
	for _, u := range s.ups {
		u.mu.Lock()
		cs := u.cs
		u.mu.Unlock()
		if cs != nil {
			_ = cs.NotifyProgress(ctx, r.Params)
		}
	}
}

// split resolves an aggregated name "<upstream>__<name>".
func (s *session) split(exposed string) (*upConn, string, bool) {
	if s.upstream != "" {
		return s.ups[0], exposed, true
	}
	up, name, ok := strings.Cut(exposed, NamespaceSep)
	if !ok {
		return nil, "", false
	}
	u := s.byName[up]
	return u, name, u != nil && name != ""
}

func invalidParams(format string, args ...any) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}

// sortedKeys is used for deterministic iteration in tests and listings.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
