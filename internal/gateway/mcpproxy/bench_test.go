package mcpproxy_test

import (
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
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

// BenchmarkRelay measures the gateway's throughput and cost per protocol
// revision: lean clients (mcpproxytest.LeanClient) call echo on
// mcpproxytest.EchoServer directly, and through the gateway
// (authentication, decision, in-memory audit, relay). Both ends are cheap, so the difference between the
// sub-benchmarks is the gateway's cost per call: ns/op is wall time per
// call with 8 callers per P, cpu-µs/op the process CPU (user+system,
// from getrusage) per call, which is the fairer figure on a shared
// machine.
func BenchmarkRelay(b *testing.B) {
	for _, rev := range []string{mcpproxytest.Version20251125, mcpproxytest.Version20260728, "2026-07-28-to-2025-11-25"} {
		// The upstream speaks the revision measured, as mcpload's does;
		// the last case is a 2026-07-28 client in front of a 2025-11-25
		// upstream (a call that could park: parked.go).
		up := httptest.NewServer(&mcpproxytest.EchoServer{})
		client := rev
		switch rev {
		case mcpproxytest.Version20260728:
			up.Config.Handler = &mcpproxytest.EchoServer{Versions: mcpproxytest.AllVersions}
		case "2026-07-28-to-2025-11-25":
			client = mcpproxytest.Version20260728
		}
		b.Cleanup(up.Close)
		e := newEnv(b, []mcpproxy.Upstream{{Name: "echo", URL: up.URL}}, func(c *mcpproxy.Config) { c.Audit = &recorder{} })
		ag, err := e.auth.Register(b.Context(), "bench", identity.TierAutonomous)
		if err != nil {
			b.Fatal(err)
		}
		tok, err := e.auth.TaskToken(b.Context(), ag, "tool.call:echo/echo", "bench")
		if err != nil {
			b.Fatal(err)
		}
		for _, bc := range []struct{ name, url, token string }{
			{"direct", up.URL, ""},
			{"gateway", e.srv.URL + "/mcp/echo", tok},
		} {
			if bc.name == "direct" && client != rev {
				continue // the upstream does not speak the client's revision
			}
			b.Run(rev+"/"+bc.name, func(b *testing.B) { mcpproxytest.BenchCalls(b, bc.url, bc.token, client) })
		}
	}
}
