package e2e

import (
	"net/url"
	"strings"
	"testing"
)

// TestNarrowedTokenHeldToItsScope: a task token exchanged down to
// file.read:/repo/docs/** is refused what its task's wider scope allows,
// in a single evaluation and in a batch, and each refusal is recorded.
func TestNarrowedTokenHeldToItsScope(t *testing.T) {
	e := start(t)
	a := e.register("reader", "autonomous")
	status, out := e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {e.agentToken(a)}, "subject_token_type": {typeAccessToken},
		"scope": {"file.read:/repo/**"}, "purpose": {"read the docs"},
	})
	if status != 200 {
		t.Fatalf("start task = %d %v", status, out)
	}
	wide := out["access_token"].(string)
	status, out = e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {wide}, "subject_token_type": {typeAccessToken},
		"scope": {"file.read:/repo/docs/**"},
	})
	if status != 200 || out["scope"] != "file.read:/repo/docs/**" {
		t.Fatalf("narrowing = %d %v", status, out)
	}
	narrow := out["access_token"].(string)
	taskID, _ := e.verifyIndependently(narrow)["task_id"].(string)

	eval := func(tok, path string) (int, string) {
		body := `{"subject": {"type": "agent", "id": "` + a.id + `"}, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "` + path + `"}}`
		status, b := e.do(e.client, "POST", e.base+"/access/v1/evaluation", "application/json", strings.NewReader(body), "Authorization", "Bearer "+tok)
		return status, string(b)
	}
	if status, b := eval(narrow, "/repo/docs/guide.md"); status != 200 || !strings.Contains(b, `"decision":true`) {
		t.Errorf("narrow token inside its scope = %d %s", status, b)
	}
	if status, b := eval(narrow, "/repo/secrets/key.pem"); status != 200 || !strings.Contains(b, `"decision":false`) {
		t.Errorf("narrow token outside its scope = %d %s, want a deny", status, b)
	}
	if n := e.evaluations(narrow, a.id, 3); n != 0 {
		t.Errorf("narrow token: %d of 3 batch evaluations under /repo allowed, want 0", n)
	}
	if status, b := eval(wide, "/repo/secrets/key.pem"); status != 200 || !strings.Contains(b, `"decision":true`) {
		t.Errorf("the task's own token = %d %s, want an allow", status, b)
	}
	denies := e.allEvents("task=" + taskID + "&type=action.decided&decision=deny")
	if len(denies) != 4 {
		t.Errorf("%d denials recorded for the narrowed token, want 4", len(denies))
	}
	for _, raw := range denies {
		ev := raw.(map[string]any)
		if d, _ := ev["details"].(map[string]any); d["in_scope"] != "false" {
			t.Errorf("denial %v: in_scope is not false", ev)
		}
	}
}
