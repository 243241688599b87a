package mcpproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// FuzzSessionless posts arbitrary 2026-07-28 requests (body, the Mcp-Name
// header and a Mcp-Param-* header) to every endpoint of a gateway in
// front of a sessionless upstream and a 2025-11-25 one (whose "ask"
// parks calls), for a task that may call only "echo" and old's "ask":
// whatever arrives, the gateway answers without a server error, the
// upstream's "wipe" never runs (no encoding of a call gets past the
// decision), and the gateway keeps serving.
func FuzzSessionless(f *testing.F) {
	for _, s := range []struct{ body, name, region string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x","region":"eu"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "echo", "eu"},
		{`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"wipe","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "wipe", ""},
		{`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","Name":"wipe","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "echo", ""},
		{`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"up__wipe","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "up__wipe", ""},
		{`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"ec\u0068o","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "echo", ""},
		{`{"jsonrpc":"2.0","id":6,"method":"server/discover","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":7,"method":"tools/list","params":{"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "", ""},
		{`{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"echo","inputResponses":{"x":{}},"requestState":"s","_meta":{"io.modelcontextprotocol/protocolVersion":"2025-11-25"}}}`, "echo", ""},
		{`[{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"wipe"}}]`, "wipe", ""},
		{`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"wipe","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "wipe", ""},
		{`{"jsonrpc":"2.0","id":11,"method":"tools/call","params":{"name":"ask","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{"elicitation":{}}}}}`, "ask", ""},
		{`{"jsonrpc":"2.0","id":12,"method":"tools/call","params":{"name":"ask","requestState":"mandate.AAAA.parked","inputResponses":{"upstream-n1":{"action":"accept"}},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "ask", ""},
		{`{"jsonrpc":"2.0","id":13,"method":"tools/call","params":{"name":"wipe","requestState":"mandate.x.y","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`, "wipe", ""},
		{`{`, "", ""}, {``, "", ""}, {`null`, "", ""},
	} {
		f.Add([]byte(s.body), s.name, s.region)
	}
	var wiped atomic.Int64
	s := mcp.NewServer(&mcp.Implementation{Name: "fuzz-upstream", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
		InputSchema: json.RawMessage(`{"type":"object","properties":{"text":{"type":"string"},"region":{"type":"string","x-mcp-header":"Region"}}}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "echoed"}}}, nil
		})
	s.AddTool(&mcp.Tool{Name: "wipe", InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
		wiped.Add(1)
		return &mcp.CallToolResult{}, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "ask", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Sure?", RequestedSchema: json.RawMessage(`{"type":"object","properties":{}}`)})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: res.Action}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	f.Cleanup(srv.Close)
	// The same tools on a 2025-11-25 upstream ("old"), whose requests for
	// input park the call.
	old := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	f.Cleanup(old.Close)
	e := newEnv(f, []mcpproxy.Upstream{{Name: "up", URL: srv.URL}, {Name: "old", URL: old.URL, Timeout: 2 * time.Second}}, nil)
	ag, err := e.auth.Register(f.Context(), "fuzz", identity.TierAutonomous)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := e.auth.TaskToken(f.Context(), ag, "tool.call:up/echo tool.call:old/echo tool.call:old/ask", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	post := func(t testing.TB, path string, body []byte, name, region string) (int, string) {
		req, _ := http.NewRequest("POST", e.srv.URL+path, bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		if name != "" {
			req.Header.Set("Mcp-Name", name)
		}
		if region != "" {
			req.Header.Set("Mcp-Param-Region", region)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(b)
	}
	alive := []byte(`{"jsonrpc":"2.0","id":"alive","method":"tools/call","params":{"name":"echo","arguments":{"text":"x"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`)
	f.Fuzz(func(t *testing.T, body []byte, name, region string) {
		for _, c := range []byte(name + region) {
			if c < 0x20 && c != '\t' || c == 0x7f {
				return // not a header value net/http sends
			}
		}
		for _, path := range []string{"/mcp/up", "/mcp/old", "/mcp"} {
			if code, out := post(t, path, body, name, region); code >= 500 {
				t.Fatalf("POST %s %q (Mcp-Name %q, Mcp-Param-Region %q) = %d %s", path, body, name, region, code, out)
			}
			if n := wiped.Load(); n != 0 {
				t.Fatalf("after %q (Mcp-Name %q): the upstream's wipe ran %d times", body, name, n)
			}
		}
		if code, out := post(t, "/mcp/up", alive, "echo", ""); code != 200 || !strings.Contains(out, "echoed") {
			t.Fatalf("after %q, echo = %d %s", body, code, out)
		}
	})
}
