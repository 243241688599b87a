package approval_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
)

// TestWebhookLinksToThePage: the messages of a new request and of an
// escalation (to the main webhook and the escalation contact's) are
// Slack incoming-webhook JSON, signed, and link to the request's approval
// page; a decision's message does not ask for a decision.
func TestWebhookLinksToThePage(t *testing.T) {
	secret := []byte("s3cret")
	got := make(chan string, 8)
	recv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		ts, _ := strconv.ParseInt(r.Header.Get(approval.HeaderTimestamp), 10, 64)
		if r.Header.Get(approval.HeaderSignature) != approval.Sign(secret, ts, body) {
			t.Errorf("unsigned delivery %s", body)
		}
		var msg map[string]string
		if err := json.Unmarshal(body, &msg); err != nil || len(msg) != 1 || msg["text"] == "" {
			t.Errorf("not Slack incoming-webhook JSON: %s", body)
		}
		got <- r.URL.Path + " " + msg["text"]
	}))
	defer recv.Close()
	rec := &memRecorder{}
	w, err := approval.NewWebhooks(approval.WebhookConfig{
		URL: recv.URL + "/main", Escalations: map[string]string{"oncall@example.org": recv.URL + "/oncall"},
		Secret: secret, Recorder: rec, Link: func(id approval.ID) string { return "https://mandate.example/approvals/" + string(id) },
	})
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = w.Run(t.Context()) }()
	r := &approval.Request{ID: approval.NewID(), Agent: "spiffe://example.org/agent/deployer", Action: "tool.call", Resource: "up/deploy",
		Escalation: "oncall@example.org", AgentOwner: "alice@example.org", Status: approval.StatusPending,
		CreatedAt: time.Now(), ExpiresAt: time.Now().Add(time.Minute), Approvals: []string{"step-up"}}
	link := "<https://mandate.example/approvals/" + string(r.ID) + "|"
	next := func() string {
		select {
		case s := <-got:
			return s
		case <-time.After(10 * time.Second):
			t.Fatal("no delivery")
			return ""
		}
	}
	w.Notify(approval.Notice{Kind: "requested", Request: r})
	if m := next(); !strings.HasPrefix(m, "/main ") || !strings.Contains(m, "Approval needed") || !strings.Contains(m, link) {
		t.Errorf("request message %q does not link to the page", m)
	}
	w.Notify(approval.Notice{Kind: "escalated", Request: r})
	paths := map[string]bool{}
	for range 2 {
		m := next()
		path, _, _ := strings.Cut(m, " ")
		paths[path] = true
		if !strings.Contains(m, "Escalated to oncall@example.org") || !strings.Contains(m, link) {
			t.Errorf("escalation message %q does not link to the page", m)
		}
	}
	if !paths["/main"] || !paths["/oncall"] {
		t.Errorf("escalation delivered to %v, want the main webhook and the contact's", paths)
	}
	d := *r
	d.Status, d.Decider = approval.StatusApproved, "alice@example.org"
	w.Notify(approval.Notice{Kind: "approved", Request: &d})
	if m := next(); strings.Contains(m, link) || !strings.Contains(m, "Approval approved") {
		t.Errorf("decision message %q", m)
	}
}
