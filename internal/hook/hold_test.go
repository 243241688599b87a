package hook

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
)

// TestHoldForApproval: a tool use that needs approval waits for it
// (OnApprovalHold, the default) and is decided again by the server: an
// approval lets it run, a denial blocks it with the decider's reason, and
// nobody deciding within the hook's deadline blocks it with the approval's
// id. mandate, not the coding agent's prompt, stays the decider.
func TestHoldForApproval(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	payload := e.payload(t, "pre_mcp.json")
	for _, tc := range []struct {
		name, verb, reason string
		deadline           time.Duration
		want, because      string
	}{
		{"approved", "approve", "looks right", 10 * time.Second, AnswerAllow, "allowed"},
		{"denied", "deny", "not on a Friday", 10 * time.Second, AnswerDeny, "denied"},
		{"nobody decides", "", "", 2 * time.Second, AnswerDeny, "was not decided in time"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type result struct {
				code           int
				stdout, stderr string
			}
			done := make(chan result, 1)
			go func() {
				code, stdout, stderr := e.run(t, payload, func(c *Config) { c.Deadline = tc.deadline })
				done <- result{code, stdout, stderr}
			}()
			if tc.verb != "" {
				approvePending(t, e, tc.verb, tc.reason)
			}
			r := <-done
			if r.code != 0 {
				t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
			}
			got, reason := decision(t, r.stdout)
			if got != tc.want || !strings.Contains(reason, tc.because) {
				t.Fatalf("decision = %s (%q), want %s with %q", got, reason, tc.want, tc.because)
			}
		})
	}
	// The allow after the approval is the server's own decision.
	var allowed bool
	for _, ev := range e.events(t, audit.TypeActionDecided) {
		allowed = allowed || (ev.Resource == "tool:github/create_issue" && ev.Decision == audit.DecisionAllow)
	}
	if !allowed {
		t.Error("no allow decision on tool:github/create_issue in the ledger after the approval")
	}
}

// approvePending decides (verb: approve or deny) the first approval
// request of e's task to appear, as the approver on the admin socket.
func approvePending(t *testing.T, e *testEnv, verb, reason string) {
	t.Helper()
	var id string
	for deadline := time.Now().Add(5 * time.Second); id == ""; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no pending approval request appeared")
		}
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://mandate/admin/v1/approvals?status=pending&task="+e.taskID, nil)
		var page struct {
			Approvals []struct {
				ID string `json:"id"`
			} `json:"approvals"`
		}
		if err := harness.DoJSON(e.admin, req, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Approvals) > 0 {
			id = page.Approvals[0].ID
		}
	}
	body, _ := json.Marshal(map[string]string{"reason": reason})
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://mandate/admin/v1/approvals/"+id+"/"+verb, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if err := harness.DoJSON(e.admin, req, nil); err != nil {
		t.Fatalf("%s %s: %v", verb, id, err)
	}
}
