package mcpproxy_test

import (
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// BenchmarkCall compares one tools/call directly to an upstream (Go SDK
// over Streamable HTTP) with the same call through the gateway; the
// difference is the gateway's cost per call (its SDK server and client
// hop, authentication, decision, audit, pin check).
func BenchmarkCall(b *testing.B) {
	up := newGoUpstream(b)
	e := newEnv(b, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, func(c *mcpproxy.Config) { c.Audit = &recorder{} })
	ag, _ := e.auth.Register(b.Context(), "bench", identity.TierAutonomous)
	tok, err := e.auth.TaskToken(b.Context(), ag, "tool.call:go/echo", "bench")
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct{ name, url string }{{"direct", up.url}, {"gateway", e.srv.URL + "/mcp/go"}} {
		b.Run(bc.name, func(b *testing.B) {
			c := mcp.NewClient(&mcp.Implementation{Name: "bench", Version: "1"}, nil)
			cs, err := c.Connect(b.Context(), &mcp.StreamableClientTransport{Endpoint: bc.url, HTTPClient: bearerClient(tok), DisableStandaloneSSE: true}, nil)
			if err != nil {
				b.Fatal(err)
			}
			defer cs.Close()
			args := map[string]any{"text": "hi"}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if _, err := cs.CallTool(b.Context(), &mcp.CallToolParams{Name: "echo", Arguments: args}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
