package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestRepeatedDenialsStopTheTask: an agent whose calls keep being denied
// (here: tools outside its task) reaches approvals.denials_threshold; the
// alarm is recorded and, with approvals.denials_stop, the task is revoked:
// even its allowed calls are refused from then on.
func TestRepeatedDenialsStopTheTask(t *testing.T) {
	up := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	for _, name := range []string{"echo", "wipe"} {
		mcp.AddTool(up, &mcp.Tool{Name: name, Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "ran " + name}}}, nil, nil
		})
	}
	us := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	t.Cleanup(us.Close)
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "up", URL: us.URL}}
	cfg.Approvals.DenialsThreshold, cfg.Approvals.DenialsWindow, cfg.Approvals.DenialsStop = 3, time.Minute, true
	s, _ := startServer(t, cfg)
	_, tok := agentTask(t, s, harness.Registration{Name: "pusher", Tier: string(identity.TierAutonomous), Entitle: []string{"tool.call:up/*"}},
		harness.Task{Scope: "tool.call:up/echo", Purpose: "echo"})
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: s.PublicURL() + "/mcp/up", HTTPClient: &http.Client{Transport: bearer{tok}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"}); err != nil || res.IsError {
		t.Fatalf("echo (in scope): %v, %v", res, err)
	}
	for range 3 {
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "wipe"}); err == nil || !strings.Contains(err.Error(), "denied") {
			t.Fatalf("wipe (outside the task): %v, want denied", err)
		}
	}
	// The alarm is raised in the background; the revocation follows.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo"})
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("echo still allowed 5 s after the third denial: the task was not stopped")
		}
	}
	evs, err := s.ledger.Events(t.Context(), audit.Query{Type: "task.denials_exceeded"})
	if err != nil || len(evs) != 1 {
		t.Fatalf("task.denials_exceeded events: %d, %v; want 1", len(evs), err)
	}
	// Tokens are refused before the stop is recorded: wait for its event.
	var revoked []*audit.Event
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if revoked, _ = s.ledger.Events(t.Context(), audit.Query{Type: audit.TypeTaskRevoked}); len(revoked) > 0 {
			break
		}
	}
	if len(revoked) != 1 || !strings.Contains(revoked[0].Reason, "denied") {
		t.Fatalf("task.revoked events %+v, want the revocation with its reason", revoked)
	}
}
