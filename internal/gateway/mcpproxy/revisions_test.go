package mcpproxy_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// versionUpstream is an HTTP MCP server with one read-only "echo" tool
// that records the protocol revision each call arrived in. stateless
// serves 2026-07-28 (and, per request, older revisions); stateful only
// the session-based revisions up to 2025-11-25.
type versionUpstream struct {
	url  string
	mu   sync.Mutex
	seen []string
}

func newVersionUpstream(t *testing.T, stateless bool) *versionUpstream {
	t.Helper()
	u := &versionUpstream{}
	s := mcp.NewServer(&mcp.Implementation{Name: "versions", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		v := ""
		if ip := req.Session.InitializeParams(); ip != nil {
			v = ip.ProtocolVersion
		}
		u.mu.Lock()
		u.seen = append(u.seen, v)
		u.mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

func (u *versionUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return ""
	}
	return u.seen[len(u.seen)-1]
}

// TestProtocolRevisions: clients of either revision, 2025-11-25 (with a
// session) and 2026-07-28 (sessionless), call a tool through the gateway
// on upstreams of either revision, on the upstream's endpoint and the
// aggregated one; each side speaks its own revision (the upstream records
// the one each call came in).
func TestProtocolRevisions(t *testing.T) {
	for _, upRev := range []string{"2025-11-25", "2026-07-28"} {
		up := newVersionUpstream(t, upRev == "2026-07-28")
		e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
		tok := taskToken(t, e, "agent-"+upRev, identity.TierAutonomous, "tool.call:up/*")
		for _, clientRev := range []string{"2025-11-25", "2026-07-28"} {
			for _, path := range []string{"/mcp/up", "/mcp"} {
				name := "up=" + upRev + "/client=" + clientRev + path
				t.Run(name, func(t *testing.T) {
					c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
					cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + path, HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: clientRev})
					if err != nil {
						t.Fatalf("Connect: %v", err)
					}
					defer cs.Close()
					if got := cs.InitializeResult().ProtocolVersion; got != clientRev {
						t.Errorf("negotiated %s with the gateway, want %s", got, clientRev)
					}
					tool := "echo"
					if path == "/mcp" {
						tool = "up__echo"
					}
					res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "hi"}})
					if err != nil || text(res) != "hi" {
						t.Fatalf("CallTool = %v, %v", res, err)
					}
					if got := up.last(); got != upRev {
						t.Errorf("upstream saw the call in %q, want %s", got, upRev)
					}
				})
			}
		}
	}
}

// TestProtocolRevisionsStdio: both client revisions reach a stdio
// upstream (the SDK's server, which speaks both over stdio).
func TestProtocolRevisionsStdio(t *testing.T) {
	e := newEnv(t, []mcpproxy.Upstream{stdioUpstream(t, "local")}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:local/echo")
	for _, clientRev := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(clientRev, func(t *testing.T) {
			c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
			cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/local", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: clientRev})
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != clientRev {
				t.Errorf("negotiated %s with the gateway, want %s", got, clientRev)
			}
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if err != nil || !strings.HasPrefix(text(res), "hi pid ") {
				t.Fatalf("CallTool = %v, %v", res, err)
			}
		})
	}
}
