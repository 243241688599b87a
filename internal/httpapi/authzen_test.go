package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// fakeDecider allows resources named "ok*", requires approval for
// "hold*", denies the rest; the token "good" is the only valid one.
type fakeDecider struct {
	mu      sync.Mutex
	acts    []access.Action
	auths   int
	refused []error
}

var _ Decider = (*fakeDecider)(nil)

func (f *fakeDecider) decide(act access.Action) access.Decision {
	f.mu.Lock()
	f.acts = append(f.acts, act)
	f.mu.Unlock()
	switch {
	case strings.HasPrefix(act.Resource, "ok"):
		return access.Decision{Decision: policy.Decision{Effect: policy.Allow, Reasons: []policy.Reason{{Policy: "p", Effect: "permit"}}, Obligations: []string{"redact"}}}
	case strings.HasPrefix(act.Resource, "hold"):
		return access.Decision{Decision: policy.Decision{Effect: policy.ApprovalRequired, Approvals: []string{"step-up"}, Reasons: []policy.Reason{{Policy: "f", Effect: "forbid", Message: "needs step-up"}}}}
	}
	return access.Decision{Decision: policy.Decision{Effect: policy.Deny}}
}

func (f *fakeDecider) Authenticate(_ context.Context, cred access.Credential, act access.Action) (access.Subject, error) {
	f.mu.Lock()
	f.auths++
	f.mu.Unlock()
	if cred.Token != "good" || cred.Agent != "spiffe://example.org/agent/a" {
		return access.Subject{}, fmt.Errorf("%w: bad token", access.ErrUnauthenticated)
	}
	return access.Subject{Task: "tsk_x", Agent: cred.Agent}, nil
}

func (f *fakeDecider) DecideAs(_ context.Context, subj access.Subject, act access.Action) (access.Decision, error) {
	if act.Resource == "audit-down" {
		return access.Decision{Decision: policy.Decision{Effect: policy.Deny}}, errors.Join(access.ErrInvalidAction, audit.ErrUnavailable)
	}
	return f.decide(act), nil
}

func (f *fakeDecider) RefuseCredential(_ context.Context, act access.Action, cause error) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refused = append(f.refused, cause)
	return fmt.Errorf("%w: %w", access.ErrUnauthenticated, cause)
}

func (f *fakeDecider) DecideFor(_ context.Context, id task.ID, agent string, act access.Action) (access.Decision, error) {
	if !act.Trusted {
		panic("enforcement point actions must be trusted")
	}
	return f.decide(act), nil
}

func newAuthZENServer(t *testing.T) (*httptest.Server, *fakeDecider) {
	t.Helper()
	f := &fakeDecider{}
	mux := http.NewServeMux()
	NewAuthZEN(AuthZENConfig{
		Pipeline: f, PublicURL: "https://pdp.example",
		PointAuth: func(r *http.Request) (string, bool) { return "gw", r.Header.Get("Authorization") == "Bearer ep-secret" },
	}).Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, f
}

func post(t *testing.T, srv *httptest.Server, path, auth, body string, hdr map[string]string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const subj = `"subject": {"type": "agent", "id": "spiffe://example.org/agent/a"}`

func TestAuthZENEvaluation(t *testing.T) {
	t.Parallel()
	srv, f := newAuthZENServer(t)
	body := `{` + subj + `, "action": {"name": "tool.call"}, "resource": {"type": "tool", "id": "ok/tool", "properties": {"server": "ok"}}, "context": {"ignored": 1}}`
	resp, got := post(t, srv, "/access/v1/evaluation", "Bearer good", body, map[string]string{"X-Request-ID": "req-1"})
	if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") != "req-1" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("evaluation: %d %v %s", resp.StatusCode, resp.Header, got)
	}
	var r AZResponse
	if err := json.Unmarshal([]byte(got), &r); err != nil || !r.Decision || r.Context.Decision != "allow" || r.Context.Obligations[0] != "redact" {
		t.Errorf("evaluation response = %s", got)
	}
	if a := f.acts[0]; a.Kind != "tool.call" || a.Resource != "ok/tool" || a.Server != "ok" || a.RequestID != "req-1" || a.Trusted {
		t.Errorf("action = %+v", a)
	}
	// approval_required is decision false with the approvals.
	body = `{` + subj + `, "action": {"name": "tool.call"}, "resource": {"type": "tool", "id": "hold/x"}}`
	_, got = post(t, srv, "/access/v1/evaluation", "Bearer good", body, nil)
	if !strings.Contains(got, `"decision":false`) || !strings.Contains(got, `"approval_required"`) || !strings.Contains(got, `"step-up"`) {
		t.Errorf("approval response = %s", got)
	}
}

func TestAuthZENErrors(t *testing.T) {
	t.Parallel()
	srv, _ := newAuthZENServer(t)
	ok := `{` + subj + `, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "ok"}}`
	tests := []struct {
		name, auth, body string
		want             int
	}{
		{"no credential", "", ok, 401},
		{"bad token", "Bearer bad", ok, 401},
		{"token for another agent", "Bearer good", strings.Replace(ok, "agent/a", "agent/b", 1), 401},
		{"malformed JSON", "Bearer good", `{"subject":`, 400},
		{"trailing data", "Bearer good", ok + `{}`, 400},
		{"unknown member", "Bearer good", `{"subjekt": {}}`, 400},
		{"missing subject", "Bearer good", `{"action": {"name": "file.read"}, "resource": {"type": "file", "id": "x"}}`, 400},
		{"subject not an agent", "Bearer good", `{"subject": {"type": "user", "id": "u"}, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "x"}}`, 400},
		{"missing action", "Bearer good", `{` + subj + `, "resource": {"type": "file", "id": "x"}}`, 400},
		{"unknown action", "Bearer good", `{` + subj + `, "action": {"name": "file.delete"}, "resource": {"type": "file", "id": "x"}}`, 400},
		{"wrong resource type", "Bearer good", `{` + subj + `, "action": {"name": "file.read"}, "resource": {"type": "host", "id": "x"}}`, 400},
		{"missing resource id", "Bearer good", `{` + subj + `, "action": {"name": "file.read"}, "resource": {"type": "file"}}`, 400},
		{"deep JSON", "Bearer good", `{` + subj + `, "context": ` + strings.Repeat(`{"a":`, 40) + `1` + strings.Repeat(`}`, 40) + `}`, 400},
		{"huge", "Bearer good", `{"subject": {"type": "agent", "id": "` + strings.Repeat("x", MaxAuthZENBody) + `"}}`, 413},
		{"enforcement point without task", "Bearer ep-secret", ok, 400},
		{"audit log down", "Bearer good", strings.Replace(ok, `"id": "ok"`, `"id": "audit-down"`, 1), 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, got := post(t, srv, "/access/v1/evaluation", tt.auth, tt.body, map[string]string{"X-Request-ID": "e"})
			if resp.StatusCode != tt.want {
				t.Errorf("status = %d (%s), want %d", resp.StatusCode, got, tt.want)
			}
			if resp.Header.Get("X-Request-ID") != "e" {
				t.Errorf("X-Request-ID not echoed on an error")
			}
			// RFC 6750 §3.1: an error code only when a credential was
			// sent; RFC 9449 §7.1: the DPoP challenge lists its algorithms.
			var challenges []string
			switch {
			case tt.want != 401:
			case tt.auth == "":
				challenges = []string{`Bearer realm="mandate"`, `DPoP realm="mandate", algs="EdDSA ES256"`}
			default:
				challenges = []string{`Bearer realm="mandate", error="invalid_token"`, `DPoP realm="mandate", algs="EdDSA ES256"`}
			}
			if got := resp.Header.Values("WWW-Authenticate"); strings.Join(got, "\n") != strings.Join(challenges, "\n") {
				t.Errorf("WWW-Authenticate = %q, want %q", got, challenges)
			}
			if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") || strings.TrimSpace(got) == "" {
				t.Errorf("error body = %q (%s), want an error message string", got, resp.Header.Get("Content-Type"))
			}
		})
	}
}

func TestAuthZENEnforcementPoint(t *testing.T) {
	t.Parallel()
	srv, f := newAuthZENServer(t)
	tid := string(task.NewID())
	body := `{"subject": {"type": "agent", "id": "spiffe://example.org/agent/z", "properties": {"task": "` + tid + `"}}, "action": {"name": "tool.call", "properties": {"approvals": ["step-up"]}}, "resource": {"type": "tool", "id": "ok/t", "properties": {"annotations": {"readOnlyHint": true}, "labels": ["x"]}}, "context": {"destination": {"host": "h"}}}`
	resp, got := post(t, srv, "/access/v1/evaluation", "Bearer ep-secret", body, nil)
	if resp.StatusCode != 200 || !strings.Contains(got, `"decision":true`) {
		t.Fatalf("enforcement point: %d %s", resp.StatusCode, got)
	}
	a := f.acts[0]
	if !a.Trusted || a.Point != "authzen" || a.Caller != "gw" || a.Annotations == nil || !*a.Annotations.ReadOnlyHint || a.Approvals[0] != "step-up" || a.Destination.Host != "h" {
		t.Errorf("action = %+v", a)
	}
}

func TestAuthZENEvaluations(t *testing.T) {
	t.Parallel()
	srv, f := newAuthZENServer(t)
	items := `"evaluations": [{"resource": {"type": "file", "id": "ok1"}}, {"resource": {"type": "file", "id": "no"}}, {"resource": {"type": "file", "id": "ok2"}}, {"action": {"name": "bogus"}}]`
	head := `{` + subj + `, "action": {"name": "file.read"}, `
	decisions := func(got string) []string {
		var out struct {
			Evaluations []AZResponse `json:"evaluations"`
		}
		if err := json.Unmarshal([]byte(got), &out); err != nil {
			t.Fatalf("%v: %s", err, got)
		}
		var ds []string
		for _, e := range out.Evaluations {
			s := fmt.Sprint(e.Decision)
			if e.Context != nil && e.Context.Error != nil {
				s += fmt.Sprintf("/error%d", e.Context.Error.Status)
			}
			ds = append(ds, s)
		}
		return ds
	}
	tests := []struct {
		semantic string
		want     []string
	}{
		{"", []string{"true", "false", "true", "false/error400"}},
		{`, "options": {"evaluations_semantic": "execute_all"}`, []string{"true", "false", "true", "false/error400"}},
		{`, "options": {"evaluations_semantic": "deny_on_first_deny"}`, []string{"true", "false"}},
		{`, "options": {"evaluations_semantic": "permit_on_first_permit"}`, []string{"true"}},
	}
	for _, tt := range tests {
		resp, got := post(t, srv, "/access/v1/evaluations", "Bearer good", head+items+tt.semantic+`}`, map[string]string{"X-Request-ID": "b"})
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") != "b" {
			t.Fatalf("%s: %d %s", tt.semantic, resp.StatusCode, got)
		}
		if diff := cmp.Diff(tt.want, decisions(got)); diff != "" {
			t.Errorf("semantic %q (-want +got):\n%s", tt.semantic, diff)
		}
	}
	// A batch authenticates once (a DPoP proof is single-use).
	f.mu.Lock()
	f.auths = 0
	f.mu.Unlock()
	post(t, srv, "/access/v1/evaluations", "Bearer good", head+items+`}`, nil)
	if f.auths != 1 {
		t.Errorf("a batch authenticated %d times, want 1", f.auths)
	}
	// Another agent in one entry of a task-token batch is refused.
	resp, _ := post(t, srv, "/access/v1/evaluations", "Bearer good", head+`"evaluations": [{"resource": {"type": "file", "id": "ok"}}, {"subject": {"type": "agent", "id": "spiffe://example.org/agent/b"}, "resource": {"type": "file", "id": "ok"}}]}`, nil)
	if resp.StatusCode != 401 {
		t.Errorf("batch about another agent: %d, want 401", resp.StatusCode)
	}
	// Without evaluations: a single decision.
	_, got := post(t, srv, "/access/v1/evaluations", "Bearer good", head+`"resource": {"type": "file", "id": "ok"}}`, nil)
	if !strings.HasPrefix(got, `{"decision":true`) {
		t.Errorf("evaluations without an array = %s", got)
	}
	// Bad semantic, too many evaluations: 400.
	resp, _ = post(t, srv, "/access/v1/evaluations", "Bearer good", head+items+`, "options": {"evaluations_semantic": "first"}}`, nil)
	if resp.StatusCode != 400 {
		t.Errorf("bad semantic: %d", resp.StatusCode)
	}
	many := strings.Repeat(`{"resource": {"type": "file", "id": "ok"}},`, MaxEvaluations+1)
	resp, _ = post(t, srv, "/access/v1/evaluations", "Bearer good", head+`"evaluations": [`+strings.TrimSuffix(many, ",")+`]}`, nil)
	if resp.StatusCode != 400 {
		t.Errorf("too many evaluations: %d", resp.StatusCode)
	}
	// An unauthenticated batch is a 401, not per-item errors.
	resp, _ = post(t, srv, "/access/v1/evaluations", "Bearer bad", head+items+`}`, nil)
	if resp.StatusCode != 401 {
		t.Errorf("bad token batch: %d", resp.StatusCode)
	}
}

func TestAuthZENMetadata(t *testing.T) {
	t.Parallel()
	srv, _ := newAuthZENServer(t)
	resp, err := srv.Client().Get(srv.URL + "/.well-known/authzen-configuration")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var md map[string]string
	if err := json.NewDecoder(resp.Body).Decode(&md); err != nil || resp.StatusCode != 200 {
		t.Fatal(err, resp.StatusCode)
	}
	want := map[string]string{
		"policy_decision_point":       "https://pdp.example",
		"access_evaluation_endpoint":  "https://pdp.example/access/v1/evaluation",
		"access_evaluations_endpoint": "https://pdp.example/access/v1/evaluations",
	}
	if diff := cmp.Diff(want, md); diff != "" {
		t.Errorf("metadata (-want +got):\n%s", diff)
	}
}

// FuzzDecodeAuthZEN: the request decoder never panics, and whatever it
// accepts maps to an action or a clear error.
func FuzzDecodeAuthZEN(f *testing.F) {
	f.Add([]byte(`{` + subj + `, "action": {"name": "tool.call"}, "resource": {"type": "tool", "id": "ok/tool"}}`))
	f.Add([]byte(`{"subject": {"type": "agent", "id": "x", "properties": {"task": "tsk_x"}}, "action": {"name": "task.delegate"}, "resource": {"type": "agent", "id": "y", "properties": {"tier": "assist"}}, "context": {"destination": {"host": "h", "method": "GET", "path": "/"}}}`))
	f.Add([]byte(`{"evaluations": [{}], "options": {"evaluations_semantic": "deny_on_first_deny"}}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[`))
	f.Add([]byte(`{"subject": "\"{{{{"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var ev AZEvaluations
		if err := DecodeAuthZEN(b, &ev); err != nil {
			if status, _ := errorStatus(err); status != 400 && status != 413 {
				t.Fatalf("decode error %v maps to %d", err, status)
			}
			return
		}
		for _, item := range append([]AZEvaluation{ev.AZEvaluation}, ev.Evaluations...) {
			act, err := ToAction(merge(ev.AZEvaluation, item))
			if err != nil {
				if status, _ := errorStatus(err); status != 400 {
					t.Fatalf("ToAction error %v maps to %d", err, status)
				}
				continue
			}
			if policy.ResourceType(act.Kind) == "" || act.Resource == "" {
				t.Fatalf("ToAction accepted %+v", act)
			}
		}
	})
}
