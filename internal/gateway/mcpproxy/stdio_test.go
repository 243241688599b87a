package mcpproxy_test

import (
	"context"
	"io"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestBridge: a stdio-only client reaches the gateway through Bridge (what
// `mandate mcp stdio` runs), and is governed the same way.
func TestBridge(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:go/echo")
	cr, bw := io.Pipe() // bridge → client
	br, cw := io.Pipe() // client → bridge
	done := make(chan error, 1)
	go func() {
		done <- mcpproxy.Bridge(context.Background(), br, bw, mcpproxy.BridgeConfig{Endpoint: e.srv.URL + "/mcp/go", Token: tok})
	}()
	c := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.IOTransport{Reader: cr, Writer: cw}, nil)
	if err != nil {
		t.Fatal(err)
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "over stdio"}})
	if err != nil || text(res) != "over stdio" {
		t.Fatalf("echo = %v, %v", res, err)
	}
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "delete_all"})
	if code, _ := rpcCode(err); code != mcpproxy.CodeDenied {
		t.Fatalf("delete_all: %v, want denied", err)
	}
	cs.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Bridge: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Bridge did not return after the client closed")
	}
}
