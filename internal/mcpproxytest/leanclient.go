package mcpproxytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// A LeanClient is a lean MCP client over Streamable HTTP, speaking
// net/http directly, in either protocol revision: 2025-11-25 (a session:
// initialize, notifications/initialized, then calls with its
// Mcp-Session-Id) or 2026-07-28 (stateless: server/discover, then calls
// that each carry the protocol version and the client's capabilities and
// info in params._meta, with the MCP-Protocol-Version, Mcp-Method and
// Mcp-Name headers). Every Call sends the same tools/call, pre-encoded
// (only the id changes), so it allocates little per call and a load test
// or benchmark measures the server rather than the client. It reads
// application/json and text/event-stream responses, and ignores
// server-to-client requests and notifications on a call's stream. A
// LeanClient is not safe for concurrent use: give each loop its own.
type LeanClient struct {
	rt       http.RoundTripper // not an http.Client: it copies headers per call
	endpoint string
	token    string // Bearer task token; empty sends no Authorization
	id       string // Mcp-Session-Id (2025-11-25)
	version  string // the protocol version in use

	tmpl   *http.Request // headers of every call; copied per call
	prefix []byte        // call body up to the id
	suffix []byte        // call body after the id
	next   int64         // next request id
	resp   []byte        // response body, reused
	msg    rpcOut        // decoded response, reused
	idBuf  []byte        // the current id, encoded
	data   []byte        // joined SSE data lines, reused
}

// LeanClientConfig configures DialLeanClient.
type LeanClientConfig struct {
	// Endpoint is the MCP endpoint URL (required).
	Endpoint string
	// Transport sends the requests; nil uses http.DefaultTransport.
	Transport http.RoundTripper
	// Token, if not empty, is sent as a Bearer credential on every
	// request (a task token, for the gateway).
	Token string
	// ProtocolVersion is the revision to speak: Version20251125 (the
	// default) or Version20260728. The server must agree: a LeanClient
	// does not fall back from one to the other.
	ProtocolVersion string
	// Tool is the tool every Call invokes; empty means "echo", the
	// EchoServer's tool.
	Tool string
	// Arguments is the tool's arguments, a JSON object; empty means
	// {"text":"hello"}.
	Arguments string
	// ClientName is the clientInfo name sent in initialize or _meta;
	// empty means "mcpproxytest".
	ClientName string
}

// ErrCall is the error of a call that returned something other than a
// successful tool result (an HTTP error, a JSON-RPC error, a tool result
// with isError or one still waiting for input, or no response at all);
// the wrapping error says what came back. Transport errors are returned
// as they are.
var ErrCall = errors.New("call failed")

// DialLeanClient readies a client for cfg.Endpoint: in 2025-11-25 it opens
// a session (initialize, then notifications/initialized); in 2026-07-28
// it asks server/discover whether the server speaks the revision.
func DialLeanClient(ctx context.Context, cfg LeanClientConfig) (*LeanClient, error) {
	if cfg.Endpoint == "" {
		return nil, errors.New("mcpproxytest: LeanClientConfig.Endpoint is empty")
	}
	if cfg.Transport == nil {
		cfg.Transport = http.DefaultTransport
	}
	if cfg.ProtocolVersion == "" {
		cfg.ProtocolVersion = Version20251125
	}
	if cfg.Tool == "" {
		cfg.Tool = "echo"
	}
	if cfg.Arguments == "" {
		cfg.Arguments = `{"text":"hello"}`
	}
	if cfg.ClientName == "" {
		cfg.ClientName = "mcpproxytest"
	}
	s := &LeanClient{rt: cfg.Transport, endpoint: cfg.Endpoint, token: cfg.Token, next: 2, resp: make([]byte, 0, 1024)}
	info, err := json.Marshal(map[string]string{"name": cfg.ClientName, "version": "1"})
	if err != nil {
		return nil, err
	}
	var meta []byte // the 2026-07-28 _meta of every request, or nil
	switch cfg.ProtocolVersion {
	case Version20251125:
		err = s.initialize(ctx, info)
	case Version20260728:
		meta = []byte(`{"` + metaProtocolVersion + `":"` + Version20260728 + `","` + metaClientCapabilities + `":{},"` + metaClientInfo + `":` + string(info) + `}`)
		err = s.discover(ctx, meta)
	default:
		return nil, fmt.Errorf("mcpproxytest: LeanClientConfig.ProtocolVersion %q: want %s or %s", cfg.ProtocolVersion, Version20251125, Version20260728)
	}
	if err != nil {
		return nil, err
	}

	s.tmpl, err = http.NewRequest(http.MethodPost, s.endpoint, nil)
	if err != nil {
		return nil, err
	}
	s.setHeaders(s.tmpl.Header, s.version)
	if meta != nil {
		setMethodHeaders(s.tmpl.Header, "tools/call", cfg.Tool)
	}
	s.prefix = []byte(`{"jsonrpc":"2.0","id":`)
	params, err := json.Marshal(struct {
		Meta      json.RawMessage `json:"_meta,omitempty"`
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}{meta, cfg.Tool, json.RawMessage(cfg.Arguments)})
	if err != nil {
		return nil, fmt.Errorf("tool arguments: %w", err)
	}
	s.suffix = append(append([]byte(`,"method":"tools/call","params":`), params...), '}')
	return s, nil
}

// initialize opens a 2025-11-25 session.
func (s *LeanClient) initialize(ctx context.Context, info []byte) error {
	init := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"` + Version20251125 +
		`","capabilities":{},"clientInfo":` + string(info) + `}}`
	resp, body, err := s.post(ctx, init, "", "")
	if err != nil {
		return fmt.Errorf("initialize %s: %w", s.endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("initialize %s: %s: %s", s.endpoint, resp.Status, bytes.TrimSpace(body))
	}
	s.id = resp.Header.Get("Mcp-Session-Id")
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if err := s.decodeResult(resp.Header.Get("Content-Type"), body, []byte("1"), &res); err != nil {
		return fmt.Errorf("initialize %s: %w", s.endpoint, err)
	}
	if res.ProtocolVersion == "" || res.ProtocolVersion >= Version20260728 {
		return fmt.Errorf("initialize %s: protocolVersion %q in the result, want a stateful revision", s.endpoint, res.ProtocolVersion)
	}
	s.version = res.ProtocolVersion
	resp, body, err = s.post(ctx, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, s.version, "")
	if err != nil {
		return fmt.Errorf("notifications/initialized %s: %w", s.endpoint, err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("notifications/initialized %s: %s, want 202 Accepted: %s", s.endpoint, resp.Status, bytes.TrimSpace(body))
	}
	return nil
}

// discover asks a server whether it speaks 2026-07-28 (server/discover,
// with meta as the request's _meta).
func (s *LeanClient) discover(ctx context.Context, meta []byte) error {
	req := `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{"_meta":` + string(meta) + `}}`
	resp, body, err := s.post(ctx, req, Version20260728, "server/discover")
	if err != nil {
		return fmt.Errorf("server/discover %s: %w", s.endpoint, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("server/discover %s: %w: HTTP %s: %.300s", s.endpoint, ErrCall, resp.Status, bytes.TrimSpace(body))
	}
	var res struct {
		SupportedVersions []string `json:"supportedVersions"`
	}
	if err := s.decodeResult(resp.Header.Get("Content-Type"), body, []byte("1"), &res); err != nil {
		return fmt.Errorf("server/discover %s: %w", s.endpoint, err)
	}
	if !slices.Contains(res.SupportedVersions, Version20260728) {
		return fmt.Errorf("server/discover %s: %w: supported versions %q lack %s", s.endpoint, ErrCall, res.SupportedVersions, Version20260728)
	}
	s.version = Version20260728
	return nil
}

// SessionID is the Mcp-Session-Id the server assigned (empty if it
// assigned none, and always in 2026-07-28).
func (s *LeanClient) SessionID() string { return s.id }

// ProtocolVersion is the protocol version in use: in 2025-11-25, the one
// the server negotiated.
func (s *LeanClient) ProtocolVersion() string { return s.version }

func (s *LeanClient) setHeaders(h http.Header, version string) {
	h["Content-Type"] = []string{"application/json"}
	h["Accept"] = []string{"application/json, text/event-stream"}
	if s.token != "" {
		h["Authorization"] = []string{"Bearer " + s.token}
	}
	if s.id != "" {
		h["Mcp-Session-Id"] = []string{s.id}
	}
	if version != "" {
		h["Mcp-Protocol-Version"] = []string{version}
	}
}

// setMethodHeaders sets 2026-07-28's copies of the body's method and,
// for tools/call, the tool's name.
func setMethodHeaders(h http.Header, method, name string) {
	h["Mcp-Method"] = []string{method}
	if name != "" {
		h["Mcp-Name"] = []string{name}
	}
}

// post sends one message during setup and returns the response with its
// body read; method, if not empty, is sent in the Mcp-Method header.
func (s *LeanClient) post(ctx context.Context, body, version, method string) (*http.Response, []byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint, strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	s.setHeaders(req.Header, version)
	if method != "" {
		setMethodHeaders(req.Header, method, "")
	}
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// Close ends the session (DELETE), as a client should; in 2026-07-28
// there is none, and it does nothing. It does not close the transport's
// connections.
func (s *LeanClient) Close(ctx context.Context) error {
	if s.version >= Version20260728 {
		return nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, s.endpoint, nil)
	if err != nil {
		return err
	}
	s.setHeaders(req.Header, s.version)
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return nil
}

// Call sends one tools/call and reports whether it returned a tool result
// without isError; anything else is an error (ErrCall wrapped with what
// came back, or the transport's error).
func (s *LeanClient) Call(ctx context.Context) error {
	id := s.next
	s.next++
	// A fresh body per call, so a transport still reading an earlier one
	// never races with this call. A *bytes.Reader, as the Go SDK's client
	// sends: net/http writes a body it knows is in memory in the same
	// segment as the headers, where it flushes the headers of any other.
	body := make([]byte, 0, len(s.prefix)+20+len(s.suffix))
	body = append(body, s.prefix...)
	body = strconv.AppendInt(body, id, 10)
	idEnd := len(body)
	body = append(body, s.suffix...)
	req := s.tmpl.WithContext(ctx)
	req.Body = io.NopCloser(bytes.NewReader(body))
	req.ContentLength = int64(len(body))
	resp, err := s.rt.RoundTrip(req)
	if err != nil {
		return err
	}
	s.resp, err = readBody(s.resp[:0], resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%w: HTTP %s: %.200s", ErrCall, resp.Status, bytes.TrimSpace(s.resp))
	}
	s.idBuf = append(s.idBuf[:0], body[len(s.prefix):idEnd]...)
	var res struct {
		IsError    bool   `json:"isError"`
		ResultType string `json:"resultType"` // 2026-07-28
	}
	if err := s.decodeResult(resp.Header.Get("Content-Type"), s.resp, s.idBuf, &res); err != nil {
		return err
	}
	if res.IsError {
		return fmt.Errorf("%w: tool result has isError: %.200s", ErrCall, s.resp)
	}
	if res.ResultType != "" && res.ResultType != "complete" {
		return fmt.Errorf("%w: result of type %q, not a complete tool result: %.200s", ErrCall, res.ResultType, s.resp)
	}
	return nil
}

// rpcOut is an incoming JSON-RPC message as the client sees it. Its fields
// are reused between decodes, so they are reset before each.
type rpcOut struct {
	ID     json.RawMessage `json:"id"`
	Method json.RawMessage `json:"method"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// decodeResult finds, in a response body of the given content type
// (application/json, or text/event-stream whose data events carry
// JSON-RPC messages), the response to request id and decodes its result
// into v. A JSON-RPC error, a missing response, or a result that is not an
// object is an error.
func (s *LeanClient) decodeResult(contentType string, body, id []byte, v any) error {
	mt := contentType
	if i := strings.IndexByte(mt, ';'); i >= 0 {
		mt = mt[:i]
	}
	mt = strings.TrimSpace(mt)
	var found bool
	var err error
	switch mt {
	case "application/json":
		found, err = s.match(body, id)
	case "text/event-stream":
		found, err = s.scanEvents(body, id)
	default:
		if t, _, perr := mime.ParseMediaType(contentType); perr == nil && t == "application/json" {
			found, err = s.match(body, id)
		} else {
			return fmt.Errorf("%w: unexpected Content-Type %q", ErrCall, contentType)
		}
	}
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("%w: no response with id %s in %.200s", ErrCall, id, body)
	}
	m := &s.msg
	if len(m.Error) > 0 && string(m.Error) != "null" {
		return fmt.Errorf("%w: JSON-RPC error %s", ErrCall, m.Error)
	}
	if len(m.Result) == 0 || m.Result[0] != '{' {
		return fmt.Errorf("%w: response without a result object", ErrCall)
	}
	if err := json.Unmarshal(m.Result, v); err != nil {
		return fmt.Errorf("%w: result: %v", ErrCall, err)
	}
	return nil
}

// match decodes one JSON-RPC message into s.msg and reports whether it is
// the response to request id.
func (s *LeanClient) match(msg, id []byte) (bool, error) {
	m := &s.msg
	m.ID, m.Method, m.Result, m.Error = m.ID[:0], m.Method[:0], m.Result[:0], m.Error[:0]
	if err := json.Unmarshal(msg, m); err != nil {
		return false, fmt.Errorf("%w: bad JSON-RPC message: %v", ErrCall, err)
	}
	return len(m.Method) == 0 && bytes.Equal(m.ID, id), nil
}

// scanEvents reads server-sent events (the WHATWG format: fields per line,
// events ended by a blank line, data lines joined by newlines) and stops
// at the first whose data is the response to request id.
func (s *LeanClient) scanEvents(body, id []byte) (bool, error) {
	s.data = s.data[:0]
	var hasData bool
	for len(body) > 0 {
		var line []byte
		if i := bytes.IndexByte(body, '\n'); i >= 0 {
			line, body = body[:i], body[i+1:]
		} else {
			line, body = body, nil
		}
		line = bytes.TrimSuffix(line, []byte("\r"))
		if len(line) == 0 {
			if hasData {
				if ok, err := s.match(s.data, id); ok || err != nil {
					return ok, err
				}
			}
			s.data, hasData = s.data[:0], false
			continue
		}
		if v, ok := bytes.CutPrefix(line, []byte("data:")); ok {
			v = bytes.TrimPrefix(v, []byte(" "))
			if hasData {
				s.data = append(s.data, '\n')
			}
			s.data, hasData = append(s.data, v...), true
		}
	}
	// A stream may end without the final blank line.
	if hasData {
		return s.match(s.data, id)
	}
	return false, nil
}
