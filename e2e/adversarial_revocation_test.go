package e2e

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// allEvents pages through the ledger's events matching query.
func (e *env) allEvents(query string) []any {
	e.t.Helper()
	var all []any
	after := 0.0
	for {
		page := e.adminJSONList(fmt.Sprintf("/admin/v1/audit/events?%s&limit=1000&after=%d", query, int64(after)), "events")
		all = append(all, page...)
		if len(page) < 1000 {
			return all
		}
		after = page[len(page)-1].(map[string]any)["seq"].(float64)
	}
}

// joinTask returns a task token for an admin-started task of a.
func (e *env) joinTask(a agent, taskID string) string {
	e.t.Helper()
	status, out := e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {e.agentToken(a)}, "subject_token_type": {typeAccessToken},
		"task_id": {taskID},
	})
	if status != 200 {
		e.t.Fatalf("join task %s = %d %v", taskID, status, out)
	}
	return out["access_token"].(string)
}

// evaluations posts an AuthZEN batch of n (at most 64) file.read evaluations and
// returns how many were allowed, or -1 when the batch was refused.
func (e *env) evaluations(tok, agentID string, n int) int {
	var evs []string
	for i := range n {
		evs = append(evs, fmt.Sprintf(`{"resource": {"type": "file", "id": "/repo/f%d.go"}}`, i))
	}
	body := fmt.Sprintf(`{"subject": {"type": "agent", "id": %q}, "action": {"name": "file.read"}, "evaluations": [%s]}`,
		agentID, strings.Join(evs, ","))
	status, b := e.do(e.client, "POST", e.base+"/access/v1/evaluations", "application/json", strings.NewReader(body), "Authorization", "Bearer "+tok)
	if status != 200 {
		return -1
	}
	var out struct {
		Evaluations []struct {
			Decision bool `json:"decision"`
		} `json:"evaluations"`
	}
	if json.Unmarshal(b, &out) != nil {
		return -1
	}
	allowed := 0
	for _, ev := range out.Evaluations {
		if ev.Decision {
			allowed++
		}
	}
	return allowed
}

// TestNoAllowAfterRevocation: while clients post batches of evaluations
// (each batch authenticated once, then decided entry by entry), the task
// is revoked; no allow is recorded after the revocation, and after the
// revoke call returns every evaluation is denied.
func TestNoAllowAfterRevocation(t *testing.T) {
	e := start(t)
	a := e.register("racer", "autonomous")
	tk := e.adminJSON("POST", "/admin/v1/tasks", map[string]any{
		"agent": "racer", "on_behalf_of": "alice@example.com", "purpose": "race", "scope": []string{"file.read:/repo/**"},
	})
	taskID := tk["id"].(string)
	tok := e.joinTask(a, taskID)

	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		allowed atomic.Int64
	)
	for range 16 {
		wg.Go(func() {
			for !stop.Load() {
				if n := e.evaluations(tok, a.id, 64); n > 0 {
					allowed.Add(int64(n))
				}
			}
		})
	}
	// Let the clients get going (bounded: the test stops by itself).
	for deadline := time.Now().Add(10 * time.Second); allowed.Load() < 1000; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("only %d allows before the revocation", allowed.Load())
		}
	}
	e.adminJSON("POST", "/admin/v1/tasks/"+taskID+"/revoke", map[string]any{"reason": "race"})
	for range 20 {
		if n := e.evaluations(tok, a.id, 10); n > 0 {
			t.Fatalf("%d evaluations allowed after the revoke call returned", n)
		}
	}
	stop.Store(true)
	wg.Wait()

	// In the ledger, every allow of the task precedes its revocation.
	evs := e.allEvents("task=" + taskID)
	revokedAt, lastAllow, allows := -1.0, -1.0, 0
	for _, raw := range evs {
		ev := raw.(map[string]any)
		seq, _ := ev["seq"].(float64)
		switch {
		case ev["type"] == "task.revoked":
			revokedAt = seq
		case ev["type"] == "action.decided" && ev["decision"] == "allow":
			allows++
			lastAllow = max(lastAllow, seq)
		}
	}
	if revokedAt < 0 || allows == 0 {
		t.Fatalf("ledger has revocation at %v and %d allows; the race did not happen", revokedAt, allows)
	}
	if lastAllow > revokedAt {
		t.Errorf("an allow was recorded at seq %v, after the revocation at seq %v", lastAllow, revokedAt)
	}
}

// TestBudgetUnderConcurrentBatches: a task with max_actions 10 evaluated
// by 40 concurrent clients, one evaluation or a batch each, is allowed
// exactly 10 actions.
func TestBudgetUnderConcurrentBatches(t *testing.T) {
	e := start(t)
	a := e.register("spender", "autonomous")
	tk := e.adminJSON("POST", "/admin/v1/tasks", map[string]any{
		"agent": "spender", "on_behalf_of": "alice@example.com", "purpose": "spend", "scope": []string{"file.read:/repo/**"},
		"budget": map[string]any{"max_actions": 10},
	})
	taskID := tk["id"].(string)
	tok := e.joinTask(a, taskID)
	var (
		wg      sync.WaitGroup
		start   = make(chan struct{})
		allowed atomic.Int64
	)
	for range 40 {
		wg.Go(func() {
			<-start
			for range 5 {
				if n := e.evaluations(tok, a.id, 1); n > 0 {
					allowed.Add(int64(n))
				}
			}
		})
	}
	close(start)
	wg.Wait()
	if n := allowed.Load(); n != 10 {
		t.Errorf("%d of 200 concurrent evaluations allowed against max_actions 10", n)
	}
	allows := e.allEvents("task=" + taskID + "&type=action.decided&decision=allow")
	if len(allows) != 10 {
		t.Errorf("%d allows recorded, want 10", len(allows))
	}
}
