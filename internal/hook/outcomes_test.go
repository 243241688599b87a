package hook

import (
	"net/http"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
)

// TestOutcomesEndpointRefuses: POST /access/v1/outcomes records nothing
// for a request it cannot hold to account: no or another agent's token,
// an unknown member, an oversized body, a non-canonical resource, an
// unknown event.
func TestOutcomesEndpointRefuses(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	ok := `{"subject":{"type":"agent","id":"` + e.agent + `"},"event":"action.completed","action":{"name":"file.write"},"resource":{"type":"file","id":"` + e.repo + `/a"},"status":"ok","source":"claude-code"}`
	for _, tc := range []struct {
		name, auth, body string
		want             int
	}{
		{"no credential", "", ok, 401},
		{"garbage token", "Bearer garbage", ok, 401},
		{"another agent", "Bearer " + e.token, strings.Replace(ok, e.agent, "spiffe://example.org/agent/other", 1), 401},
		{"unknown member", "Bearer " + e.token, strings.Replace(ok, `"status"`, `"extra":1,"status"`, 1), 400},
		{"oversized", "Bearer " + e.token, strings.Replace(ok, `"source":"claude-code"`, `"source":"`+strings.Repeat("x", 20<<10)+`"`, 1), 413},
		{"dot-dot resource", "Bearer " + e.token, strings.Replace(ok, e.repo+"/a", e.repo+"/../etc/passwd", 1), 400},
		{"resource type mismatch", "Bearer " + e.token, strings.Replace(ok, `"type":"file"`, `"type":"host"`, 1), 400},
		{"unknown event", "Bearer " + e.token, strings.Replace(ok, `action.completed`, `action.decided`, 1), 400},
		{"unknown status", "Bearer " + e.token, strings.Replace(ok, `"status":"ok"`, `"status":"fine"`, 1), 400},
		{"control character", "Bearer " + e.token, strings.Replace(ok, `"source":"claude-code"`, `"source":"a\u0007b"`, 1), 400},
		{"recorded", "Bearer " + e.token, ok, 200},
	} {
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, e.s.PublicURL()+"/access/v1/outcomes", strings.NewReader(tc.body))
		req.Header.Set("Content-Type", "application/json")
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
	}
	if evs := e.events(t, audit.TypeActionCompleted); len(evs) != 1 {
		t.Errorf("action.completed events = %d, want only the accepted one: %s", len(evs), resourcesOf(evs))
	}
}
