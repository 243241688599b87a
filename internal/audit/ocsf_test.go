package audit_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

func TestToOCSF(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		ev   audit.Event
		// want are top-level fields and their JSON values.
		want map[string]string
	}{
		{"allowed action", audit.Event{Seq: 9, Time: t0, Type: audit.TypeActionDecided, Agent: "spiffe://x/agent/a", Task: "tsk_1",
			Action: "file.write", Resource: "file:/repo/a.go", Decision: audit.DecisionAllow, RequestID: "r1", Point: "mcp",
			Reasons: []audit.PolicyReason{{Policy: "p1", Message: "ok"}}},
			map[string]string{"class_uid": "6003", "category_uid": "6", "activity_id": "3", "type_uid": "600303",
				"action_id": "1", "disposition_id": "1", "status_id": "1", "severity_id": "1", "time": "1772366400000",
				"policy":    `{"desc":"ok","name":"p1","uid":"p1"}`,
				"resources": `[{"type":"file","uid":"file:/repo/a.go"}]`,
				"api":       `{"operation":"file.write","request":{"uid":"r1"},"service":{"name":"mcp"}}`}},
		{"denied action", audit.Event{Time: t0, Type: audit.TypeActionDecided, Action: "file.read", Decision: audit.DecisionDeny, Reason: "out of scope"},
			map[string]string{"class_uid": "6003", "activity_id": "2", "action_id": "2", "action": `"Denied"`, "disposition_id": "2",
				"disposition": `"Blocked"`, "status_id": "2", "status_detail": `"out of scope"`}},
		{"policies in details (the decision pipeline)", audit.Event{Time: t0, Type: audit.TypeActionDecided, Action: "file.read", Decision: audit.DecisionDeny,
			Details: map[string]string{"policies": "mandate:task-scope,other"}},
			map[string]string{"policy": `{"name":"mandate:task-scope","uid":"mandate:task-scope"}`}},
		{"held for approval", audit.Event{Time: t0, Type: audit.TypeActionDecided, Action: "shell.exec", Decision: audit.DecisionApprovalRequired, ApprovalID: "apr_1"},
			map[string]string{"class_uid": "6003", "activity_id": "99", "action_id": "99", "disposition_id": "14", "disposition": `"Delayed"`}},
		{"token issued", audit.Event{Time: t0, Type: audit.TypeTokenIssued, Agent: "spiffe://x/agent/a", Task: "tsk_1", Decision: audit.DecisionAllow,
			Details: map[string]string{"scope": "file.read:/a tool.call:x"}},
			map[string]string{"class_uid": "3003", "category_uid": "3", "activity_id": "1", "type_uid": "300301",
				"user": `{"type":"Other","type_id":99,"uid":"spiffe://x/agent/a"}`, "session": `{"uid":"tsk_1"}`,
				"privileges": `["file.read:/a","tool.call:x"]`, "action_id": "1"}},
		{"token refused", audit.Event{Time: t0, Type: audit.TypeTokenRefused, Decision: audit.DecisionDeny},
			map[string]string{"class_uid": "3003", "activity_id": "99", "action_id": "2", "status_id": "2"}},
		{"agent registered", audit.Event{Time: t0, Type: audit.TypeAgentRegistered, Actor: "admin:local"},
			map[string]string{"class_uid": "6003", "activity_id": "1", "actor": `{"user":{"uid":"admin:local"}}`}},
		{"failed outcome", audit.Event{Time: t0, Type: audit.TypeActionCompleted, Action: "http.request", Decision: audit.DecisionAllow,
			Outcome: &audit.Outcome{Status: "error", Error: "timeout", Duration: 2 * time.Second}},
			map[string]string{"status_id": "2", "status_detail": `"timeout"`, "duration": "2000"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var buf bytes.Buffer
			if err := audit.WriteOCSF(&buf, []*audit.Event{&tc.ev}); err != nil {
				t.Fatal(err)
			}
			var got map[string]json.RawMessage
			if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			for k, want := range tc.want {
				if string(got[k]) != want {
					t.Errorf("ToOCSF()[%q] = %s, want %s", k, got[k], want)
				}
			}
			var meta struct {
				Version string `json:"version"`
				Product struct {
					Name string `json:"name"`
				} `json:"product"`
			}
			if err := json.Unmarshal(got["metadata"], &meta); err != nil || meta.Version != audit.OCSFVersion || meta.Product.Name != "mandate" {
				t.Errorf("metadata = %s, want version %s and product mandate", got["metadata"], audit.OCSFVersion)
			}
			if _, ok := got["unmapped"]; !ok {
				t.Error("no unmapped object")
			}
		})
	}
}
