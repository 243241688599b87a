package server

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// TestInBandApprovalEndToEnd: an MCP client on each protocol revision
// receives the in-band approval request — the approval page, by URL-mode
// elicitation — for an autonomous agent's destructive call; the person
// (the agent's owner, for a task on bob's behalf) approves, and the call
// proceeds: held and released on 2025-11-25, answered with input_required
// and decided again on its retry on 2026-07-28.
func TestInBandApprovalEndToEnd(t *testing.T) {
	e := newApprovalEnv(t, nil)
	tok := e.token("bob@example.org")
	for _, tc := range []struct{ revision, env string }{{"2025-11-25", "staging"}, {"2026-07-28", "prod"}} {
		t.Run(tc.revision, func(t *testing.T) {
			var mu sync.Mutex
			var shown []string
			var approveErr error
			opts := &mcp.ClientOptions{
				Capabilities: &mcp.ClientCapabilities{Elicitation: &mcp.ElicitationCapabilities{URL: &mcp.URLElicitationCapabilities{}}},
				ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					// The person opens the page and approves there (here:
					// the admin API, as alice).
					req := e.pending(t, tc.env)
					code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(req.ID)+"/approve", map[string]string{"digest": req.ArgsDigest, "reason": "in band"}, nil)
					mu.Lock()
					shown = append(shown, r.Params.Mode+" "+r.Params.URL+" "+r.Params.ElicitationID+" "+string(req.ID))
					if code != http.StatusOK {
						approveErr = &httpError{code, body}
					}
					mu.Unlock()
					return &mcp.ElicitResult{Action: "accept"}, nil
				},
			}
			var copts *mcp.ClientSessionOptions
			if tc.revision == "2025-11-25" {
				copts = &mcp.ClientSessionOptions{ProtocolVersion: tc.revision}
			}
			cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, opts).Connect(t.Context(),
				&mcp.StreamableClientTransport{Endpoint: e.base + "/mcp/up", HTTPClient: &http.Client{Transport: bearer{tok}}, MaxRetries: -1}, copts)
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"env": tc.env}})
			if err != nil || res.IsError || len(res.Content) == 0 || res.Content[0].(*mcp.TextContent).Text != "deployed "+tc.env {
				t.Fatalf("the held call: %+v, %v", res, err)
			}
			mu.Lock()
			defer mu.Unlock()
			if approveErr != nil {
				t.Fatal(approveErr)
			}
			if len(shown) != 1 {
				t.Fatalf("in-band requests %q, want one", shown)
			}
			f := strings.Fields(shown[0])
			if len(f) != 4 || f[0] != "url" || f[1] != e.base+"/approvals/"+f[3] || f[2] != f[3] {
				t.Fatalf("in-band request %q, want a URL elicitation of the request's approval page", shown[0])
			}
		})
	}
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return http.StatusText(e.code) + ": " + e.body }
