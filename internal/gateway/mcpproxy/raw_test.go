package mcpproxy_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestRawJSONRPC: malformed and unknown JSON-RPC gets clear errors.
func TestRawJSONRPC(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call")
	post := func(session, body string) (int, string, string) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/mcp/go", bytes.NewReader([]byte(body)))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		if session != "" {
			req.Header.Set("Mcp-Session-Id", session)
			req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Mcp-Session-Id"), string(b)
	}
	_, session, _ := post("", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	post(session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	for _, tc := range []struct {
		name, body string
		status     int
		want       string
	}{
		{"malformed", `{"jsonrpc":`, 400, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700,`},
		{"not JSON-RPC 2.0", `{"id":7,"method":"ping"}`, 400, `"id":7,"error":{"code":-32600,`},
		{"neither request nor response", `{"jsonrpc":"2.0","id":8}`, 400, `"code":-32600`},
		{"unknown method", `{"jsonrpc":"2.0","id":2,"method":"tools/destroy"}`, 200, `{"jsonrpc":"2.0","id":2,"error":{"code":-32601,"message":"method not found: \"tools/destroy\"`},
		{"unknown notification", `{"jsonrpc":"2.0","method":"notifications/destroy"}`, 400, `"code":-32601`},
		{"call without params", `{"jsonrpc":"2.0","id":3,"method":"tools/call"}`, 200, `"id":3,"error":{"code":-32602,"message":"tools/call needs its params as an object"`},
		{"call without a name", `{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":7}}`, 200, `"id":9,"error":{"code":-32602,"message":"tools/call needs params with a tool name"`},
		{"unknown tool", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"nope"}}`, 200, `unknown tool`},
		{"arguments not an object", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":"x"}}`, 200, `"code":-32602`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, _, body := post(session, tc.body)
			if status != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("POST %s = %d %s; want %d containing %q", tc.body, status, body, tc.status, tc.want)
			}
		})
	}
	// A governed call whose id the gateway cannot track is refused before
	// it is decided (MCP ids are strings or integers).
	for _, id := range []string{`1.5`, `true`, `{"a":1}`, `[1]`, `99999999999999999999`} {
		t.Run("id "+id, func(t *testing.T) {
			decided := len(e.rec.events(audit.TypeMCPCall))
			body := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`
			status, _, got := post(session, body)
			if status != 400 || !strings.Contains(got, `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,`) {
				t.Errorf("POST %s = %d %s; want 400 and an invalid request error", body, status, got)
			}
			if n := len(e.rec.events(audit.TypeMCPCall)); n != decided {
				t.Errorf("%d decisions recorded for a call with id %s", n-decided, id)
			}
		})
	}
	// An unknown session is refused, not created.
	if status, _, _ := post("no-such-session", `{"jsonrpc":"2.0","id":6,"method":"tools/list"}`); status != 404 {
		t.Errorf("unknown session: %d, want 404", status)
	}
}
