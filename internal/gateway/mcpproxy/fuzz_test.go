package mcpproxy_test

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// FuzzMessages posts arbitrary bodies to an initialized gateway session:
// whatever arrives, the gateway answers without a server error, and keeps
// serving.
func FuzzMessages(f *testing.F) {
	for _, s := range []string{
		`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`,
		`{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"delete_all"}}`,
		`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":[1]}}`,
		`{"jsonrpc":"2.0","id":6,"method":"no/such/method"}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":3}}`,
		`[{"jsonrpc":"2.0","id":7,"method":"ping"}]`,
		`{"jsonrpc":"2.0","id":8,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}`,
		`{"jsonrpc":"2.0","id":9,"method":"prompts/get","params":{"name":"x"}}`,
		`{"jsonrpc":"1.0","id":{},"method":7}`,
		`{"jsonrpc":"2.0","id":"mandate-1","result":{"action":"accept"}}`,
		`{"jsonrpc":"2.0","id":"mandate-\u0032","error":{"code":-1,"message":"no"}}`,
		`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"mandate-3","reason":"x"}}`,
		`{"jsonrpc":"2.0","id":10,"method":"tools/call","params":{"name":"go__echo"}}`,
		`{"jsonrpc":"2.0","id":11}`,
		`{`, ``, `null`,
	} {
		f.Add([]byte(s))
	}
	up := newGoUpstream(f)
	e := newEnv(f, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	ag, err := e.auth.Register(f.Context(), "fuzz", identity.TierAutonomous)
	if err != nil {
		f.Fatal(err)
	}
	tok, err := e.auth.TaskToken(f.Context(), ag, "tool.call:go/echo", "fuzz")
	if err != nil {
		f.Fatal(err)
	}
	post := func(t testing.TB, session string, body []byte) (int, string, string) {
		req, _ := http.NewRequest("POST", e.srv.URL+"/mcp/go", bytes.NewReader(body))
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
	code, session, body := post(f, "", []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"fuzz","version":"1"}}}`))
	if code != 200 || session == "" {
		f.Fatalf("initialize: %d %s", code, body)
	}
	post(f, session, []byte(`{"jsonrpc":"2.0","method":"notifications/initialized"}`))
	f.Fuzz(func(t *testing.T, msg []byte) {
		if code, _, body := post(t, session, msg); code >= 500 {
			t.Fatalf("POST %q = %d %s", msg, code, body)
		}
		if code, _, body := post(t, session, []byte(`{"jsonrpc":"2.0","id":"alive","method":"ping"}`)); code != 200 || !strings.Contains(body, `"alive"`) {
			t.Fatalf("after %q, ping = %d %s", msg, code, body)
		}
	})
}
