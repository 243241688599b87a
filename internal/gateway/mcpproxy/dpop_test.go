package mcpproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
)

// dpopTransport sends a DPoP-bound token with a fresh proof per request.
type dpopTransport struct {
	tok string
	key ed25519.PrivateKey
}

func (d *dpopTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	u := *r.URL
	u.RawQuery, u.Fragment = "", ""
	proof, err := mcpproxytest.DPoPProof(d.key, r.Method, u.String(), d.tok)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", "DPoP "+d.tok)
	r.Header.Set("DPoP", proof)
	return http.DefaultTransport.RoundTrip(r)
}

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
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/go", HTTPClient: &http.Client{Transport: &dpopTransport{tok: tok, key: key}}}, nil)
	if err != nil {
		t.Fatalf("Connect with DPoP: %v", err)
	}
	defer cs.Close()
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "bound"}})
	if err != nil || text(res) != "bound" {
		t.Fatalf("echo with DPoP = %v, %v", res, err)
	}

	// The bound token as a plain Bearer token, or with another key's
	// proof, is refused.
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	for name, rt := range map[string]http.RoundTripper{
		"bearer":    bearerClient(tok).Transport,
		"other key": &dpopTransport{tok: tok, key: other},
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

// TestBridgeDPoP: `mandate mcp stdio` with a DPoP-bound task token.
func TestBridgeDPoP(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	ag, _ := e.auth.Register(t.Context(), "bound", identity.TierAutonomous)
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := e.auth.TaskTokenDPoP(t.Context(), ag, "tool.call:go/echo", "dpop", key)
	if err != nil {
		t.Fatal(err)
	}
	cr, bw := io.Pipe()
	br, cw := io.Pipe()
	go mcpproxy.Bridge(context.Background(), br, bw, mcpproxy.BridgeConfig{Endpoint: e.srv.URL + "/mcp/go", Token: tok, DPoPKey: key})
	c := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.IOTransport{Reader: cr, Writer: cw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "bound stdio"}})
	if err != nil || text(res) != "bound stdio" {
		t.Fatalf("echo = %v, %v", res, err)
	}
}
