package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/harness"
)

func TestMCPUpstreamsConfig(t *testing.T) {
	t.Parallel()
	c, err := load(t, `
mcp:
  upstreams:
    - name: fs
      command: npx
      args: [-y, "@modelcontextprotocol/server-filesystem", /srv]
      env: [PATH=/usr/bin]
    - name: gh
      url: https://mcp.example.com/mcp
      headers: {Authorization: Bearer x}
  tool_rate: 5
`, map[string]string{"HOME": "/home/u"})
	if err != nil {
		t.Fatal(err)
	}
	u := c.MCP.Upstreams
	if len(u) != 2 || u[0].Command != "npx" || len(u[0].Args) != 3 || u[1].Headers["Authorization"] != "Bearer x" || c.MCP.ToolRate != 5 {
		t.Fatalf("MCP = %+v", c.MCP)
	}
	c, err = load(t, "", map[string]string{"HOME": "/home/u", "MANDATE_MCP_UPSTREAMS": `[{"name":"a","url":"http://127.0.0.1:1/mcp"}]`})
	if err != nil || len(c.MCP.Upstreams) != 1 || c.MCP.Upstreams[0].Name != "a" {
		t.Fatalf("from the environment: %+v, %v", c.MCP, err)
	}
	for _, bad := range []string{
		`[{"name":"a"}]`,
		`[{"name":"Bad Name","url":"http://x"}]`,
		`[{"name":"a__b","url":"http://x"}]`,
		`[{"name":"a","url":"http://x","command":"y"}]`,
	} {
		c, err := load(t, "", map[string]string{"HOME": "/home/u", "MANDATE_MCP_UPSTREAMS": bad})
		if err == nil {
			err = c.Validate()
		}
		if err == nil {
			t.Errorf("upstreams %s: accepted", bad)
		}
	}
}

// TestMCPMounted: with upstreams configured the server serves the gateway
// (401 with an RFC 9728 challenge, metadata) and the tool pin admin API.
func TestMCPMounted(t *testing.T) {
	up := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	us := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	defer us.Close()
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "up", URL: us.URL}}
	s, _ := startServer(t, cfg)
	base := s.PublicURL()
	req, _ := http.NewRequest("POST", base+"/mcp/up", strings.NewReader(`{}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(resp.Header.Get("WWW-Authenticate"), `resource_metadata="`+base+`/.well-known/oauth-protected-resource/mcp/up"`) {
		t.Fatalf("POST /mcp/up = %d %q", resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
	}
	if code, body := get(t, http.DefaultClient, base+"/.well-known/oauth-protected-resource/mcp/up"); code != 200 || !strings.Contains(body, `"authorization_servers":["`+base+`"]`) {
		t.Fatalf("metadata = %d %s", code, body)
	}
	if code, body := get(t, socketClient(s.SocketPath()), "http://mandate/admin/v1/tools"); code != 200 || !strings.Contains(body, `"tools":[]`) {
		t.Fatalf("GET /admin/v1/tools = %d %s", code, body)
	}
	if code, _ := get(t, http.DefaultClient, base+"/admin/v1/tools"); code != 401 {
		t.Fatalf("GET /admin/v1/tools over TCP without a token = %d, want 401", code)
	}
}

// TestMCPResourceIndicator: the RFC 8707 flow a client follows from the
// gateway's RFC 9728 metadata. It reads an endpoint's resource identifier
// there, exchanges its agent token for a task token with
// resource=<that identifier>, and the token works at that endpoint only:
// another upstream's endpoint answers 401 invalid_token. A resource that
// is not exactly one the gateway advertises is invalid_target.
func TestMCPResourceIndicator(t *testing.T) {
	up := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	us := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	// Closed after the server (cleanups run last first): the gateway's
	// session keeps a connection to it open until then.
	t.Cleanup(func() {
		us.CloseClientConnections()
		us.Close()
	})
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "up", URL: us.URL}, {Name: "other", URL: us.URL}}
	s, _ := startServer(t, cfg)
	base := s.PublicURL()
	ctx := t.Context()
	hc := http.DefaultClient
	ag, err := harness.RegisterAgent(ctx, harness.AdminClient(s.SocketPath()), harness.Registration{
		Name: "resourceful", Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: "autonomous",
		Entitle: []string{"tool.call:up/*", "tool.call:other/*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenURL, err := harness.TokenEndpoint(ctx, hc, base)
	if err != nil {
		t.Fatal(err)
	}
	agentToken, err := ag.Token(ctx, hc, tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	code, body := get(t, hc, base+"/.well-known/oauth-protected-resource/mcp/up")
	var md struct{ Resource string }
	if err := json.Unmarshal([]byte(body), &md); code != 200 || err != nil || md.Resource != base+"/mcp/up" {
		t.Fatalf("metadata = %d %s", code, body)
	}
	task := harness.Task{Scope: "tool.call:up/*", Purpose: "resource indicators", OnBehalfOf: "alice@example.org", Resource: md.Resource}
	tok, err := harness.StartTask(ctx, hc, tokenURL, agentToken, task)
	if err != nil {
		t.Fatalf("exchange with resource=%s: %v", md.Resource, err)
	}
	initialize := func(path string) *http.Response {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if resp := initialize("/mcp/up"); resp.StatusCode != 200 {
		t.Errorf("token for /mcp/up at /mcp/up: %d, want 200", resp.StatusCode)
	}
	for _, p := range []string{"/mcp/other", "/mcp"} {
		resp := initialize(p)
		if ch := resp.Header.Values("WWW-Authenticate"); resp.StatusCode != 401 || len(ch) != 2 || !strings.HasSuffix(ch[0], `error="invalid_token"`) {
			t.Errorf("token for /mcp/up at %s: %d %q, want 401 invalid_token", p, resp.StatusCode, ch)
		}
	}
	for _, res := range []string{base + "/mcp/up/", base + "/mcp/up/../other", base + "/mcp/UP", base + "/mcp/u", "https://evil.example/mcp/up"} {
		task.Resource = res
		_, err := harness.StartTask(ctx, hc, tokenURL, agentToken, task)
		if err == nil || !strings.Contains(err.Error(), "invalid_target") {
			t.Errorf("exchange with resource=%s: %v, want invalid_target", res, err)
		}
	}
}
