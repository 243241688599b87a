// The gateway relays MCP 2025-11-25 as it is, including the logging,
// roots and sampling features the SDK marks deprecated for later protocol
// versions.
//
//lint:file-ignore SA1019 relaying deprecated-but-current protocol features is the point
package mcpproxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

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
	principal          *Principal // who opened it (its task is the owner's)
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
	// scrub holds the secret values delivered to the session's upstreams,
	// which nothing relayed to the client may carry (secrets.go).
	scrub scrubber

	mu         sync.Mutex
	ss         *mcp.ServerSession
	clientCaps *mcp.ClientCapabilities // the downstream client's, mirrored upstream
	askable    map[string]bool         // a task session's: the capabilities its first request declared
	closed     bool
	inflight   []*inflight
	tools      map[string]*toolEntry
	prompts    map[string]*promptEntry
	resources  map[string]*upConn
	raw        map[string]*rawCall        // raw-relayed calls by downstream id
	relayed    map[string]*relayedRequest // upstream requests relayed downstream, by relay id
	parked     map[string]*parkedCall     // calls waiting for a sessionless client's retry, by token
	running    []*parkedCall              // the SDK path's parkable calls in flight, oldest first
}

type inflight struct {
	ctx   context.Context
	ss    *mcp.ServerSession // the downstream session it came on
	token any                // progress token, if any
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
	route := s.route(next)
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		return s.scrub.scrubbed(route(ctx, method, req))
	}
}

// route sends each method to the gateway's handler for it, or to next.
func (s *session) route(next mcp.MethodHandler) mcp.MethodHandler {
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
	if a := principalFrom(req.GetExtra()); a != nil {
		s.principal = a.p // whose credentials the upstreams get (secrets.go)
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
	var principal *Principal
	if a := principalFrom(req.GetExtra()); a != nil {
		owner, principal = a.p.owner(), a.p
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
	s.id, s.version, s.owner, s.principal = ss.ID(), r.ProtocolVersion, owner, principal
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
	parked := s.parked
	s.parked = nil
	s.mu.Unlock()
	for _, pc := range parked {
		pc.cancel()
	}
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

// ended reports whether the task the session belongs to has ended or was
// revoked, as the Authenticator's Liveness sees it.
func (s *session) ended() bool {
	l, ok := s.gw.cfg.Authenticator.(Liveness)
	s.mu.Lock()
	p := s.principal
	s.mu.Unlock()
	return ok && p != nil && !l.Live(p)
}

// idle reports whether the session has had no request for longer than d.
func (s *session) idle(now time.Time, d time.Duration) bool {
	return s.busy.Load() == 0 && now.Sub(time.Unix(0, s.lastUsed.Load())) > d
}
