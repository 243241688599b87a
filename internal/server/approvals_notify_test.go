package server

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// receiver is a webhook endpoint that is down for its first fails
// deliveries and slow (delay) for every one; it checks signatures.
type receiver struct {
	t      *testing.T
	secret []byte
	fails  int
	delay  time.Duration

	mu       sync.Mutex
	attempts int
	texts    []string
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	ts, _ := strconv.ParseInt(r.Header.Get(approval.HeaderTimestamp), 10, 64)
	if got := r.Header.Get(approval.HeaderSignature); got != approval.Sign(rc.secret, ts, body) || time.Since(time.Unix(ts, 0)) > time.Minute {
		rc.t.Errorf("webhook signature %q does not verify", got)
	}
	time.Sleep(rc.delay)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.attempts++
	if rc.attempts <= rc.fails {
		http.Error(w, "down", http.StatusBadGateway)
		return
	}
	var msg struct{ Text string }
	if err := json.Unmarshal(body, &msg); err != nil || msg.Text == "" {
		rc.t.Errorf("webhook body %s is not Slack incoming-webhook JSON", body)
	}
	rc.texts = append(rc.texts, msg.Text)
}

func (rc *receiver) received(sub string) bool {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, s := range rc.texts {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

func eventually(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("never: %s", what)
}

// TestWebhooksEscalationAndOffboarding: a receiver that is down and slow
// gets every notice in the end (retried, signed) while decisions do not
// wait for it; an undecided request escalates to the agent's escalation
// contact's webhook; offboarding the owner leaves no active agent, task
// or pending approval of theirs, and the held call fails.
func TestWebhooksEscalationAndOffboarding(t *testing.T) {
	secret := []byte("webhook-secret")
	main := &receiver{t: t, secret: secret, fails: 2, delay: 300 * time.Millisecond}
	oncall := &receiver{t: t, secret: secret}
	ms, os2 := httptest.NewServer(main), httptest.NewServer(oncall)
	defer ms.Close()
	defer os2.Close()
	e := newApprovalEnv(t, func(c *Config) {
		f := filepath.Join(filepath.Dir(c.DataDir), "webhook.secret")
		if err := os.WriteFile(f, append(secret, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		c.Approvals.WebhookURL, c.Approvals.WebhookSecretFile = ms.URL, f
		c.Approvals.EscalationWebhooks = []string{"oncall@example.org=" + os2.URL}
		c.Approvals.EscalateAfter = time.Second
	})
	cs := e.session(t, e.token("bob@example.org"))

	first := call(cs, "staging")
	r := e.pending(t, "staging")
	start := time.Now()
	if code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(r.ID)+"/approve", map[string]string{}, nil); code != 200 {
		t.Fatalf("approve = %d %s", code, body)
	}
	if err := wait(t, first); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the approval took %s with a slow, failing webhook: decisions must not wait for it", d)
	}
	eventually(t, "the down receiver gets the request notice on a retry", func() bool { return main.received("Approval needed") })
	eventually(t, "and the approval", func() bool { return main.received("Approval approved") })

	held := call(cs, "prod")
	p := e.pending(t, "prod")
	eventually(t, "the escalation reaches the contact's webhook", func() bool { return oncall.received("Escalated to oncall@example.org") })

	var res struct {
		Suspended          []string
		NeedNewOwner       []string  `json:"need_new_owner"`
		RevokedTasks       []task.ID `json:"revoked_tasks"`
		CancelledApprovals []string  `json:"cancelled_approvals"`
	}
	if code, body := e.api(t, "POST", "/admin/v1/owners/alice@example.org/offboard", map[string]string{"reason": "left"}, &res); code != 200 {
		t.Fatalf("offboard = %d %s", code, body)
	}
	if len(res.Suspended) != 1 || len(res.RevokedTasks) == 0 || len(res.CancelledApprovals) != 1 || res.CancelledApprovals[0] != string(p.ID) || len(res.NeedNewOwner) != 1 {
		t.Errorf("offboard = %+v", res)
	}
	if err := wait(t, held); err == nil || !strings.Contains(err.Error(), "cancelled") {
		t.Errorf("held call after offboarding: %v, want cancelled", err)
	}
	var pend struct{ Approvals []*approval.Request }
	e.api(t, "GET", "/admin/v1/approvals?status=pending&owner=alice@example.org", nil, &pend)
	var active struct{ Tasks []*task.Task }
	e.api(t, "GET", "/admin/v1/tasks?status=active", nil, &active)
	var agents struct{ Agents []struct{ Status string } }
	e.api(t, "GET", "/admin/v1/agents?status=active", nil, &agents)
	if len(pend.Approvals) != 0 || len(active.Tasks) != 0 || len(agents.Agents) != 0 {
		t.Errorf("after offboarding: %d pending approvals, %d active tasks, %d active agents; want none", len(pend.Approvals), len(active.Tasks), len(agents.Agents))
	}
	evs, err := e.s.backend.ListEvents(t.Context(), audit.Query{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	count := map[audit.Type]int{}
	for _, ev := range evs {
		count[ev.Type]++
	}
	if count[approval.TypeEscalated] != 1 || count[approval.TypeNotified] < 3 || count[approval.TypeCancelled] != 1 || count[audit.TypeAgentSuspended] != 1 || count[audit.TypeTaskRevoked] == 0 {
		t.Errorf("ledger: %v", count)
	}
}
