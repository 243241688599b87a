package server

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/heapfloor"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
)

// BenchmarkMCPGateway measures one governed tools/call through the MCP
// gateway of a real server, as mcpload's throughput phase does: lean
// clients (8 sessions per P) call mcpproxytest.EchoServer through the
// gateway, which authenticates the task token, decides the call with
// the access pipeline and the default policies, makes the decision and
// the outcome durable in the SQLite ledger and relays the call, with
// the heap floor mandate serve sets (gc.heap_floor_bytes). ns/op
// is wall time per call; cpu-µs/op is the process's CPU per call (from
// getrusage; clients and upstream included), the fairer figure on a
// shared machine. Run with -cpu 2.
func BenchmarkMCPGateway(b *testing.B) {
	up := httptest.NewServer(&mcpproxytest.EchoServer{})
	b.Cleanup(up.Close)
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = b.TempDir()
	cfg.TrustDomain = "example.org"
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "echo", URL: up.URL}}
	s := runBenchServer(b, cfg)

	a, err := harness.RegisterAgent(b.Context(), harness.AdminClient(s.SocketPath()), harness.Registration{
		Name: "bench", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: string(identity.TierAutonomous),
		Entitle: []string{"tool.call:echo/*"},
	})
	if err != nil {
		b.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	tokenURL, err := harness.TokenEndpoint(b.Context(), hc, s.PublicURL())
	if err != nil {
		b.Fatal(err)
	}
	at, err := a.Token(b.Context(), hc, tokenURL)
	if err != nil {
		b.Fatal(err)
	}
	tok, err := harness.StartTask(b.Context(), hc, tokenURL, at, harness.Task{Scope: "tool.call:echo/*", Purpose: "bench", OnBehalfOf: "alice@example.com"})
	if err != nil {
		b.Fatal(err)
	}

	// As mandate serve runs it.
	defer heapfloor.Start(uint64(cfg.GC.HeapFloorBytes)).Stop()
	mcpproxytest.BenchCalls(b, s.PublicURL()+"/mcp/echo", tok, mcpproxytest.Version20251125)
}
