package mcpproxy_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// heldApprover is an ApprovalWaiter that reports it is waiting twice,
// then approves.
type heldApprover struct{}

func (heldApprover) Wait(_ context.Context, r mcpproxy.Request, _ mcpproxy.Decision) (mcpproxy.Decision, error) {
	if r.Progress != nil {
		r.Progress("waiting for approval apr_1")
		r.Progress("still waiting for approval apr_1 (10s)")
	}
	return mcpproxy.Decision{Effect: mcpproxy.Allow, Reasons: []string{"approved by alice"}}, nil
}

// TestHeldCallProgress: a call held for approval tells a client that
// asked for progress what it waits for, on the raw relay (HTTP upstream)
// and the SDK path (stdio upstream), each protocol revision; a client that
// did not ask gets no notification; the call then completes.
func TestHeldCallProgress(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}, stdioUpstream(t, "proc")}, func(c *mcpproxy.Config) { c.Approvals = heldApprover{} })
	tok := taskToken(t, e, "agent", identity.TierSupervised, "tool.call")
	// Unannotated tools, so destructive: a supervised agent's call is
	// held for approval.
	for _, tc := range []struct {
		name, path, tool, want string
		pin2025                bool
	}{
		{"raw relay 2025-11-25", "/mcp/go", "delete_all", "deleted", true},
		{"raw relay 2026-07-28", "/mcp/go", "delete_all", "deleted", false},
		{"SDK path 2025-11-25", "/mcp/proc", "note", "noted hi", true},
		{"SDK path 2026-07-28", "/mcp/proc", "note", "noted hi", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var got []string
			opts := &mcp.ClientOptions{ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
				mu.Lock()
				got = append(got, r.Params.Message)
				mu.Unlock()
			}}
			var cs *mcp.ClientSession
			if tc.pin2025 {
				cs = connectWith(t, e, tc.path, tok, opts)
			} else {
				c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, opts)
				var err error
				if cs, err = c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + tc.path, HTTPClient: bearerClient(tok), MaxRetries: -1}, nil); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cs.Close() })
			}
			// Without a progress token: no notification.
			args := map[string]any{"text": "hi"}
			if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tc.tool, Arguments: args}); err != nil {
				t.Fatalf("held call: %v", err)
			}
			mu.Lock()
			if len(got) != 0 {
				t.Errorf("notifications without a progress token: %q", got)
			}
			mu.Unlock()
			p := &mcp.CallToolParams{Name: tc.tool, Arguments: args}
			p.SetProgressToken("held-1")
			res, err := cs.CallTool(t.Context(), p)
			if err != nil || text(res) != tc.want {
				t.Fatalf("held call with a progress token: %v, %v", res, err)
			}
			// The client hands notifications to its handler on their own.
			for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				mu.Lock()
				n := len(got)
				mu.Unlock()
				if n >= 2 || time.Now().After(deadline) {
					break
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) != 2 || got[0] != "waiting for approval apr_1" || !strings.HasPrefix(got[1], "still waiting") {
				t.Fatalf("progress while held: %q, want the waiter's two messages", got)
			}
		})
	}
}
