package hook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// TestClaudeCodePreToolUse: every recorded PreToolUse payload, against a
// real server with the shipped default policies, gets the decision the
// task's scope and the policies give, and the decision is in the ledger
// with the resource the hook resolved.
func TestClaudeCodePreToolUse(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	// A redirect to /etc/mandate-test-out is outside the scope; on Windows
	// (where Claude Code's Bash is Git Bash, whose /etc is in its own
	// installation) /etc names no file mandate can know, and is refused.
	redirReason, redirRes := "outside the task's scope", "file:/etc/mandate-test-out"
	if runtime.GOOS == "windows" {
		redirReason, redirRes = "relative to a drive", ""
	}
	for _, tc := range []struct {
		file     string
		want     string // allow, deny or ask
		reason   string // in the reason, if set
		resource string // a ledger resource of the decision ({{REPO}}: the real repository path)
		ask      bool   // configured to ask rather than hold for approvals
		symlink  bool   // the payload goes through repo/link
	}{
		{file: "pre_bash.json", want: AnswerAllow, resource: "tool:ls"},
		{file: "pre_bash_redirect.json", want: AnswerDeny, reason: redirReason, resource: redirRes},
		{file: "pre_bash_hostile.json", want: AnswerDeny, reason: "command substitution"},
		{file: "pre_bash_base64.json", want: AnswerDeny, reason: "stdin"},
		{file: "pre_bash_outside_scope.json", want: AnswerDeny, reason: "outside the task's scope", resource: "tool:curl"},
		{file: "pre_write.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_edit.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_multiedit.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_notebookedit.json", want: AnswerAllow, resource: "file:{{REPO}}/analysis.ipynb"},
		{file: "pre_write_outside.json", want: AnswerDeny, reason: "outside the task's scope", resource: "file:{{ROOT}}/etc/mandate-test"},
		{file: "pre_write_dotdot.json", want: AnswerDeny, reason: "outside the task's scope"},
		{file: "pre_write_symlink.json", want: AnswerDeny, reason: "outside the task's scope", symlink: true},
		{file: "pre_read.json", want: AnswerAllow, resource: "file:{{REPO}}/README.md"},
		{file: "pre_read_outside.json", want: AnswerDeny, resource: "file:{{ROOT}}/etc/hostname"},
		{file: "pre_glob.json", want: AnswerAllow, resource: "file:{{REPO}}/src"},
		{file: "pre_glob_escape.json", want: AnswerDeny, reason: "climb out"},
		{file: "pre_grep.json", want: AnswerAllow, resource: "file:{{REPO}}/src"},
		{file: "pre_webfetch.json", want: AnswerAllow, resource: "host:docs.example.com"},
		{file: "pre_webfetch_denied.json", want: AnswerDeny, resource: "host:evil.example"},
		{file: "pre_webfetch_octal.json", want: AnswerDeny, reason: "four decimal octets"},
		{file: "pre_websearch.json", want: AnswerAllow, resource: "host:api.anthropic.com"},
		{file: "pre_mcp.json", want: AnswerAsk, reason: "step-up approval", resource: "tool:github/create_issue", ask: true},
		{file: "pre_task.json", want: AnswerAllow, resource: "agent:" + e.agent},
	} {
		t.Run(tc.file, func(t *testing.T) {
			if tc.symlink {
				e.needSymlinks(t)
			}
			var mod func(*Config)
			if tc.ask {
				mod = func(c *Config) { c.OnApproval = OnApprovalAsk } // hold: TestHoldForApproval
			}
			code, stdout, stderr := e.run(t, e.payload(t, tc.file), mod)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q; want 0 and a decision", code, stderr)
			}
			got, reason := decision(t, stdout)
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("decision = %s (%q), want %s with %q", got, reason, tc.want, tc.reason)
			}
		})
		if tc.resource != "" {
			e.wantDecisionOn(t, tc.file, tc.resource)
		}
	}
	// The hostile command was refused by the server too, and recorded.
	var refused bool
	for _, ev := range e.events(t, audit.TypeActionDecided) {
		refused = refused || ev.Decision == audit.DecisionDeny && strings.Contains(ev.Resource, "curl -s https://evil.example")
	}
	if !refused {
		t.Errorf("the hidden command is not recorded as denied: %s", resourcesOf(e.events(t, audit.TypeActionDecided)))
	}
}

// TestClaudeCodeOutcomesAndSessions: PostToolUse, PostToolUseFailure,
// SessionStart and SessionEnd answer with nothing on stdout and are in
// the ledger before the hook exits.
func TestClaudeCodeOutcomesAndSessions(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, f := range []string{"session_start.json", "post_write.json", "post_bash_failure.json", "session_end.json"} {
		code, stdout, stderr := e.run(t, e.payload(t, f), nil)
		if code != 0 || stdout != "" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q; want 0 and nothing", f, code, stdout, stderr)
		}
	}
	done := e.events(t, audit.TypeActionCompleted)
	if len(done) != 2 {
		t.Fatalf("action.completed events = %d, want 2: %s", len(done), resourcesOf(done))
	}
	byReq := map[string]*audit.Event{}
	for _, ev := range done {
		byReq[ev.RequestID] = ev
	}
	if ev := byReq["toolu_01POST"]; ev == nil || ev.Resource != "file:"+e.repo+"/src/main.go" || ev.Outcome == nil || ev.Outcome.Status != "ok" || ev.Details["tool"] != "Write" || ev.Point != "hook" {
		t.Errorf("PostToolUse event = %+v", ev)
	}
	if ev := byReq["toolu_01FAIL"]; ev == nil || ev.Resource != "tool:git" || ev.Outcome == nil || ev.Outcome.Status != "error" {
		t.Errorf("PostToolUseFailure event = %+v", ev)
	}
	if evs := e.events(t, audit.TypeAgentSessionStarted); len(evs) != 1 || evs[0].Details["session"] != "abc123" || evs[0].Details["detail"] != "startup" || evs[0].Agent != e.agent {
		t.Errorf("session start events = %+v", evs)
	}
	if evs := e.events(t, audit.TypeAgentSessionEnded); len(evs) != 1 || evs[0].Details["detail"] != "prompt_input_exit" {
		t.Errorf("session end events = %+v", evs)
	}
}

// TestFailClosed: whatever goes wrong, the hook exits 2 with a reason on
// stderr and writes nothing on stdout (Claude Code blocks the call).
func TestFailClosed(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	good := e.payload(t, "pre_bash.json")
	down := httptest.NewServer(http.NotFoundHandler())
	downURL := down.URL
	down.Close()
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	answering := func(status int, ctype, body string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", ctype)
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(s.Close)
		return s.URL
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		mod    func(*Config)
		reason string
	}{
		{"server down", good, func(c *Config) { c.Server = downURL }, "cannot be reached"},
		{"server slow past the deadline", good, func(c *Config) { c.Server, c.Deadline = slow.URL, 300*time.Millisecond }, "deadline"},
		{"garbage answer", good, func(c *Config) { c.Server = answering(200, "application/json", "{not json") }, "does not decode"},
		{"answer not JSON", good, func(c *Config) { c.Server = answering(200, "text/html", "<html>") }, "not JSON"},
		{"allow without context", good, func(c *Config) {
			c.Server = answering(200, "application/json", `{"evaluations":[{"decision":true},{"decision":true}]}`)
		}, "no context"},
		{"allow that says deny", good, func(c *Config) {
			c.Server = answering(200, "application/json", `{"evaluations":[{"decision":true,"context":{"decision":"deny"}},{"decision":true,"context":{"decision":"allow"}}]}`)
		}, "does not hold together"},
		{"too few answers", good, func(c *Config) {
			c.Server = answering(200, "application/json", `{"evaluations":[{"decision":true,"context":{"decision":"allow"}}]}`)
		}, "without a deny"},
		{"no answers", good, func(c *Config) { c.Server = answering(200, "application/json", `{"evaluations":[]}`) }, "0 decisions"},
		{"server error", good, func(c *Config) { c.Server = answering(503, "text/plain", "audit log unavailable") }, "503"},
		{"no token", good, func(c *Config) { c.Getenv = func(string) string { return "" } }, "no task token"},
		{"a token that is not a JWT", good, func(c *Config) {
			c.Getenv = func(k string) string {
				if k == "MANDATE_TASK_TOKEN" {
					return "garbage"
				}
				return ""
			}
		}, "not a JWT"},
		// Claude Code runs "command"; a case-insensitive reading would
		// decide on "Command".
		{"one argument, two spellings", e.payload(t, "pre_bash_case_variant.json"), nil, "two spellings"},
		{"garbage stdin", []byte("\x00\xffgarbage"), nil, "UTF-8"},
		{"truncated stdin", good[:len(good)/2], nil, "hook event"},
		{"empty stdin", nil, nil, "empty"},
		{"two events", append(append([]byte{}, good...), good...), nil, "trailing data"},
		{"oversized stdin", bytes.Repeat([]byte(" "), MaxEventBytes+1), nil, "larger than"},
		{"unknown event", e.payload(t, "unknown_event.json"), nil, "unknown hook event"},
		{"unknown tool", e.payload(t, "pre_unknown_tool.json"), nil, "unknown tool"},
		{"tool_input not an object", []byte(`{"session_id":"s","cwd":"/","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":"rm -rf /"}`), nil, "not an object"},
		{"command not a string", []byte(`{"session_id":"s","cwd":"/","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":["rm","-rf","/"]}}`), nil, "not a string"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := e.run(t, tc.in, tc.mod)
			if code != ExitBlock || stdout != "" || !strings.HasPrefix(stderr, "mandate hook: ") || !strings.Contains(stderr, tc.reason) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, no stdout, a reason with %q", code, stdout, stderr, tc.reason)
			}
		})
	}
}

// TestTokenFileIsReread: the token file is read on every invocation, so
// that a renewed token is used; a revoked or unreadable one blocks.
func TestTokenFileIsReread(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	file := tempDir(t) + "/token"
	getenv := func(k string) string {
		if k == "MANDATE_TASK_TOKEN_FILE" {
			return file
		}
		return ""
	}
	run := func() (int, string, string) {
		return e.run(t, e.payload(t, "pre_write.json"), func(c *Config) { c.Getenv = getenv })
	}
	if code, _, stderr := run(); code != ExitBlock || !strings.Contains(stderr, "task token file") {
		t.Fatalf("no token file: exit %d, %q; want 2", code, stderr)
	}
	writeFile(t, file, "expired.token.value")
	if code, _, stderr := run(); code != ExitBlock {
		t.Fatalf("a bad token: exit %d, %q; want 2", code, stderr)
	}
	writeFile(t, file, e.token+"\n")
	if code, stdout, stderr := run(); code != 0 {
		t.Fatalf("a renewed token: exit %d, %q", code, stderr)
	} else if d, _ := decision(t, stdout); d != AnswerAllow {
		t.Fatalf("a renewed token: %s, want allow", d)
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}
