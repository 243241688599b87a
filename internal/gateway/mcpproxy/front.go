package mcpproxy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// front is what every authenticated request to an endpoint meets. On a
// session the gateway knows, it serves itself
//
//   - governed calls (tools/call, resources/read, prompts/get) whose
//     upstream speaks Streamable HTTP: admitted exactly as on the SDK path,
//     then relayed as raw JSON-RPC (relay.go), so that the hot path does
//     not decode payloads it only passes on;
//   - tools/list, answered as on the SDK path (toolList), so that a list
//     the pins cannot check is an HTTP 503 with Retry-After;
//   - the answers and cancellations that belong to such relayed calls;
//   - malformed messages and requests for methods MCP does not define,
//     answered with JSON-RPC errors;
//
// and hands everything else to the SDK's Streamable HTTP handler (sdk),
// which owns the sessions, their streams and the rest of the protocol.
// Requests of a sessionless revision (2026-07-28) go to the SDK's
// stateless handler on their task's session (sessionless.go).
func (g *Gateway) front(endpoint, upstream string, sdk, stateless http.Handler) authedHandler {
	return func(w http.ResponseWriter, r *http.Request, a *authed) {
		if sessionless(r) {
			g.serveSessionless(w, r, a, endpoint, upstream, stateless)
			return
		}
		s := g.lookupSession(endpoint, r.Header.Get("Mcp-Session-Id"))
		if s == nil && g.isDraining() {
			w.Header().Set("Retry-After", fault.RetryAfter)
			http.Error(w, "the gateway is shutting down", http.StatusServiceUnavailable)
			return
		}
		if s == nil || r.Method != http.MethodPost {
			sdk.ServeHTTP(w, withPrincipal(r, a))
			return
		}
		if !s.ownedBy(a.p) {
			// The SDK refuses a session used by another principal.
			sdk.ServeHTTP(w, withPrincipal(r, a))
			return
		}
		// Only its owner's messages keep a session alive, as with the
		// SDK's own timer: an open GET stream alone does not.
		s.begin()
		defer s.end()
		if !s.speaks(r) {
			sdk.ServeHTTP(w, withPrincipal(r, a)) // and answers bad headers
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, g.cfg.Limits.MaxMessageBytes))
		if err != nil {
			tooLargeOrUnreadable(w, err)
			return
		}
		if !s.serve(w, r, a, body) {
			r.Body = io.NopCloser(bytes.NewReader(body))
			sdk.ServeHTTP(w, withPrincipal(r, a))
		}
	}
}

// tooLargeOrUnreadable answers a request whose body could not be read.
func tooLargeOrUnreadable(w http.ResponseWriter, err error) {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		writeMessage(w, http.StatusRequestEntityTooLarge, wire.ErrorMessage(nil, &jsonrpc.Error{
			Code: jsonrpc.CodeInvalidRequest, Message: fmt.Sprintf("message exceeds the gateway's limit of %d bytes", mbe.Limit),
		}))
		return
	}
	http.Error(w, "failed to read the request body", http.StatusBadRequest)
}

// serve handles the message in body if it is the gateway's to handle, and
// reports whether it did.
func (s *session) serve(w http.ResponseWriter, r *http.Request, a *authed, body []byte) bool {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) > 0 && trimmed[0] == '[' {
		// Batches (protocol versions before 2025-06-18) are the SDK's.
		return false
	}
	var m wire.Message
	if err := wire.Decode(body, &m); err != nil {
		writeMessage(w, http.StatusBadRequest, wire.ErrorMessage(nil, &jsonrpc.Error{Code: jsonrpc.CodeParseError, Message: "parse error: " + err.Error()}))
		return true
	}
	if m.JSONRPC != "2.0" || (m.Method == "" && !m.IsResponse()) {
		writeMessage(w, http.StatusBadRequest, wire.ErrorMessage(m.ID, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: `invalid request: not a JSON-RPC 2.0 message (want "jsonrpc":"2.0" and a method, or a result or error with an id)`}))
		return true
	}
	switch {
	case m.IsResponse():
		return s.answerRelayed(w, r, &m)
	case m.Method == "notifications/cancelled":
		return s.cancelRelayed(w, &m)
	case m.IsRequest() && governed[m.Method]:
		if _, ok := wire.IDKey(m.ID); !ok {
			// Refused before it is decided: a call whose id the relay
			// cannot track could be admitted, never relayed.
			writeMessage(w, http.StatusBadRequest, wire.ErrorMessage(nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid request: the id must be a string or an integer"}))
			return true
		}
		return s.serveCall(w, r, a, &m)
	case m.IsRequest() && m.Method == "tools/list":
		return s.serveList(w, r, a, &m)
	case !knownMethods[m.Method]:
		msg := wire.ErrorMessage(m.ID, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound, Message: fmt.Sprintf("method not found: %q is not an MCP method the gateway serves", m.Method)})
		status := http.StatusOK
		if !m.HasID() {
			// A notification gets no response; the HTTP status refuses it.
			status = http.StatusBadRequest
		}
		writeMessage(w, status, msg)
		return true
	}
	return false
}

// serveList answers tools/list with toolList.
func (s *session) serveList(w http.ResponseWriter, r *http.Request, a *authed, m *wire.Message) bool {
	out := s.downstream(w)
	var p struct {
		Cursor string `json:"cursor"`
	}
	if len(m.Params) > 0 && string(m.Params) != "null" && json.Unmarshal(m.Params, &p) != nil {
		out.fail(m.ID, invalidParams("tools/list params must be an object with an optional string cursor"))
		return true
	}
	if !s.gw.enter() {
		out.fail(m.ID, rpcError(CodeUpstreamUnavailable, "the gateway is shutting down", errorData{RetryAfter: 5}))
		return true
	}
	defer s.gw.wg.Done()
	ctx, release := mergeCancel(s.gw.ctx, r.Context())
	defer release()
	res, err := s.toolList(ctx, a, p.Cursor)
	if err != nil {
		out.fail(m.ID, err)
		return true
	}
	b, err := json.Marshal(res)
	if err != nil {
		out.fail(m.ID, err)
		return true
	}
	out.final(&wire.Message{ID: m.ID, Result: b})
	return true
}

// governed are the methods decided per call.
var governed = map[string]bool{"tools/call": true, "resources/read": true, "prompts/get": true}

// knownMethods are the client-to-server methods (requests and
// notifications) the gateway serves, through the SDK or itself.
var knownMethods = map[string]bool{
	"initialize": true, "ping": true,
	"tools/list": true, "tools/call": true,
	"resources/list": true, "resources/templates/list": true, "resources/read": true,
	"resources/subscribe": true, "resources/unsubscribe": true,
	"prompts/list": true, "prompts/get": true,
	"logging/setLevel": true, "completion/complete": true,
	"notifications/initialized": true, "notifications/cancelled": true,
	"notifications/progress": true, "notifications/roots/list_changed": true,
}

// speaks reports whether r is a POST the raw path may answer: JSON in, a
// client that accepts both response forms, and the session's protocol
// version if it names one.
func (s *session) speaks(r *http.Request) bool {
	if mediaType(r.Header.Get("Content-Type")) != "application/json" {
		return false
	}
	if v := r.Header.Get("Mcp-Protocol-Version"); v != "" && v != s.version {
		return false
	}
	var jsonOK, sseOK bool
	for _, v := range r.Header.Values("Accept") {
		for t := range strings.SplitSeq(v, ",") {
			switch mediaType(t) {
			case "application/json":
				jsonOK = true
			case "text/event-stream":
				sseOK = true
			case "*/*":
				jsonOK, sseOK = true, true
			}
		}
	}
	return jsonOK && sseOK
}

func mediaType(v string) string {
	t, _, _ := strings.Cut(v, ";")
	return strings.ToLower(strings.TrimSpace(t))
}

// writeMessage writes one JSON-RPC message as an application/json response.
func writeMessage(w http.ResponseWriter, status int, m *wire.Message) {
	writeEncoded(w, status, m.Encode())
}

// writeEncoded writes the encoded message b as application/json.
func writeEncoded(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
