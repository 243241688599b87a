package mcpproxy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// MCP 2026-07-28 is sessionless: there is no initialize handshake and no
// Mcp-Session-Id; each request names its protocol revision (the
// MCP-Protocol-Version header and _meta), carries the client's
// capabilities in its _meta, and is answered on its own POST. Requests
// for input travel as results ("input_required") that the client answers
// by retrying the request, and list changes and resource updates reach
// the client on a subscriptions/listen stream.
//
// The gateway still keeps state on the upstream side: a stdio server's
// process, an upstream session, the tool list the pins were checked on.
// It keeps it per task: one gateway session per endpoint and principal
// (task and agent), created at the principal's first sessionless request
// and closed when idle, like any session. A task is the unit a mandate
// governs, so two tasks never share an upstream process (nor, later, a
// credential injected into one). The SDK's stateless handler serves each
// request with a short-lived mcp.ServerSession of that session's server,
// so the governed methods go through the same middleware as on a
// 2025-11-25 session (decided, recorded, relayed), and the protocol's
// per-request checks (headers, _meta, discovery) are the SDK's.

// revision20260728 is the first sessionless protocol revision. Protocol
// revisions are dates, so they order as strings.
const revision20260728 = "2026-07-28"

// sessionless reports whether r is a request of a sessionless protocol
// revision: no session, and a revision header of 2026-07-28 or later
// (the SDK's stateless handler checks that it is one the gateway speaks).
func sessionless(r *http.Request) bool {
	return r.Header.Get("Mcp-Session-Id") == "" && r.Header.Get("Mcp-Protocol-Version") >= revision20260728
}

type sessionKey struct{}

// serveSessionless serves a sessionless request on its principal's task
// session, through the SDK's stateless handler h.
func (g *Gateway) serveSessionless(w http.ResponseWriter, r *http.Request, a *authed, endpoint, upstream string, h http.Handler) {
	s := g.taskSession(endpoint, upstream, a.p)
	if s == nil {
		w.Header().Set("Retry-After", fault.RetryAfter)
		http.Error(w, "the gateway is shutting down", http.StatusServiceUnavailable)
		return
	}
	s.begin()
	defer s.end()
	if r.Method == http.MethodPost {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.Limits.MaxMessageBytes))
		if err != nil {
			tooLargeOrUnreadable(w, err)
			return
		}
		env := wire.Members(body) // read as the SDK reads it: names exactly as written
		params := wire.Members(env["params"])
		if err := s.checkHeaders(r, env, params); err != nil {
			writeMessage(w, http.StatusBadRequest, wire.ErrorMessage(env["id"], &jsonrpc.Error{Code: mcp.CodeHeaderMismatch, Message: "header mismatch: " + err.Error()}))
			return
		}
		s.noteCapabilities(params)
		if s.serveFast(w, r, a, body) {
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	r = withPrincipal(r, a)
	h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey{}, s)))
}

// checkHeaders checks a tools/call's Mcp-Param-* headers against its body
// (paramheaders.go), the request's members env and its params' members,
// read as the SDK reads them: names exactly as written (its decoder does
// not fold case). Anything else, and a call to a tool the session does
// not know (or cannot list now), is left to the SDK and the middleware,
// which answer it.
func (s *session) checkHeaders(r *http.Request, env, params map[string]json.RawMessage) error {
	var method, name string
	if json.Unmarshal(env["method"], &method) != nil || method != "tools/call" {
		return nil
	}
	if json.Unmarshal(params["name"], &name) != nil {
		return nil
	}
	e, err := s.tool(r.Context(), name)
	if err != nil || e == nil {
		return nil
	}
	return checkParamHeaders(r.Header, e.headers, params["arguments"])
}

// sessionlessServer is the stateless handler's choice of server: the one
// of the task session serveSessionless put in the request's context. No
// server (the SDK answers 400) for a request that did not come that way.
func sessionlessServer(r *http.Request) *mcp.Server {
	if s, ok := r.Context().Value(sessionKey{}).(*session); ok {
		return s.server
	}
	return nil
}

// taskSession returns the open task session of p on the endpoint,
// starting one if there is none; nil once the gateway is shutting down.
func (g *Gateway) taskSession(endpoint, upstream string, p *Principal) *session {
	key := endpoint + " " + p.owner()
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.draining || g.ctx.Err() != nil {
		return nil
	}
	if s := g.byTask[key]; s != nil {
		return s
	}
	s := g.newSession(upstream, endpoint)
	s.stateless, s.taskKey, s.owner, s.principal, s.version = true, key, p.owner(), p, revision20260728
	s.lastUsed.Store(time.Now().UnixNano())
	g.sessions[s] = struct{}{}
	g.byTask[key] = s
	return s
}

// upstreamMeta is the _meta to send upstream u with a request whose
// downstream _meta is m. The protocol revision is the upstream's own (its
// client session adds it); the client's information and capabilities,
// which a 2026-07-28 upstream reads from each request (to decide, say,
// whether it may ask for input), go on to such an upstream, and to no
// other: a 2025-11-25 upstream has them from the handshake.
func (u *upConn) upstreamMeta(m mcp.Meta) mcp.Meta {
	if !slices.ContainsFunc(requestMetaKeys, func(k string) bool { _, ok := m[k]; return ok }) {
		return m
	}
	out := maps.Clone(m)
	delete(out, mcp.MetaKeyProtocolVersion)
	if !u.sessionless() {
		for _, k := range clientMetaKeys {
			delete(out, k)
		}
	}
	return out
}

// clientMetaKeys are the _meta members in which each sessionless request
// says who its client is and what it can do; requestMetaKeys, those and
// the request's protocol revision.
var (
	//lint:ignore SA1019 deprecated, still sent by 2026-07-28 clients
	clientMetaKeys  = []string{mcp.MetaKeyClientInfo, mcp.MetaKeyClientCapabilities, mcp.MetaKeyLogLevel}
	requestMetaKeys = append([]string{mcp.MetaKeyProtocolVersion}, clientMetaKeys...)
)

// sessionless reports whether the upstream's session negotiated a
// sessionless revision. The raw relay speaks only the session-based
// revisions; calls to a sessionless upstream take the SDK path, whose
// client adds what each such request carries.
func (u *upConn) sessionless() bool {
	return u.protocolVersion() >= revision20260728
}

// raw reports whether calls to u may take the raw relay: an HTTP upstream
// with an open session of a session revision, or, for a task session's
// sessionless requests, one that speaks them too (what they carry passes
// on as it is). A session client's calls to a sessionless upstream take
// the SDK path, whose client answers the upstream's requests for input
// by asking the client.
func (u *upConn) raw() bool {
	v := u.protocolVersion()
	return u.http() && v != "" && (v < revision20260728 || u.s.stateless)
}

// sessionlessHeaders are the headers, besides the transport's, of a call
// on the raw relay from a sessionless client to a sessionless upstream:
// the method and upstream name (MCP 2026-07-28's Mcp-Method and
// Mcp-Name), and the Mcp-Param-* headers of the client's request h, which
// checkHeaders found in agreement with the arguments the upstream gets.
func (s *session) sessionlessHeaders(h http.Header, u *upConn, method string, params map[string]json.RawMessage) http.Header {
	if !s.stateless || !u.sessionless() {
		return nil
	}
	var name string
	switch method {
	case "tools/call", "prompts/get":
		_ = json.Unmarshal(params["name"], &name)
	case "resources/read":
		_ = json.Unmarshal(params["uri"], &name)
	}
	out := http.Header{"Mcp-Method": {method}, "Mcp-Name": {name}}
	for k, v := range h {
		if strings.HasPrefix(k, paramHeaderPrefix) {
			out[k] = v
		}
	}
	return out
}

// discover answers server/discover, the sessionless revision's
// handshake, as initialize is answered: with the upstreams' capabilities.
// A task session outlives an upstream that does not answer: the next
// request tries again.
func (s *session) discover(ctx context.Context, next mcp.MethodHandler, method string, req mcp.Request) (mcp.Result, error) {
	inits, err := s.connectAll(ctx)
	if err != nil {
		return nil, err
	}
	res, err := next(ctx, method, req)
	if err != nil {
		return nil, err
	}
	r := res.(*mcp.DiscoverResult)
	var info *mcp.Implementation
	r.Capabilities, r.Instructions, info = s.advertised(inits)
	if info != nil {
		if r.Meta == nil {
			r.Meta = mcp.Meta{}
		}
		r.Meta[mcp.MetaKeyServerInfo] = info
	}
	return r, nil
}

// serveFast serves a sessionless tools/call on the raw relay (relay.go)
// when its tool's upstream speaks a session revision over HTTP, as on a
// 2025-11-25 session: the SDK's stateless handler costs several times the
// relay's CPU per call (each request gets a server session of its own,
// and its JSON is decoded over and over). It takes only requests that are
// well formed beyond doubt: the revision in the header and in _meta is
// 2026-07-28, the Mcp-Method and Mcp-Name headers name the method and
// tool, the media types are right. Anything else goes to the SDK, which
// answers it, errors included. It reports whether it served the request.
func (s *session) serveFast(w http.ResponseWriter, r *http.Request, a *authed, body []byte) bool {
	if r.Header.Get("Mcp-Protocol-Version") != revision20260728 || r.Header.Get("Mcp-Method") != "tools/call" || !s.speaks(r) {
		return false
	}
	var m wire.Message
	if wire.Decode(body, &m) != nil || m.JSONRPC != "2.0" || !m.IsRequest() || m.Method != "tools/call" {
		return false
	}
	if _, ok := wire.IDKey(m.ID); !ok {
		return false
	}
	params := wire.Members(m.Params)
	var name, version string
	if json.Unmarshal(params["name"], &name) != nil || name == "" || r.Header.Get("Mcp-Name") != name {
		return false
	}
	if json.Unmarshal(wire.Members(params["_meta"])[mcp.MetaKeyProtocolVersion], &version) != nil || version != revision20260728 {
		return false
	}
	return s.serveCall(w, r, a, &m)
}

// sessionMeta is a sessionless request's _meta as a session revision's
// upstream gets it: without the revision, client and log level each
// sessionless request carries.
func sessionMeta(raw json.RawMessage) json.RawMessage {
	m := wire.Members(raw)
	if m == nil {
		return raw
	}
	for _, k := range requestMetaKeys {
		delete(m, k)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return b
}

// refuseUpstreamRequest answers an upstream's request made during call c
// of a sessionless client with an error: there is no one to ask.
func (s *session) refuseUpstreamRequest(c *rawCall, in *wire.Message) {
	res := wire.ErrorMessage(in.ID, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound,
		Message: fmt.Sprintf("%s: the client speaks MCP %s, which cannot be asked during a call", in.Method, revision20260728)})
	s.gw.background(func(ctx context.Context) {
		_ = s.gw.sendUpstream(ctx, c.u, c.cs, res)
	})
}

// noteCapabilities keeps the capabilities the task's first sessionless
// request (whose params' members are params) declares in its _meta for the task session's upstream
// handshakes: what a 2025-11-25 upstream learns it may ask for (see
// parkable), as a session's client's are mirrored to its upstreams.
func (s *session) noteCapabilities(params map[string]json.RawMessage) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.askable != nil {
		return
	}
	caps := wire.Members(wire.Members(params["_meta"])[mcp.MetaKeyClientCapabilities])
	if caps == nil {
		return
	}
	s.askable = map[string]bool{}
	for k := range caps {
		s.askable[k] = true
	}
}
