package mcpproxytest

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestEchoServerWithSDKClient: the Go SDK client (what the gateway uses to
// reach upstreams) connects to EchoServer, lists and calls echo: in
// 2025-11-25 by default, and in 2026-07-28 when the server speaks it
// (the client asks server/discover first).
func TestEchoServerWithSDKClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		versions []string
		want     string
	}{
		{nil, Version20251125},
		{AllVersions, Version20260728},
		{[]string{Version20260728}, Version20260728},
	} {
		t.Run(tc.want, func(t *testing.T) {
			t.Parallel()
			testSDKClient(t, &EchoServer{Versions: tc.versions}, tc.want)
		})
	}
}

func testSDKClient(t *testing.T, h http.Handler, version string) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	ctx := t.Context()
	c := mcp.NewClient(&mcp.Implementation{Name: "test", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: srv.URL, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	defer cs.Close()
	if v := cs.InitializeResult().ProtocolVersion; v != version {
		t.Errorf("negotiated %q, want %s", v, version)
	}
	tools, err := cs.ListTools(ctx, nil)
	if err != nil || len(tools.Tools) != 1 || tools.Tools[0].Name != "echo" || !tools.Tools[0].Annotations.ReadOnlyHint {
		t.Fatalf("ListTools = %+v, %v", tools, err)
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hé \"x\""}})
	if err != nil || res.IsError || len(res.Content) != 1 {
		t.Fatalf("CallTool = %+v, %v", res, err)
	}
	if tc, ok := res.Content[0].(*mcp.TextContent); !ok || tc.Text != "hé \"x\"" {
		t.Errorf("CallTool content = %#v, want text %q", res.Content[0], "hé \"x\"")
	}
	if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": 3}}); err != nil || !res.IsError {
		t.Errorf("CallTool with a bad argument = %+v, %v; want a tool error", res, err)
	}
	if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "nope"}); err == nil {
		t.Error("CallTool of an unknown tool succeeded")
	}
	if version >= Version20260728 {
		return // ping is gone from 2026-07-28
	}
	if err := cs.Ping(ctx, nil); err != nil {
		t.Errorf("Ping: %v", err)
	}
}

// TestEchoServerProtocol checks EchoServer's Streamable HTTP behaviour.
func TestEchoServerProtocol(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&EchoServer{})
	defer srv.Close()
	do := func(method, sid, version, body string, hdr ...string) (int, http.Header, string) {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if sid != "" {
			req.Header.Set("Mcp-Session-Id", sid)
		}
		if version != "" {
			req.Header.Set("MCP-Protocol-Version", version)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header, string(b)
	}
	code, h, body := do("POST", "", "", `{"jsonrpc":"2.0","id":"a","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`)
	sid := h.Get("Mcp-Session-Id")
	if code != 200 || sid == "" || !strings.Contains(body, `"id":"a"`) || !strings.Contains(body, `"protocolVersion":"2025-06-18"`) || !strings.Contains(body, `"tools":{}`) {
		t.Fatalf("initialize = %d %q %s", code, sid, body)
	}
	if _, _, body := do("POST", "", "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2099-01-01"}}`); !strings.Contains(body, `"protocolVersion":"2025-11-25"`) {
		t.Errorf("initialize with an unknown version = %s, want our latest", body)
	}
	const v = "2025-06-18"
	for _, tc := range []struct {
		name, method, sid, version, body string
		hdr                              []string
		code                             int
		want                             string
	}{
		{"initialized", "POST", sid, v, `{"jsonrpc":"2.0","method":"notifications/initialized"}`, nil, 202, ""},
		{"ping", "POST", sid, v, `{"jsonrpc":"2.0","id":2,"method":"ping"}`, nil, 200, `{"jsonrpc":"2.0","id":2,"result":{}}`},
		{"list", "POST", sid, v, `{"jsonrpc":"2.0","id":3,"method":"tools/list"}`, nil, 200, `"readOnlyHint":true`},
		{"call", "POST", sid, v, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`, nil, 200,
			`{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"hi"}]}}`},
		{"unknown tool", "POST", sid, v, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"x"}}`, nil, 200, `"code":-32602`},
		{"unknown method", "POST", sid, v, `{"jsonrpc":"2.0","id":6,"method":"resources/list"}`, nil, 200, `"code":-32601`},
		{"not JSON-RPC", "POST", sid, v, `{"id":7}`, nil, 400, `"code":-32700`},
		{"response", "POST", sid, v, `{"jsonrpc":"2.0","id":9,"result":{}}`, nil, 202, ""},
		{"no session", "POST", "", v, `{"jsonrpc":"2.0","id":8,"method":"ping"}`, nil, 400, `"id":8`},
		{"unknown session", "POST", "nope", v, `{"jsonrpc":"2.0","id":8,"method":"ping"}`, nil, 404, ""},
		{"bad version", "POST", sid, "1999-01-01", `{"jsonrpc":"2.0","id":8,"method":"ping"}`, nil, 400, ""},
		{"not acceptable", "POST", sid, v, `{"jsonrpc":"2.0","id":8,"method":"ping"}`, []string{"Accept", "text/event-stream"}, 406, ""},
		{"foreign origin", "POST", sid, v, `{"jsonrpc":"2.0","id":8,"method":"ping"}`, []string{"Origin", "https://evil.example"}, 403, ""},
		{"GET", "GET", sid, v, "", nil, 405, ""},
		{"DELETE unknown", "DELETE", "nope", v, "", nil, 404, ""},
		{"DELETE", "DELETE", sid, v, "", nil, 204, ""},
		{"after DELETE", "POST", sid, v, `{"jsonrpc":"2.0","id":8,"method":"ping"}`, nil, 404, ""},
	} {
		code, _, body := do(tc.method, tc.sid, tc.version, tc.body, tc.hdr...)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: %s = %d %s, want %d with %s", tc.name, tc.method, code, body, tc.code, tc.want)
		}
	}
}

// TestEchoServerStateless checks EchoServer's 2026-07-28 behaviour: no
// session, the _meta triple and the headers validated against the body.
func TestEchoServerStateless(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(&EchoServer{Versions: AllVersions})
	defer srv.Close()
	old := httptest.NewServer(&EchoServer{})
	defer old.Close()
	only := httptest.NewServer(&EchoServer{Versions: []string{Version20260728}})
	defer only.Close()
	const (
		v    = Version20260728
		meta = `"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}`
		call = `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{` + meta + `,"name":"echo","arguments":{"text":"hi"}}}`
	)
	do := func(url, version, body string, hdr ...string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if version != "" {
			req.Header.Set("MCP-Protocol-Version", version)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
			t.Errorf("a 2026-07-28 answer with Mcp-Session-Id %q", sid)
		}
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name, url, version, body string
		hdr                      []string
		code                     int
		want                     string
	}{
		{"discover", srv.URL, v, `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{` + meta + `}}`, []string{"Mcp-Method", "server/discover"}, 200,
			`"supportedVersions":["2026-07-28","2025-11-25","2025-06-18","2025-03-26"],"capabilities":{"tools":{}}`},
		{"call", srv.URL, v, call, []string{"Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 200,
			`{"jsonrpc":"2.0","id":4,"result":{"content":[{"type":"text","text":"hi"}],"resultType":"complete"}}`},
		{"list", srv.URL, v, `{"jsonrpc":"2.0","id":5,"method":"tools/list","params":{` + meta + `}}`, []string{"Mcp-Method", "tools/list"}, 200, `"readOnlyHint":true}}],"resultType":"complete"}`},
		{"ping is gone", srv.URL, v, `{"jsonrpc":"2.0","id":6,"method":"ping","params":{` + meta + `}}`, []string{"Mcp-Method", "ping"}, 200, `"code":-32601`},
		{"initialize is gone", srv.URL, v, `{"jsonrpc":"2.0","id":6,"method":"initialize","params":{` + meta + `}}`, []string{"Mcp-Method", "initialize"}, 200, `"code":-32601`},
		{"no version header", srv.URL, "", call, []string{"Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 400, `"code":-32020`},
		{"no _meta", srv.URL, v, `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`,
			[]string{"Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 400, `"code":-32602`},
		{"header and _meta differ", srv.URL, "2026-08-01", call, []string{"Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 400, `"code":-32020`},
		{"no Mcp-Method", srv.URL, v, call, []string{"Mcp-Name", "echo"}, 400, `"code":-32020`},
		{"Mcp-Method differs", srv.URL, v, call, []string{"Mcp-Method", "tools/list", "Mcp-Name", "echo"}, 400, `"code":-32020`},
		{"no Mcp-Name", srv.URL, v, call, []string{"Mcp-Method", "tools/call"}, 400, `"code":-32020`},
		{"Mcp-Name differs", srv.URL, v, call, []string{"Mcp-Method", "tools/call", "Mcp-Name", "other"}, 400, `"code":-32020`},
		{"no capabilities", srv.URL, v, `{"jsonrpc":"2.0","id":4,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`,
			[]string{"Mcp-Method", "tools/list"}, 200, `"code":-32602`},
		{"unknown version", srv.URL, "2099-01-01", strings.ReplaceAll(call, v, "2099-01-01"), []string{"Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 400,
			`"code":-32022,"message":"unsupported protocol version \"2099-01-01\"","data":{"supported":["2026-07-28",`},
		{"a stateful server", old.URL, v, call, []string{"Mcp-Method", "tools/call", "Mcp-Name", "echo"}, 400,
			`"data":{"supported":["2025-11-25","2025-06-18","2025-03-26"],"requested":"2026-07-28"}`},
		{"notification", srv.URL, v, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}`, []string{"Mcp-Method", "notifications/cancelled"}, 202, ""},
		{"notification to a stateful server", old.URL, v, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}`, []string{"Mcp-Method", "notifications/cancelled"}, 400, "Mcp-Session-Id"},
		{"initialize where only 2026-07-28 is served", only.URL, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25"}}`, nil, 400,
			`"data":{"supported":["2026-07-28"],"requested":"2025-11-25"}`},
	} {
		code, body := do(tc.url, tc.version, tc.body, tc.hdr...)
		if code != tc.code || !strings.Contains(body, tc.want) {
			t.Errorf("%s: POST = %d %s, want %d with %s", tc.name, code, body, tc.code, tc.want)
		}
	}
}
