package e2e

import (
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"testing"
)

// TestNonCanonicalResourcesRefused: through the AuthZEN API of a real
// server with the shipped policies, a task scoped to /repo/src is refused
// every spelling of a path, URI or host that is not canonical — traversal,
// empty segments, a trailing slash, NUL, look-alike slashes, encoded and
// double-encoded dots, an uppercase scheme or host — with the rule it
// breaks as the reason; each refusal is a deny in the ledger, recorded
// with the resource quoted, and the ledger verifies at the end. The
// canonical spellings of the same resources are decided by policy.
func TestNonCanonicalResourcesRefused(t *testing.T) {
	e := start(t)
	a := e.register("resource-attacker", "autonomous")
	status, out := e.token(url.Values{
		"grant_type": {grantExchange}, "subject_token": {e.agentToken(a)}, "subject_token_type": {typeAccessToken},
		"scope":        {"file.write:/repo/src/** resource.read:file:///repo/src/** http.request:example.com"},
		"purpose":      {"adversarial resources"},
		"on_behalf_of": {"alice@example.com"},
	})
	if status != 200 {
		t.Fatalf("start task = %d %v", status, out)
	}
	taskTok := out["access_token"].(string)

	// A scope pattern is held to the same canonical rules: one naming a
	// non-canonical resource starts no task.
	for _, scope := range []string{"http.request:EXAMPLE.com", "file.write:/repo/src/", "resource.read:FILE:///repo/**", "file.write:/repo/src/../**"} {
		status, out := e.token(url.Values{
			"grant_type": {grantExchange}, "subject_token": {e.agentToken(a)}, "subject_token_type": {typeAccessToken},
			"scope": {scope}, "purpose": {"non-canonical scope"}, "on_behalf_of": {"alice@example.com"},
		})
		if status != 400 || out["error"] != "invalid_scope" {
			t.Errorf("start task with scope %q = %d %v, want 400 invalid_scope", scope, status, out)
		}
	}
	if tasks := e.adminJSONList("/admin/v1/tasks", "tasks"); len(tasks) != 1 {
		t.Errorf("tasks = %d, want only the one started with a canonical scope", len(tasks))
	}

	tests := []struct {
		name, action, typ, id string
		reason                string // part of the refusal's reason
	}{
		{"dot dot", "file.write", "file", "/repo/src/../../etc/passwd", `has a ".." segment`},
		{"dot then dot dot", "file.write", "file", "/repo/src/./../secret", `has a "." segment`},
		{"deep dot dot", "file.write", "file", "/repo/src/a/../../../etc/shadow", `has a ".." segment`},
		{"empty segment", "file.write", "file", "/repo/src//x", `has an empty segment ("//")`},
		{"trailing slash", "file.write", "file", "/repo/src/x/", `ends in "/"`},
		{"NUL", "file.write", "file", "/repo/src/x\x00/../../../etc/passwd", "is a control character"},
		{"division slash", "file.write", "file", "/repo/src/..\u2215..\u2215etc\u2215passwd", `U+2215, which looks like "/"`},
		{"fullwidth solidus", "file.write", "file", "/repo/src/..\uff0f..\uff0fetc\uff0fpasswd", `U+FF0F, which looks like "/"`},
		{"encoded dots", "resource.read", "file", "file:///repo/src/%2e%2e/%2e%2e/etc/passwd", "has a percent-encoded path (give it decoded)"},
		{"encoded dots uppercase", "resource.read", "file", "file:///repo/src/%2E%2E/%2E%2E/etc/passwd", "has a percent-encoded path (give it decoded)"},
		{"double-encoded dots", "resource.read", "file", "file:///repo/src/%252e%252e/%252e%252e/etc/passwd", "has a percent-encoded path (give it decoded)"},
		{"uppercase scheme", "resource.read", "file", "FILE:///repo/src/main.go", "scheme must be lowercase"},
		{"uppercase host", "http.request", "host", "EXAMPLE.com", `not in canonical form (lowercase, internationalised labels as "xn--" A-labels): write "example.com"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reqID := "adv-" + strings.ReplaceAll(tt.name, " ", "-")
			status, body := e.evaluate(taskTok, reqID, evaluation(a.id, tt.action, tt.typ, tt.id))
			if status != 400 || !strings.Contains(string(body), "resource is not canonical") || !strings.Contains(string(body), tt.reason) {
				t.Fatalf("evaluate %s %q = %d %s, want 400 with the reason %q", tt.action, tt.id, status, body, tt.reason)
			}
			// In a batch the same refusal is a decision: false of its own.
			status, body = e.evaluate(taskTok, reqID+"-batch", map[string]any{
				"subject":     map[string]any{"type": "agent", "id": a.id},
				"evaluations": []any{evaluation(a.id, tt.action, tt.typ, tt.id)},
			})
			var batch struct {
				Evaluations []struct {
					Decision bool `json:"decision"`
					Context  struct {
						Error struct {
							Status  int    `json:"status"`
							Message string `json:"message"`
						} `json:"error"`
					} `json:"context"`
				} `json:"evaluations"`
			}
			if status != 200 || json.Unmarshal(body, &batch) != nil || len(batch.Evaluations) != 1 ||
				batch.Evaluations[0].Decision || batch.Evaluations[0].Context.Error.Status != 400 ||
				!strings.Contains(batch.Evaluations[0].Context.Error.Message, tt.reason) {
				t.Fatalf("batch evaluate %s %q = %d %s, want decision false with the reason %q", tt.action, tt.id, status, body, tt.reason)
			}
			for _, id := range []string{reqID, reqID + "-batch"} {
				ev := e.decisionEvent(id)
				// The refused resource is recorded quoted (Go ASCII syntax),
				// so that what the agent sent is in the ledger, byte for
				// byte, and safe to show.
				wantRes := tt.typ + ":" + strconv.QuoteToASCII(tt.id)
				if ev.Decision != "deny" || ev.Action != tt.action || ev.Agent != a.id ||
					!strings.Contains(ev.Reason, tt.reason) || ev.Resource != wantRes {
					t.Errorf("ledger event for %s = %+v, want a deny of %s with the reason %q", id, ev, wantRes, tt.reason)
				}
				if !isPrintableASCII(ev.Resource) || !isPrintableASCII(ev.Reason) {
					t.Errorf("ledger event for %s records the refused resource unquoted: %+v", id, ev)
				}
			}
		})
	}

	// The canonical spellings reach policy and the scope check: in scope
	// the shipped policies allow an autonomous agent; out of scope is a
	// policy deny ("task-scope"), not a refusal as malformed.
	for _, c := range []struct {
		action, typ, id string
		allow           bool
		reason          string
	}{
		{"file.write", "file", "/repo/src/main.go", true, "autonomous agents may act within their task's scope"},
		{"resource.read", "file", "file:///repo/src/main.go", true, "reading is allowed to every tier within the task's scope"},
		{"http.request", "host", "example.com", true, "autonomous agents may act within their task's scope"},
		{"file.write", "file", "/etc/passwd", false, "the action is outside the task's scope"},
	} {
		status, body := e.evaluate(taskTok, "", evaluation(a.id, c.action, c.typ, c.id))
		var resp struct {
			Decision bool `json:"decision"`
			Context  struct {
				Reason string `json:"reason"`
			} `json:"context"`
		}
		if status != 200 || json.Unmarshal(body, &resp) != nil || resp.Decision != c.allow || !strings.Contains(resp.Context.Reason, c.reason) {
			t.Errorf("evaluate canonical %s %q = %d %s, want decision %v with the reason %q", c.action, c.id, status, body, c.allow, c.reason)
		}
	}

	var rep struct {
		Events   int64 `json:"events"`
		Problems []any `json:"problems"`
	}
	status, body := e.do(e.admin, "POST", "http://mandate/admin/v1/audit/verify", "", nil)
	if status != 200 || json.Unmarshal(body, &rep) != nil || len(rep.Problems) > 0 || rep.Events == 0 {
		t.Fatalf("audit verify = %d %s, want a ledger that verifies", status, body)
	}
}

// evaluation is an AuthZEN evaluation request for agent.
func evaluation(agent, action, typ, id string) map[string]any {
	return map[string]any{
		"subject":  map[string]any{"type": "agent", "id": agent},
		"action":   map[string]any{"name": action},
		"resource": map[string]any{"type": typ, "id": id},
	}
}

// evaluate posts one evaluation (or a batch, when in has "evaluations")
// with a task token and returns the status and body.
func (e *env) evaluate(taskToken, reqID string, in map[string]any) (int, []byte) {
	e.t.Helper()
	b, err := json.Marshal(in)
	if err != nil {
		e.t.Fatal(err)
	}
	endpoint := "/access/v1/evaluation"
	if _, ok := in["evaluations"]; ok {
		endpoint = "/access/v1/evaluations"
	}
	hdr := []string{"Authorization", "Bearer " + taskToken}
	if reqID != "" {
		hdr = append(hdr, "X-Request-ID", reqID)
	}
	return e.do(e.client, "POST", e.base+endpoint, "application/json", strings.NewReader(string(b)), hdr...)
}

// ledgerEvent is the part of an audit event these tests read.
type ledgerEvent struct {
	Type      string `json:"type"`
	Agent     string `json:"agent"`
	Action    string `json:"action"`
	Resource  string `json:"resource"`
	Decision  string `json:"decision"`
	Reason    string `json:"reason"`
	RequestID string `json:"request_id"`
}

// decisionEvent returns the one decision event in the ledger with the
// request ID reqID, read through the admin audit API.
func (e *env) decisionEvent(reqID string) ledgerEvent {
	e.t.Helper()
	status, body := e.do(e.admin, "GET", "http://mandate/admin/v1/audit/events?type=action.decided&limit=1000", "", nil)
	var page struct {
		Events []ledgerEvent `json:"events"`
	}
	if status != 200 || json.Unmarshal(body, &page) != nil {
		e.t.Fatalf("audit events = %d %s", status, body)
	}
	var found []ledgerEvent
	for _, ev := range page.Events {
		if ev.RequestID == reqID {
			found = append(found, ev)
		}
	}
	if len(found) != 1 {
		e.t.Fatalf("decision events with request ID %q = %+v, want exactly one", reqID, found)
	}
	return found[0]
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}
