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
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// EchoServer is a small Streamable HTTP MCP server (MCP 2025-11-25) with
// one read-only tool, echo, that returns its text argument. It is an
// upstream for load tests and benchmarks: spec-correct for what it
// implements, and cheap, so that the measurement is not dominated by the
// upstream.
//
// POST carries one JSON-RPC message. initialize opens a session (the
// Mcp-Session-Id header of its response) and negotiates the protocol
// version; every other message needs a known session (400 without one,
// 404 for an unknown one). Requests are answered with application/json;
// notifications and responses with 202. tools/list, tools/call and ping
// are served; other methods get JSON-RPC -32601. GET is 405 (no
// server-initiated stream); DELETE ends the session (204).
//
// The zero value is ready to use, and safe for concurrent use; an
// EchoServer must not be copied after first use.
type EchoServer struct {
	sessions sync.Map // session ID → protocol version (string)
	bufs     sync.Pool
}

// fixtureVersions are the protocol versions EchoServer negotiates, newest
// first. (2024-11-05 used the older HTTP+SSE transport.)
var fixtureVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26"}

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
	if pv := r.Header.Get("MCP-Protocol-Version"); pv != "" && !supported(pv) {
		writeRPCError(w, http.StatusBadRequest, m.ID, -32600, "Bad Request: unsupported MCP-Protocol-Version "+pv)
		return
	}
	if len(m.Method) == 0 || !isCall {
		// A notification, or a response to a request we never send.
		w.WriteHeader(http.StatusAccepted)
		return
	}
	out := append(b.out[:0], `{"jsonrpc":"2.0","id":`...)
	out = append(out, m.ID...)
	switch string(m.Method) {
	case `"tools/call"`:
		var p struct {
			Name      string `json:"name"`
			Arguments struct {
				Text json.RawMessage `json:"text"`
			} `json:"arguments"`
		}
		if err := json.Unmarshal(m.Params, &p); err != nil {
			writeRPCError(w, http.StatusOK, m.ID, -32602, "invalid params")
			return
		}
		if p.Name != "echo" {
			writeRPCError(w, http.StatusOK, m.ID, -32602, "Unknown tool: "+p.Name)
			return
		}
		if t := p.Arguments.Text; len(t) < 2 || t[0] != '"' {
			// Input validation errors are tool execution errors.
			out = append(out, `,"result":{"content":[{"type":"text","text":"text must be a string"}],"isError":true}}`...)
			break
		}
		out = append(out, `,"result":{"content":[{"type":"text","text":`...)
		out = append(out, p.Arguments.Text...) // a JSON string, verbatim
		out = append(out, `}]}}`...)
	case `"tools/list"`:
		out = append(out, `,"result":{"tools":[`+echoToolJSON+`]}}`...)
	case `"ping"`:
		out = append(out, `,"result":{}}`...)
	default:
		writeRPCError(w, http.StatusOK, m.ID, -32601, "method not found")
		return
	}
	b.out = out
	w.Header()["Content-Type"] = jsonContentType
	w.Write(out)
}

var jsonContentType = []string{"application/json"}

func (s *EchoServer) initialize(w http.ResponseWriter, m *rpcIn) {
	var p struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := json.Unmarshal(m.Params, &p); err != nil || p.ProtocolVersion == "" {
		writeRPCError(w, http.StatusOK, m.ID, -32602, "invalid initialize params")
		return
	}
	// The requested version if we support it, else our latest.
	v := fixtureVersions[0]
	if supported(p.ProtocolVersion) {
		v = p.ProtocolVersion
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

func supported(v string) bool {
	for _, s := range fixtureVersions {
		if s == v {
			return true
		}
	}
	return false
}

// writeRPCError writes a JSON-RPC error response with the given HTTP
// status; id is the request's (null when unknown).
func writeRPCError(w http.ResponseWriter, status int, id json.RawMessage, code int, msg string) {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	body, _ := json.Marshal(struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", ID: id, Error: struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
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
// HTTP, stateful, SSE responses): a realistic upstream, and a costlier one.
func SDKEchoServer() http.Handler {
	up := mcp.NewServer(&mcp.Implementation{Name: "mcpproxytest-echo", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "echo", Description: "Echo text.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil)
}
