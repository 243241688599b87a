package server

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// TestARAPEndToEnd: an approval_required AuthZEN evaluation is a
// requestable denial; the agent submits the access request and polls the
// task handle; once its owner approves (admin API), the task carries a
// reevaluate result and a new evaluation of the same call is allowed,
// once. A submission for other arguments, and another task's handle, are
// refused.
func TestARAPEndToEnd(t *testing.T) {
	e := newApprovalEnv(t, nil)
	tok := e.tokenAt("bob@example.org", "")
	post := func(path string, body any) (int, map[string]any) {
		t.Helper()
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(string(b)))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		return doJSON(t, req)
	}
	eval := map[string]any{
		"subject":  map[string]any{"type": "agent", "id": "spiffe://mandate.local/agent/deployer"},
		"action":   map[string]any{"name": "tool.call"},
		"resource": map[string]any{"type": "tool", "id": "up/deploy", "properties": map[string]any{"server": "up"}},
		"context":  map[string]any{"arguments": map[string]any{"env": "staging"}},
	}
	code, resp := post("/access/v1/evaluation", eval)
	ctx, _ := resp["context"].(map[string]any)
	ar, _ := ctx["access_request"].(map[string]any)
	if code != 200 || resp["decision"] != false || ar == nil || ctx["evaluation_id"] == nil {
		t.Fatalf("evaluation = %d %v, want a requestable denial", code, resp)
	}
	if ar["endpoint"] != e.base+"/access/v1/requests" {
		t.Errorf("access_request.endpoint = %v", ar["endpoint"])
	}
	sub := map[string]any{
		"subject": eval["subject"], "action": eval["action"], "resource": eval["resource"], "context": eval["context"],
		"denial": map[string]any{"evaluation_id": ctx["evaluation_id"], "expires_at": ar["expires_at"]},
	}
	code, resp = post("/access/v1/requests", sub)
	taskObj, _ := resp["task"].(map[string]any)
	if code != http.StatusAccepted || taskObj["status"] != "pending" || taskObj["id"] != ctx["evaluation_id"] {
		t.Fatalf("submission = %d %v, want 202 pending", code, resp)
	}
	// Other arguments: not the denied evaluation.
	bad := map[string]any{}
	for k, v := range sub {
		bad[k] = v
	}
	bad["context"] = map[string]any{"arguments": map[string]any{"env": "prod"}}
	if code, resp := post("/access/v1/requests", bad); code != 400 || resp["type"] != "urn:openid:authzen:access-request:error:invalid_denial_binding" {
		t.Errorf("submission with other arguments = %d %v, want invalid_denial_binding", code, resp)
	}
	status := func(id string) (int, map[string]any) {
		req, _ := http.NewRequest("GET", e.base+"/access/v1/requests/"+id, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return doJSON(t, req)
	}
	id := taskObj["id"].(string)
	if code, _ := e.api(t, "POST", "/admin/v1/approvals/"+id+"/approve", map[string]string{"reason": "ok"}, nil); code != 200 {
		t.Fatalf("approve = %d", code)
	}
	code, resp = status(id)
	result, _ := resp["result"].(map[string]any)
	if code != 200 || resp["task"].(map[string]any)["status"] != "approved" || result["mode"] != "reevaluate" {
		t.Fatalf("status = %d %v, want approved with a reevaluate result", code, resp)
	}
	eval["context"].(map[string]any)["approval"] = result["approval"]
	if code, resp := post("/access/v1/evaluation", eval); code != 200 || resp["decision"] != true {
		t.Fatalf("re-evaluation = %d %v, want allowed", code, resp)
	}
	if code, resp := post("/access/v1/evaluation", eval); code != 200 || resp["decision"] != false {
		t.Errorf("second re-evaluation = %d %v, want denied (once)", code, resp)
	}
	// Another task's token sees no such handle.
	tok = e.tokenAt("carol@example.org", "")
	if code, resp := status(id); code != 404 || resp["type"] != "urn:openid:authzen:access-request:error:unknown_task" {
		t.Errorf("another task's status = %d %v, want unknown_task", code, resp)
	}
}

func doJSON(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	if m == nil {
		m = map[string]any{"body": string(b)}
	}
	return resp.StatusCode, m
}
