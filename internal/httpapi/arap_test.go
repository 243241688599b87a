package httpapi_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/httpapi"
)

var arapSeeds = []string{
	`{"subject":{"type":"agent","id":"spiffe://x/agent/a"},"action":{"name":"tool.call"},"resource":{"type":"tool","id":"up/deploy"},
	  "context":{"arguments":{"env":"staging"},"business_justification":"x"},"denial":{"evaluation_id":"` + string(approval.NewID()) + `","expires_at":"2026-05-01T12:00:00Z"},
	  "callback":{"endpoint":"https://pep.example/cb","state":"s","events":["approved"]},"requested_access":{"emergency":true},"client":{"id":"c"}}`,
	`{"subject":{"type":"agent","id":"a"},"action":{"name":"tool.call"},"resource":{"type":"tool","id":"t"},"denial":{"evaluation_id":"apr_x","expires_at":"now"}}`,
	`{"denial":{"evaluation_id":"apr_aaaaaaaaaaaaaaaaaaaaaaaaaa","expires_at":"2026-05-01T12:00:00Z"}}`,
	`{"subject":{},"unknown":1}`,
	`{"callback":{"endpoint":"javascript:alert(1)"}}`,
	`[]`, `null`, `{"denial":{"evaluation_id":"\ud800","expires_at":""}}`,
}

// TestARAPSubmissionParsing: what ParseARAPSubmission refuses.
func TestARAPSubmissionParsing(t *testing.T) {
	id := string(approval.NewID())
	ok := `{"subject":{"type":"agent","id":"a"},"action":{"name":"tool.call"},"resource":{"type":"tool","id":"t"},"denial":{"evaluation_id":"` + id + `","expires_at":"2026-05-01T12:00:00Z"}`
	if _, err := httpapi.ParseARAPSubmission([]byte(ok + `}`)); err != nil {
		t.Fatalf("a valid submission: %v", err)
	}
	for name, body := range map[string]string{
		"unknown member":       strings.Replace(ok, `{"subject"`, `{"x":1,"subject"`, 1) + `}`,
		"no denial":            `{"subject":{"type":"agent","id":"a"},"action":{"name":"tool.call"},"resource":{"type":"tool","id":"t"}}`,
		"other id form":        strings.Replace(ok, id, strings.ToUpper(id), 1) + `}`,
		"bad expiry":           strings.Replace(ok, "2026-05-01T12:00:00Z", "tomorrow", 1) + `}`,
		"callback not http(s)": ok + `,"callback":{"endpoint":"file:///etc/passwd"}}`,
		"callback with user":   ok + `,"callback":{"endpoint":"https://u:p@pep.example/cb"}}`,
		"trailing data":        ok + `}{}`,
		"lone surrogate":       strings.Replace(ok, `"id":"a"`, `"id":"\ud800"`, 1) + `}`,
		"denial unknown field": strings.Replace(ok, `"evaluation_id"`, `"nope":1,"evaluation_id"`, 1) + `}`,
	} {
		if _, err := httpapi.ParseARAPSubmission([]byte(body)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// FuzzARAPSubmission: the parser never panics, and what it accepts has
// the members the binding needs, well-formed.
func FuzzARAPSubmission(f *testing.F) {
	for _, s := range arapSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		sub, err := httpapi.ParseARAPSubmission(body)
		if err != nil {
			return
		}
		if sub.Subject == nil || sub.Action == nil || sub.Resource == nil || sub.Denial == nil {
			t.Fatalf("accepted without subject, action, resource or denial: %s", body)
		}
		if _, err := approval.ParseID(sub.Denial.EvaluationID); err != nil {
			t.Fatalf("accepted evaluation_id %q: %v", sub.Denial.EvaluationID, err)
		}
		if _, err := time.Parse(time.RFC3339, sub.Denial.ExpiresAt); err != nil {
			t.Fatalf("accepted expires_at %q", sub.Denial.ExpiresAt)
		}
		if sub.Context != nil && len(sub.Context.Arguments) > 0 && !json.Valid(sub.Context.Arguments) {
			t.Fatalf("accepted arguments that are not JSON: %s", sub.Context.Arguments)
		}
	})
}
