package server

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
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
