package e2e

import (
	"net/url"
	"testing"
)

// TestAgentCannotMintItsOwnPrincipal: an agent token exchanged with scope=*
// and a principal of its own choosing, or a task principal for a root task,
// is refused with invalid_request and starts no task.
func TestAgentCannotMintItsOwnPrincipal(t *testing.T) {
	e := start(t)
	a := e.register("minter", "autonomous")
	tok := e.agentToken(a)
	for _, obo := range []string{"ceo@example.com", "task:tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa", "Alice@example.com"} {
		status, out := e.token(url.Values{
			"grant_type": {grantExchange}, "subject_token": {tok}, "subject_token_type": {typeAccessToken},
			"scope": {"*"}, "purpose": {"take over"}, "on_behalf_of": {obo},
		})
		if status != 400 || out["error"] != "invalid_request" {
			t.Errorf("start task on_behalf_of=%q = %d %v, want 400 invalid_request", obo, status, out)
		}
	}
	if tasks := e.adminJSONList("/admin/v1/tasks", "tasks"); len(tasks) != 0 {
		t.Errorf("tasks after refused starts = %v, want none", tasks)
	}
}
