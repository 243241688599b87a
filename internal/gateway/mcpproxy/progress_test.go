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

// personApprover is an ApprovalWaiter that asks the person in band and
// approves once the client has shown them the page (or after 5 s).
type personApprover struct{ shown chan string }

func (a personApprover) Wait(_ context.Context, r mcpproxy.Request, _ mcpproxy.Decision) (mcpproxy.Decision, error) {
	if r.AskPerson != nil {
		r.AskPerson("https://mandate.example/approvals/apr_1", "approve the call", "apr_1")
	}
	select {
	case <-a.shown:
	case <-time.After(5 * time.Second):
	}
	return mcpproxy.Decision{Effect: mcpproxy.Allow, Reasons: []string{"approved by alice"}}, nil
}

// TestHeldCallAsksInBand: on a 2025-11-25 session whose client takes
// URL-mode elicitations, a held call points the person at the approval
// page in band (raw relay and SDK path), and proceeds once approved; a
// client without URL elicitation is not asked.
func TestHeldCallAsksInBand(t *testing.T) {
	shown := make(chan string, 8)
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}, stdioUpstream(t, "proc")}, func(c *mcpproxy.Config) { c.Approvals = personApprover{shown: shown} })
	tok := taskToken(t, e, "agent", identity.TierSupervised, "tool.call")
	for _, tc := range []struct{ name, path, tool, want string }{
		{"raw relay", "/mcp/go", "delete_all", "deleted"},
		{"SDK path", "/mcp/proc", "note", "noted hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var asked []*mcp.ElicitParams
			var mu sync.Mutex
			opts := &mcp.ClientOptions{
				Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
				ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					mu.Lock()
					asked = append(asked, r.Params)
					mu.Unlock()
					shown <- r.Params.URL
					return &mcp.ElicitResult{Action: "accept"}, nil
				},
			}
			cs := connectWith(t, e, tc.path, tok, opts)
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tc.tool, Arguments: map[string]any{"text": "hi"}})
			if err != nil || text(res) != tc.want {
				t.Fatalf("held call: %v, %v", res, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(asked) != 1 || asked[0].Mode != "url" || asked[0].URL != "https://mandate.example/approvals/apr_1" || asked[0].ElicitationID != "apr_1" {
				t.Fatalf("in-band requests %+v, want one URL elicitation of the approval page", asked)
			}
		})
	}
	t.Run("a client without URL elicitation is not asked", func(t *testing.T) {
		cs := connectWith(t, e, "/mcp/go", tok, nil)
		start := time.Now()
		if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "delete_all"}); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) < 4*time.Second {
			t.Fatal("the waiter was released: the client was asked although it takes no URL elicitation")
		}
	})
}

// inBandApprover asks sessionless clients in band until the person has
// seen the page, then lets the call through.
type inBandApprover struct {
	mu    sync.Mutex
	seen  bool
	asked int
}

func (a *inBandApprover) AskInBand(_ context.Context, _ mcpproxy.Request, _ mcpproxy.Decision) (mcpproxy.InBand, bool, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.seen {
		return mcpproxy.InBand{}, false, nil
	}
	a.asked++
	return mcpproxy.InBand{URL: "https://mandate.example/approvals/apr_2", Message: "approve the call", ID: "apr_2"}, true, nil
}

func (a *inBandApprover) Wait(_ context.Context, _ mcpproxy.Request, _ mcpproxy.Decision) (mcpproxy.Decision, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if !a.seen {
		return mcpproxy.Decision{Effect: mcpproxy.Deny, Reasons: []string{"not approved"}}, nil
	}
	return mcpproxy.Decision{Effect: mcpproxy.Allow, Reasons: []string{"approved by alice"}}, nil
}

// TestHeldCallAsksInBandSessionless: a sessionless (2026-07-28) client
// that takes URL elicitations is answered at once with an input request
// of the approval page (raw relay and SDK path); its retry — the SDK
// client's, with the person's answer and the sealed requestState — is
// decided again and proceeds once approved. (A requestState the gateway
// did not seal is refused as ever: TestRequestStateBinding.)
func TestHeldCallAsksInBandSessionless(t *testing.T) {
	up := newGoUpstream(t)
	for _, tc := range []struct{ name, path, tool, want string }{
		{"raw relay", "/mcp/go", "delete_all", "deleted"},
		{"SDK path", "/mcp/proc", "note", "noted hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ap := &inBandApprover{}
			e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}, stdioUpstream(t, "proc")}, func(c *mcpproxy.Config) { c.Approvals = ap })
			tok := taskToken(t, e, "agent", identity.TierSupervised, "tool.call")
			var urls []string
			c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, &mcp.ClientOptions{
				Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
				ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					urls = append(urls, r.Params.Mode+" "+r.Params.URL)
					ap.mu.Lock()
					ap.seen = true // the person approved on the page
					ap.mu.Unlock()
					return &mcp.ElicitResult{Action: "accept"}, nil
				},
			})
			cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + tc.path, HTTPClient: bearerClient(tok), MaxRetries: -1}, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tc.tool, Arguments: map[string]any{"text": "hi"}})
			if err != nil || text(res) != tc.want {
				t.Fatalf("held call: %v, %v", res, err)
			}
			if len(urls) != 1 || urls[0] != "url https://mandate.example/approvals/apr_2" || ap.asked != 1 {
				t.Fatalf("in-band requests %q (asked %d), want the approval page once", urls, ap.asked)
			}
		})
	}
}
