package mcpproxy_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestDPoP: the gateway serves a DPoP-bound task token presented with a
// fresh proof per request (as the agent-side mcpbridge.Transport sends
// it), and refuses it as a plain Bearer token or with another key's
// proof.
func TestDPoP(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	ctx := t.Context()
	ag, err := e.auth.Register(ctx, "bound", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := e.auth.TaskTokenDPoP(ctx, ag, "tool.call:go/echo", "dpop", key)
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "dpop-agent", Version: "1"}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/go", HTTPClient: &http.Client{Transport: &mcpbridge.Transport{Token: tok, DPoPKey: key}}}, nil)
	if err != nil {
		t.Fatalf("Connect with DPoP: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "bound"}})
	if err != nil || text(res) != "bound" {
		t.Fatalf("echo with DPoP = %v, %v", res, err)
	}

	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for name, rt := range map[string]http.RoundTripper{
		"bearer":    bearerClient(tok).Transport,
		"other key": &mcpbridge.Transport{Token: tok, DPoPKey: other},
	} {
		req, _ := http.NewRequest("POST", e.srv.URL+"/mcp/go", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := rt.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 401 {
			t.Errorf("%s: status %d, want 401", name, resp.StatusCode)
		}
	}
}
