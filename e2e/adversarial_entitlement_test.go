package e2e

import (
	"net/url"
	"testing"
)

// TestEntitlementCeilingHoldsEndToEnd drives a real server as an agent that
// tries to get more than its entitlement: scope=* and its other spellings,
// a higher sensitivity, a longer lifetime, delegation to an agent without
// an entitlement. Every attempt is refused with the OAuth error for it and
// recorded; an agent without an entitlement starts nothing; lowering the
// entitlement narrows nothing until --revoke-exceeding, which ends the task
// that no longer fits (its token is refused from then on) and leaves the
// fitting one running; the ledger has every change and verifies.
func TestEntitlementCeilingHoldsEndToEnd(t *testing.T) {
	e := start(t)
	reader := e.registerEntitled("reader", "autonomous", map[string]any{
		"scope": []string{"file.read:/repo/**"}, "max_sensitivity": "internal", "max_task_ttl": "2h",
	})
	stranger := e.registerEntitled("stranger", "autonomous", nil)
	readerTok := e.agentToken(reader)
	startTask := func(agentTok string, form url.Values) (int, map[string]any) {
		t.Helper()
		f := url.Values{
			"grant_type": {grantExchange}, "subject_token": {agentTok}, "subject_token_type": {typeAccessToken},
			"purpose": {"read the docs"},
		}
		for k, v := range form {
			f[k] = v
		}
		return e.token(f)
	}

	// More than entitled, however it is asked for: refused, no task.
	for _, tt := range []struct {
		name string
		form url.Values
		code string
	}{
		{"scope *", url.Values{"scope": {"*"}}, "invalid_scope"},
		{"scope *:**", url.Values{"scope": {"*:**"}}, "invalid_scope"},
		{"every action on the root", url.Values{"scope": {"*:/repo/**"}}, "invalid_scope"},
		{"action family", url.Values{"scope": {"file.*:/repo/**"}}, "invalid_scope"},
		{"a sibling root", url.Values{"scope": {"file.read:/repository/**"}}, "invalid_scope"},
		{"one pattern too many", url.Values{"scope": {"file.read:/repo/a shell.exec:id"}}, "invalid_scope"},
		{"climbing out", url.Values{"scope": {"file.read:/repo/../etc/**"}}, "invalid_scope"},
		{"higher sensitivity", url.Values{"scope": {"file.read:/repo/a"}, "sensitivity": {"restricted"}}, "invalid_request"},
		{"longer lifetime", url.Values{"scope": {"file.read:/repo/a"}, "task_ttl": {"3h"}}, "invalid_request"},
	} {
		if status, out := startTask(readerTok, tt.form); status != 400 || out["error"] != tt.code || out["access_token"] != nil {
			t.Errorf("%s: exchange = %d %v, want 400 %s", tt.name, status, out, tt.code)
		}
	}
	// An agent with no entitlement cannot start a task at all.
	strangerTok := e.agentToken(stranger)
	if status, out := startTask(strangerTok, url.Values{"scope": {"file.read:/repo/a"}}); status != 400 || out["error"] != "unauthorized_client" {
		t.Errorf("unentitled exchange = %d %v, want 400 unauthorized_client", status, out)
	}
	if tasks := e.adminJSONList("/admin/v1/tasks", "tasks"); len(tasks) != 0 {
		t.Fatalf("refused exchanges started tasks: %v", tasks)
	}

	// Within the ceiling: granted, exactly as asked.
	issue := func(scope string) (string, string) {
		t.Helper()
		status, out := startTask(readerTok, url.Values{"scope": {scope}})
		if status != 200 {
			t.Fatalf("exchange for %q = %d %v", scope, status, out)
		}
		c := e.verifyIndependently(out["access_token"].(string))
		if c["scope"] != scope {
			t.Fatalf("task token scope = %v, want %q", c["scope"], scope)
		}
		return out["access_token"].(string), c["task_id"].(string)
	}
	wideTok, wideTask := issue("file.read:/repo/**")
	narrowTok, narrowTask := issue("file.read:/repo/docs/**")

	// Nor can the reader delegate to the agent without an entitlement.
	status, out := e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {narrowTok}, "subject_token_type": {typeAccessToken},
		"actor_token": {strangerTok}, "actor_token_type": {typeAccessToken}, "scope": {"file.read:/repo/docs/a"},
	})
	if status != 400 || out["error"] != "invalid_grant" {
		t.Errorf("delegating to an unentitled agent = %d %v, want 400 invalid_grant", status, out)
	}

	// Lowering narrows nothing that is running...
	lower := map[string]any{"scope": []string{"file.read:/repo/docs/**"}, "max_sensitivity": "internal", "max_task_ttl": "2h"}
	res := e.adminJSON("PATCH", "/admin/v1/agents/reader", map[string]any{"entitlement": lower, "reason": "docs only"})
	if revoked, _ := res["revoked"].([]any); len(revoked) != 0 {
		t.Fatalf("lowering without revoke_exceeding revoked %v", revoked)
	}
	for name, tok := range map[string]string{"wide": wideTok, "narrow": narrowTok} {
		if in := e.introspect(reader, tok); in["active"] != true {
			t.Fatalf("%s task token after lowering = %v, want active", name, in)
		}
	}
	// ...but new tasks must fit the new ceiling.
	if status, out := startTask(readerTok, url.Values{"scope": {"file.read:/repo/**"}}); status != 400 || out["error"] != "invalid_scope" {
		t.Errorf("exchange above the lowered entitlement = %d %v, want invalid_scope", status, out)
	}

	// --revoke-exceeding ends the task that no longer fits, and only it.
	res = e.adminJSON("PATCH", "/admin/v1/agents/reader", map[string]any{"entitlement": lower, "revoke_exceeding": true})
	revoked, _ := res["revoked"].([]any)
	if len(revoked) != 1 || revoked[0] != wideTask {
		t.Fatalf("revoke_exceeding revoked %v, want [%s]", revoked, wideTask)
	}
	if in := e.introspect(reader, wideTok); in["active"] != false {
		t.Errorf("exceeding task's token after revoke_exceeding = %v, want inactive", in)
	}
	if status, out := e.token(url.Values{"grant_type": {grantExchange}, "subject_token": {wideTok}, "subject_token_type": {typeAccessToken}}); status != 400 || out["error"] != "invalid_grant" {
		t.Errorf("renewing the revoked task's token = %d %v, want invalid_grant", status, out)
	}
	if in := e.introspect(reader, narrowTok); in["active"] != true || in["task_id"] != narrowTask {
		t.Errorf("fitting task's token after revoke_exceeding = %v, want active", in)
	}
	shown := e.adminJSON("GET", "/admin/v1/agents/reader", nil)
	if ent, _ := shown["entitlement"].(map[string]any); ent == nil || len(ent["scope"].([]any)) != 1 || ent["scope"].([]any)[0] != "file.read:/repo/docs/**" {
		t.Errorf("agent show entitlement = %v", shown["entitlement"])
	}

	// The ledger holds every change and refusal, and verifies.
	events := func(typ string) []map[string]any {
		t.Helper()
		var list []map[string]any
		for _, ev := range e.adminJSONList("/admin/v1/audit/events?type="+typ+"&agent="+url.QueryEscape(reader.id), "events") {
			list = append(list, ev.(map[string]any))
		}
		return list
	}
	changed := events("agent.entitlement_changed")
	if len(changed) != 2 {
		t.Fatalf("%d agent.entitlement_changed events, want 2", len(changed))
	}
	if d := changed[0]["details"].(map[string]any); d["old.scope"] != "file.read:/repo/**" || d["new.scope"] != "file.read:/repo/docs/**" || d["reason"] != "docs only" {
		t.Errorf("agent.entitlement_changed details = %v", d)
	}
	var exceeded int
	for _, ev := range events("token.refused") {
		if d, _ := ev["details"].(map[string]any); d["entitlement"] == "exceeded" {
			exceeded++
		}
	}
	if exceeded != 9 { // the eight well-formed requests above the ceiling, and the one after lowering
		t.Errorf("%d token.refused events for an exceeded entitlement, want 9", exceeded)
	}
	var revokedForExceeding bool
	for _, ev := range events("task.revoked") {
		if ev["task"] == wideTask && ev["reason"] == "exceeds entitlement" {
			revokedForExceeding = true
		}
	}
	if !revokedForExceeding {
		t.Errorf("no task.revoked event for %s with reason \"exceeds entitlement\"", wideTask)
	}
	var strangerRefused bool
	for _, ev := range e.adminJSONList("/admin/v1/audit/events?type=token.refused&agent="+url.QueryEscape(stranger.id), "events") {
		if d, _ := ev.(map[string]any)["details"].(map[string]any); d["entitlement"] == "none" {
			strangerRefused = true
		}
	}
	if !strangerRefused {
		t.Error("the unentitled agent's refused exchange is not in the ledger")
	}
	rep := e.adminJSON("POST", "/admin/v1/audit/verify", nil)
	if problems, _ := rep["problems"].([]any); len(problems) != 0 || rep["events"].(float64) == 0 {
		t.Errorf("audit verify = %v, want a ledger that verifies", rep)
	}
}
