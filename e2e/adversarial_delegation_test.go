package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/server"
)

// TestDelegationIsDecided: delegation at token exchange is the action
// task.delegate, decided by the one pipeline with the shipped policies. A
// parent without task.delegate in its scope, an assist agent handing work
// to an autonomous one, a token narrowed below task.delegate and a task at
// the depth limit are each refused with invalid_grant, recorded as a
// denied task.delegate, and create no task.
func TestDelegationIsDecided(t *testing.T) {
	e := start(t, func(c *server.Config) { c.Tasks.MaxDepth = 1 })
	planner := e.register("planner", "autonomous")
	coder := e.register("coder", "autonomous")
	helper := e.register("helper", "autonomous")
	assistant := e.register("assistant", "assist")

	startTask := func(a agent, scope string) string {
		t.Helper()
		status, out := e.token(url.Values{
			"grant_type": {grantExchange}, "subject_token": {e.agentToken(a)}, "subject_token_type": {typeAccessToken},
			"scope": {scope}, "purpose": {"work"},
		})
		if status != 200 {
			t.Fatalf("start task for %s = %d %v", a.id, status, out)
		}
		return out["access_token"].(string)
	}
	delegate := func(parentTok string, to agent, scope string) (int, map[string]any) {
		form := url.Values{
			"grant_type": {grantExchange}, "subject_token": {parentTok}, "subject_token_type": {typeAccessToken},
			"actor_token": {e.agentToken(to)}, "actor_token_type": {typeAccessToken}, "purpose": {"sub-work"},
		}
		if scope != "" {
			form.Set("scope", scope)
		}
		return e.token(form)
	}

	delegable := "file.read:/repo/** task.delegate:spiffe://example.org/agent/*"
	plannerTok := startTask(planner, delegable)
	status, out := delegate(plannerTok, coder, delegable)
	if status != 200 {
		t.Fatalf("a delegation the scope and policies allow = %d %v", status, out)
	}
	coderTok := out["access_token"].(string)

	// The planner narrows its own token below task.delegate.
	status, out = e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {plannerTok}, "subject_token_type": {typeAccessToken},
		"scope": {"file.read:/repo/**"},
	})
	if status != 200 {
		t.Fatalf("narrowing renewal = %d %v", status, out)
	}
	narrowedTok := out["access_token"].(string)

	for _, tc := range []struct {
		name   string
		parent string
		to     agent
		policy string // the policy that denies, in the ledger event
	}{
		{"scope without task.delegate", startTask(planner, "file.read:/repo/**"), coder, "task-scope"},
		{"scope naming another delegate", startTask(planner, "file.read:/repo/** task.delegate:"+helper.id), coder, "task-scope"},
		{"token narrowed below task.delegate", narrowedTok, coder, "task-scope"},
		{"assist to autonomous", startTask(assistant, "*"), coder, "delegation-no-escalation"},
		{"at the depth limit", coderTok, helper, "delegation-depth"},
	} {
		before := len(e.adminJSONList("/admin/v1/tasks", "tasks"))
		status, out := delegate(tc.parent, tc.to, "")
		if status != 400 || out["error"] != "invalid_grant" || !strings.Contains(fmt.Sprint(out["error_description"]), "delegation denied") {
			t.Errorf("%s: delegation = %d %v, want 400 invalid_grant: delegation denied", tc.name, status, out)
			continue
		}
		if after := len(e.adminJSONList("/admin/v1/tasks", "tasks")); after != before {
			t.Errorf("%s: a refused delegation created a task (%d → %d)", tc.name, before, after)
		}
		evs := e.adminJSONList("/admin/v1/audit/events?type=action.decided&decision=deny&last=true&limit=1", "events")
		if len(evs) != 1 {
			t.Errorf("%s: no denied decision recorded", tc.name)
			continue
		}
		ev := evs[0].(map[string]any)
		details, _ := ev["details"].(map[string]any)
		if ev["action"] != "task.delegate" || ev["resource"] != "agent:"+tc.to.id || !strings.Contains(fmt.Sprint(details["policies"]), tc.policy) {
			t.Errorf("%s: recorded %v, want a task.delegate on %s denied by %s", tc.name, ev, tc.to.id, tc.policy)
		}
	}
	if rep := e.adminJSON("POST", "/admin/v1/audit/verify", nil); rep["first_bad_seq"] != nil || rep["problems"] != nil || rep["events"] == float64(0) {
		t.Errorf("audit verify = %v", rep)
	}
}
