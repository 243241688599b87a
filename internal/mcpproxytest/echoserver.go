package mcpproxytest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// EchoServer is a small Streamable HTTP MCP server with one read-only
// tool, echo, that returns its text argument. It is an upstream for load
// tests and benchmarks: spec-correct for what it implements, and cheap, so
// that the measurement is not dominated by the upstream.
//
// POST carries one JSON-RPC message. Requests are answered with
// application/json; notifications and responses with 202. tools/list and
// tools/call are served; other methods get JSON-RPC -32601. GET is 405 (no
// server-initiated stream).
//
// It speaks the revisions in Versions. In the stateful ones (2025-11-25
// and older) initialize opens a session (the Mcp-Session-Id header of its
// response) and negotiates the protocol version; every other message needs
// a known session (400 without one, 404 for an unknown one); ping is
// served; DELETE ends the session (204). In 2026-07-28, which is
// stateless, there is no initialize and no session: every request carries
// the protocol version, the client's capabilities and optionally its info
// in params._meta, the MCP-Protocol-Version header matching it, and the
// Mcp-Method header (and Mcp-Name for tools/call) matching the body;
// server/discover says which revisions are served. A request for a
// revision it does not serve is refused with -32022 listing those it does.
//
// The zero value is ready to use, and safe for concurrent use; an
// EchoServer must not be copied after first use.
type EchoServer struct {
	// Versions are the protocol revisions served, newest first; empty
	// means the stateful ones (StatefulVersions). Set it to
	// AllVersions to serve 2026-07-28 too.
	Versions []string

	sessions sync.Map // session ID → protocol version (string)
	bufs     sync.Pool
}

// The protocol revisions mcpproxytest's servers and clients speak.
const (
	// Version20260728 is stateless Streamable HTTP (per-request _meta,
	// server/discover).
	Version20260728 = "2026-07-28"
	// Version20251125 is the latest stateful revision (initialize,
	// Mcp-Session-Id).
	Version20251125 = "2025-11-25"
)

// StatefulVersions are the revisions an EchoServer serves by default,
// newest first. (2024-11-05 used the older HTTP+SSE transport.)
var StatefulVersions = []string{Version20251125, "2025-06-18", "2025-03-26"}

// AllVersions are all the revisions EchoServer implements, newest first.
var AllVersions = append([]string{Version20260728}, StatefulVersions...)

// Keys of a 2026-07-28 request's params._meta.
const (
	metaProtocolVersion    = "io.modelcontextprotocol/protocolVersion"
	metaClientCapabilities = "io.modelcontextprotocol/clientCapabilities"
	metaClientInfo         = "io.modelcontextprotocol/clientInfo"
	metaServerInfo         = "io.modelcontextprotocol/serverInfo"
)

// JSON-RPC error codes of MCP's Streamable HTTP transport.
const (
	codeHeaderMismatch             = -32020
	codeUnsupportedProtocolVersion = -32022
)

// maxFixtureBody bounds a request body.
const maxFixtureBody = 1 << 20

const echoToolJSON = `{"name":"echo","description":"Echo text.",` +
	`"inputSchema":{"type":"object","properties":{"text":{"type":"string"}},"required":["text"]},` +
	`"annotations":{"readOnlyHint":true}}`

// rpcIn is an incoming JSON-RPC message. Its fields are reused between
// decodes, so they are reset before each.
type rpcIn struct {
	JSONRPC json.RawMessage `json:"jsonrpc"`
	ID      json.RawMessage `json:"id"`
	Method  json.RawMessage `json:"method"`
	Params  json.RawMessage `json:"params"`
}

func (m *rpcIn) reset() {
	m.JSONRPC, m.ID, m.Method, m.Params = m.JSONRPC[:0], m.ID[:0], m.Method[:0], m.Params[:0]
}

type fixtureBuf struct {
	in  []byte
	out []byte
	msg rpcIn
}

var _ http.Handler = (*EchoServer)(nil)

// ServeHTTP implements http.Handler.
func (s *EchoServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// DNS rebinding protection (2025-11-25, transports §security): a
	// browser's cross-origin request carries an Origin we do not serve.
	if o := r.Header.Get("Origin"); o != "" {
		if u, err := url.Parse(o); err != nil || u.Host != r.Host {
			http.Error(w, "forbidden origin", http.StatusForbidden)
			return
		}
	}
	switch r.Method {
	case http.MethodPost:
		s.post(w, r)
	case http.MethodDelete:
		id := r.Header.Get("Mcp-Session-Id")
		if id == "" {
			http.Error(w, "missing Mcp-Session-Id", http.StatusBadRequest)
			return
		}
		if _, ok := s.sessions.LoadAndDelete(id); !ok {
			http.Error(w, "session not found", http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		// No server-initiated SSE stream: GET is 405, as the spec allows.
		w.Header().Set("Allow", "POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

func (s *EchoServer) post(w http.ResponseWriter, r *http.Request) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		http.Error(w, "Content-Type must be application/json", http.StatusUnsupportedMediaType)
		return
	}
	// Responses are application/json; the client must accept it.
	if a := r.Header.Get("Accept"); !strings.Contains(a, "application/json") && !strings.Contains(a, "*/*") && !strings.Contains(a, "application/*") {
		http.Error(w, "Accept must include application/json", http.StatusNotAcceptable)
		return
	}
	b, _ := s.bufs.Get().(*fixtureBuf)
	if b == nil {
		b = &fixtureBuf{in: make([]byte, 0, 512), out: make([]byte, 0, 512)}
	}
	defer s.bufs.Put(b)
	var err error
	if b.in, err = readBody(b.in[:0], http.MaxBytesReader(w, r.Body, maxFixtureBody)); err != nil {
		http.Error(w, "cannot read body", http.StatusBadRequest)
		return
	}
	m := &b.msg
	m.reset()
	if err := json.Unmarshal(b.in, m); err != nil || string(m.JSONRPC) != `"2.0"` {
		writeRPCError(w, http.StatusBadRequest, nil, -32700, "parse error: not a JSON-RPC 2.0 message")
		return
	}
	isCall := len(m.ID) > 0 && string(m.ID) != "null"
	var p echoParams
	if isCall && len(m.Params) > 0 {
		if err := json.Unmarshal(m.Params, &p); err != nil {
			writeRPCError(w, http.StatusOK, m.ID, -32602, "invalid params")
			return
		}
	}
	// A call selects 2026-07-28 by its header or its _meta, as the Go SDK
	// decides; notifications carry no _meta triple.
	header := r.Header.Get("MCP-Protocol-Version")
	if isCall && (header >= Version20260728 || p.Meta.ProtocolVersion != "") {
		s.stateless(w, r, m, &p, b)
		return
	}
	if !isCall && header >= Version20260728 && s.serves(header) {
		// A notification (or response) without a session: nothing to do.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if string(m.Method) == `"initialize"` {
		if !isCall {
			writeRPCError(w, http.StatusBadRequest, nil, -32600, "initialize must be a request")
			return
		}
		s.initialize(w, m)
		return
	}
	sid := r.Header.Get("Mcp-Session-Id")
	if sid == "" {
		// A JSON-RPC body, so that clients probing newer protocol
		// methods (server/discover) fall back to initialize.
		writeRPCError(w, http.StatusBadRequest, m.ID, -32600, "Bad Request: missing Mcp-Session-Id (initialize first)")
		return
	}
	if _, ok := s.sessions.Load(sid); !ok {
		// Plain text, like the Go SDK: clients treat it as a lost session.
		http.Error(w, "session not found", http.StatusNotFound)
		return
	}
	if header != "" && !s.serves(header) {
		writeRPCError(w, http.StatusBadRequest, m.ID, -32600, "Bad Request: unsupported MCP-Protocol-Version "+header)
		return
	}
	if len(m.Method) == 0 || !isCall {
		// A notification, or a response to a request we never send.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	if string(m.Method) == `"ping"` {
		s.reply(w, b, m.ID, `{}`)
		return
	}
	s.serveTools(w, b, m, &p, "")
}

// echoParams are the params of a call as EchoServer reads them: the
// 2026-07-28 _meta, and tools/call's.
type echoParams struct {
	Meta struct {
		ProtocolVersion    string          `json:"io.modelcontextprotocol/protocolVersion"`
		ClientCapabilities json.RawMessage `json:"io.modelcontextprotocol/clientCapabilities"`
	} `json:"_meta"`
	Name      string `json:"name"`
	Arguments struct {
		Text json.RawMessage `json:"text"`
	} `json:"arguments"`
}

// stateless serves a 2026-07-28 call: no session, the version and the
// client's capabilities in _meta, the headers matching the body.
func (s *EchoServer) stateless(w http.ResponseWriter, r *http.Request, m *rpcIn, p *echoParams, b *fixtureBuf) {
	header, meta := r.Header.Get("MCP-Protocol-Version"), p.Meta.ProtocolVersion
	switch {
	case header == "":
		writeRPCError(w, http.StatusBadRequest, m.ID, codeHeaderMismatch, "MCP-Protocol-Version header is required with _meta "+metaProtocolVersion)
		return
	case meta == "":
		writeRPCError(w, http.StatusBadRequest, m.ID, -32602, "missing _meta "+metaProtocolVersion)
		return
	case header != meta:
		writeRPCError(w, http.StatusBadRequest, m.ID, codeHeaderMismatch, "MCP-Protocol-Version header "+header+" does not match _meta "+meta)
		return
	case !s.serves(meta):
		s.unsupported(w, m.ID, meta)
		return
	}
	var method string
	if err := json.Unmarshal(m.Method, &method); err != nil || method == "" {
		writeRPCError(w, http.StatusBadRequest, m.ID, -32600, "invalid request: no method")
		return
	}
	if h := r.Header.Get("Mcp-Method"); h != method {
		writeRPCError(w, http.StatusBadRequest, m.ID, codeHeaderMismatch, "Mcp-Method header "+strconv.Quote(h)+" does not match the body's method "+strconv.Quote(method))
		return
	}
	if method == "tools/call" && r.Header.Get("Mcp-Name") != p.Name {
		writeRPCError(w, http.StatusBadRequest, m.ID, codeHeaderMismatch, "Mcp-Name header "+strconv.Quote(r.Header.Get("Mcp-Name"))+" does not match the tool's name "+strconv.Quote(p.Name))
		return
	}
	if c := p.Meta.ClientCapabilities; len(c) == 0 || c[0] != '{' {
		writeRPCError(w, http.StatusOK, m.ID, -32602, "missing or invalid _meta "+metaClientCapabilities)
		return
	}
	if method == "server/discover" {
		versions, _ := json.Marshal(s.versions())
		s.reply(w, b, m.ID, `{"resultType":"complete","_meta":{"`+metaServerInfo+`":{"name":"mcpproxytest-echo","version":"1"}},`+
			`"supportedVersions":`+string(versions)+`,"capabilities":{"tools":{}}}`)
		return
	}
	// initialize, ping and the rest are gone from this revision.
	s.serveTools(w, b, m, p, `,"resultType":"complete"`)
}

// serveTools answers tools/call and tools/list (and -32601 to anything
// else); extra is added to the result object.
func (s *EchoServer) serveTools(w http.ResponseWriter, b *fixtureBuf, m *rpcIn, p *echoParams, extra string) {
	out := append(b.out[:0], `{"jsonrpc":"2.0","id":`...)
	out = append(out, m.ID...)
	switch string(m.Method) {
	case `"tools/call"`:
		if p.Name != "echo" {
			writeRPCError(w, http.StatusOK, m.ID, -32602, "Unknown tool: "+p.Name)
			return
		}
		if t := p.Arguments.Text; len(t) < 2 || t[0] != '"' {
			// Input validation errors are tool execution errors.
			out = append(out, `,"result":{"content":[{"type":"text","text":"text must be a string"}],"isError":true`...)
			break
		}
		out = append(out, `,"result":{"content":[{"type":"text","text":`...)
		out = append(out, p.Arguments.Text...) // a JSON string, verbatim
		out = append(out, `}]`...)
	case `"tools/list"`:
		out = append(out, `,"result":{"tools":[`+echoToolJSON+`]`...)
	default:
		writeRPCError(w, http.StatusOK, m.ID, -32601, "method not found")
		return
	}
	out = append(append(out, extra...), `}}`...)
	b.out = out
	w.Header()["Content-Type"] = jsonContentType
	w.Write(out)
}

// reply writes a response with the given result.
func (s *EchoServer) reply(w http.ResponseWriter, b *fixtureBuf, id json.RawMessage, result string) {
	out := append(b.out[:0], `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(append(append(out, `,"result":`...), result...), '}')
	b.out = out
	w.Header()["Content-Type"] = jsonContentType
	w.Write(out)
}

var jsonContentType = []string{"application/json"}

// unsupported refuses a request for a revision not served (SEP-2575's
// UnsupportedProtocolVersionError), listing those that are.
func (s *EchoServer) unsupported(w http.ResponseWriter, id json.RawMessage, requested string) {
	data, _ := json.Marshal(struct {
		Supported []string `json:"supported"`
		Requested string   `json:"requested"`
	}{s.versions(), requested})
	writeRPCErrorData(w, http.StatusBadRequest, id, codeUnsupportedProtocolVersion, "unsupported protocol version "+strconv.Quote(requested), data)
}

func (s *EchoServer) initialize(w http.ResponseWriter, m *rpcIn) {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(m.Params, &p); err != nil || p.ProtocolVersion == "" {
		writeRPCError(w, http.StatusOK, m.ID, -32602, "invalid initialize params")
		return
	}
	// The requested version if we serve it, else our latest stateful one.
	v := p.ProtocolVersion
	if v >= Version20260728 || !s.serves(v) {
		v = ""
		for _, sv := range s.versions() {
			if sv < Version20260728 {
				v = sv
				break
			}
		}
	}
	if v == "" {
		s.unsupported(w, m.ID, p.ProtocolVersion)
		return
	}
	sid := rand.Text()
	s.sessions.Store(sid, v)
	w.Header().Set("Mcp-Session-Id", sid)
	w.Header().Set("Content-Type", "application/json")
	var out bytes.Buffer
	out.WriteString(`{"jsonrpc":"2.0","id":`)
	out.Write(m.ID)
	out.WriteString(`,"result":{"protocolVersion":"` + v + `","capabilities":{"tools":{}},"serverInfo":{"name":"mcpproxytest-echo","version":"1"}}}`)
	w.Write(out.Bytes())
}

func (s *EchoServer) versions() []string {
	if len(s.Versions) == 0 {
		return StatefulVersions
	}
	return s.Versions
}

func (s *EchoServer) serves(v string) bool { return slices.Contains(s.versions(), v) }

// writeRPCError writes a JSON-RPC error response with the given HTTP
// status; id is the request's (null when unknown).
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	writeRPCErrorData(w, status, id, code, msg, nil)
}

// writeRPCErrorData is writeRPCError with the error's data (omitted if nil).
func writeRPCErrorData(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string, data json.RawMessage) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	type rpcError struct {
		Code    int             `json:"code"`
		Message string          `json:"message"`
		Data    json.RawMessage `json:"data,omitempty"`
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   rpcError        `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: rpcError{code, msg, data}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

// readBody appends all of r to buf.
func readBody(buf []byte, r io.Reader) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf, nil
			}
			return buf, err
		}
	}
}

type echoIn struct {
	Text string `json:"text"`
}

// SDKEchoServer is EchoServer's echo tool on a Go SDK server (Streamable
// HTTP, stateful, SSE responses): a realistic upstream, and a costlier
// one. Being stateful, it speaks 2025-11-25 and older only.
func SDKEchoServer() http.Handler { return sdkEchoServer(nil) }

// SDKStatelessEchoServer is SDKEchoServer in the SDK's stateless mode,
// which speaks 2026-07-28 (and serves the older revisions without
// sessions).
func SDKStatelessEchoServer() http.Handler {
	return sdkEchoServer(&mcp.StreamableHTTPOptions{Stateless: true})
}

func sdkEchoServer(opts *mcp.StreamableHTTPOptions) http.Handler {
	up := mcp.NewServer(&mcp.Implementation{Name: "mcpproxytest-echo", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "echo", Description: "Echo text.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, opts)
}
