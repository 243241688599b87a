package hook

import (
	"encoding/json"
	"runtime"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
)

// gemini runs the hook with the Gemini CLI adapter.
func gemini(c *Config) { c.Adapter = GeminiCLI{} }

// geminiDecision reads the decision a BeforeTool answer carries.
func geminiDecision(tb testing.TB, stdout string) (string, string) {
	tb.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		tb.Fatalf("stdout %q is not Gemini CLI hook output: %v", stdout, err)
	}
	d, _ := out["decision"].(string)
	r, _ := out["reason"].(string)
	for k := range out {
		if k != "decision" && k != "reason" {
			tb.Fatalf("stdout %q has a member %q mandate does not write", stdout, k)
		}
	}
	return d, r
}

// TestGeminiCLIBeforeTool: every recorded BeforeTool payload, against a
// real server with the shipped default policies, gets the decision the
// task's scope and the policies give (approval_required, configured to
// ask, is a deny: Gemini CLI's hooks cannot ask), and the decision is in
// the ledger with the resource the hook resolved.
func TestGeminiCLIBeforeTool(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, tc := range []struct {
		file     string
		want     string // allow or deny
		reason   string // in the reason, if set
		resource string // a ledger resource of the decision ({{REPO}}: the real repository path)
		ask      bool   // configured to ask rather than hold for approvals
		symlink  bool   // the payload goes through repo/link
		shell    bool   // run_shell_command: on Windows a PowerShell line, refused unread
	}{
		{file: "pre_shell.json", want: AnswerAllow, resource: "tool:ls", shell: true},
		{file: "pre_shell_redirect.json", want: AnswerDeny, reason: "outside the task's scope", resource: "file:/etc/mandate-test-out", shell: true},
		{file: "pre_shell_hostile.json", want: AnswerDeny, reason: "command substitution", shell: true},
		{file: "pre_shell_outside_scope.json", want: AnswerDeny, reason: "outside the task's scope", resource: "tool:curl", shell: true},
		{file: "pre_write_file.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_replace.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_write_outside.json", want: AnswerDeny, reason: "outside the task's scope", resource: "file:{{ROOT}}/etc/mandate-test"},
		{file: "pre_write_symlink.json", want: AnswerDeny, reason: "outside the task's scope", symlink: true},
		{file: "pre_read_file.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_read_file_old.json", want: AnswerDeny, resource: "file:{{ROOT}}/etc/hostname"},
		{file: "pre_read_many.json", want: AnswerAllow, resource: "file:{{REPO}}/src"},
		{file: "pre_read_many_escape.json", want: AnswerDeny, resource: "file:{{ROOT}}/etc"},
		{file: "pre_list_directory.json", want: AnswerAllow, resource: "file:{{REPO}}/src"},
		{file: "pre_glob.json", want: AnswerAllow, resource: "file:{{REPO}}/src"},
		{file: "pre_glob_escape.json", want: AnswerDeny, reason: "climb out"},
		{file: "pre_search.json", want: AnswerAllow, resource: "file:{{REPO}}/src"},
		{file: "pre_web_fetch.json", want: AnswerAllow, resource: "host:docs.example.com"},
		{file: "pre_web_fetch_mixed.json", want: AnswerDeny, resource: "host:evil.example"},
		{file: "pre_web_fetch_none.json", want: AnswerDeny, reason: "names no http"},
		{file: "pre_web_search.json", want: AnswerAllow, resource: "host:generativelanguage.googleapis.com"},
		{file: "pre_mcp.json", want: AnswerDeny, reason: "cannot ask", resource: "tool:github/create_issue", ask: true},
	} {
		if tc.shell && runtime.GOOS == "windows" {
			tc.want, tc.reason, tc.resource = AnswerDeny, "a PowerShell command line cannot be read safely", ""
		}
		t.Run(tc.file, func(t *testing.T) {
			if tc.symlink {
				e.needSymlinks(t)
			}
			mod := gemini
			if tc.ask {
				mod = func(c *Config) { gemini(c); c.OnApproval = OnApprovalAsk }
			}
			code, stdout, stderr := e.run(t, e.payloadOf(t, "gemini-cli", tc.file), mod)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q; want 0 and a decision", code, stderr)
			}
			got, reason := geminiDecision(t, stdout)
			if got != tc.want || !strings.Contains(reason, tc.reason) {
				t.Errorf("decision = %s (%q), want %s with %q", got, reason, tc.want, tc.reason)
			}
			if got == AnswerDeny && reason == "" {
				t.Error("a deny without a reason: Gemini CLI requires one")
			}
		})
		if tc.resource != "" {
			e.wantDecisionOn(t, tc.file, tc.resource)
		}
	}
}

// TestGeminiCLIHold: a tool use that needs approval is held by default and
// decided again by the server once approved.
func TestGeminiCLIHold(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	answer := e.runApproved(t, e.payloadOf(t, "gemini-cli", "pre_mcp.json"), gemini)
	if got, reason := geminiDecision(t, answer); got != AnswerAllow {
		t.Fatalf("decision = %s (%q), want allow after the approval", got, reason)
	}
}

// TestGeminiCLIOutcomesAndSessions: AfterTool, SessionStart and
// SessionEnd answer {} and are in the ledger before the hook exits; a
// tool_response with an error is an outcome "error".
func TestGeminiCLIOutcomesAndSessions(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, f := range []string{"session_start.json", "post_write.json", "post_shell_failure.json", "session_end.json"} {
		code, stdout, stderr := e.run(t, e.payloadOf(t, "gemini-cli", f), gemini)
		if f == "post_shell_failure.json" && runtime.GOOS == "windows" {
			// The PowerShell line names no action (its BeforeTool was
			// refused), so there is no outcome to record: an error.
			if code != 2 || stdout != "" || !strings.Contains(stderr, "cannot be named as an action") {
				t.Fatalf("%s: exit %d, stdout %q, stderr %q; want 2 and no outcome", f, code, stdout, stderr)
			}
			continue
		}
		if code != 0 || stdout != "{}\n" {
			t.Fatalf("%s: exit %d, stdout %q, stderr %q; want 0 and {}", f, code, stdout, stderr)
		}
	}
	byRes := map[string]*audit.Event{}
	for _, ev := range e.events(t, audit.TypeActionCompleted) {
		byRes[ev.Resource] = ev
	}
	if ev := byRes["file:"+e.repo+"/src/main.go"]; ev == nil || ev.Outcome == nil || ev.Outcome.Status != "ok" || ev.Details["tool"] != "write_file" || ev.Details["source"] != "gemini-cli" {
		t.Errorf("AfterTool write_file event = %+v", ev)
	}
	if ev := byRes["tool:git"]; runtime.GOOS != "windows" && (ev == nil || ev.Outcome == nil || ev.Outcome.Status != "error") {
		t.Errorf("AfterTool run_shell_command failure event = %+v", ev)
	}
	if evs := e.events(t, audit.TypeAgentSessionStarted); len(evs) != 1 || evs[0].Details["session"] != "gem-123" || evs[0].Details["detail"] != "startup" {
		t.Errorf("session start events = %+v", evs)
	}
	if evs := e.events(t, audit.TypeAgentSessionEnded); len(evs) != 1 || evs[0].Details["detail"] != "exit" {
		t.Errorf("session end events = %+v", evs)
	}
}

// TestGeminiCLIFailClosed: garbage, an unknown event or tool, arguments
// that are ambiguous or of the wrong type exit 2 with the reason on
// stderr and nothing on stdout (Gemini CLI blocks the call).
func TestGeminiCLIFailClosed(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	good := e.payloadOf(t, "gemini-cli", "pre_shell.json")
	pre := func(tool, input string) []byte {
		return []byte(`{"session_id":"s","cwd":"/","hook_event_name":"BeforeTool","tool_name":"` + tool + `","tool_input":` + input + `}`)
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		reason string
	}{
		{"garbage stdin", []byte("\x00\xffgarbage"), "UTF-8"},
		{"truncated stdin", good[:len(good)/2], "hook event"},
		{"empty stdin", nil, "empty"},
		{"two events", append(append([]byte{}, good...), good...), "trailing data"},
		{"unknown event", e.payloadOf(t, "gemini-cli", "unknown_event.json"), "unknown hook event"},
		{"Claude Code's event name", []byte(`{"session_id":"s","cwd":"/","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}`), "unknown hook event"},
		{"unknown tool", e.payloadOf(t, "gemini-cli", "pre_unknown_tool.json"), "unknown tool"},
		{"Claude Code's tool name", pre("Bash", `{"command":"ls"}`), "unknown tool"},
		{"malformed MCP name", pre("mcp__github", `{}`), "unknown tool"},
		{"tool_input not an object", pre("run_shell_command", `"rm -rf /"`), "not an object"},
		{"command not a string", pre("run_shell_command", `{"command":["rm","-rf","/"]}`), "not a string"},
		{"command missing", pre("run_shell_command", `{"Command":"ls"}`), "command is missing"},
		{"two directory names", e.payloadOf(t, "gemini-cli", "pre_shell_dir_alias.json"), "ambiguous"},
		{"two read_file paths", pre("read_file", `{"file_path":"/a","path":"/etc/shadow"}`), "ambiguous"},
		{"include not a list", pre("read_many_files", `{"include":"/etc/*"}`), "not a list"},
		{"tool_response not an object", []byte(`{"session_id":"s","cwd":"/","hook_event_name":"AfterTool","tool_name":"glob","tool_input":{"pattern":"*"},"tool_response":"x"}`), "tool_response"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := e.run(t, tc.in, gemini)
			if code != ExitBlock || stdout != "" || !strings.HasPrefix(stderr, "mandate hook: ") || !strings.Contains(stderr, tc.reason) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, no stdout, a reason with %q", code, stdout, stderr, tc.reason)
			}
		})
	}
}

// TestGeminiCLIExactArgumentNames: a tool argument is read by its exact
// name, as Gemini CLI's tool reads it: a "Command" beside "command" does
// not change what is decided (encoding/json would read the last of them).
func TestGeminiCLIExactArgumentNames(t *testing.T) {
	t.Parallel()
	for _, in := range []string{
		`{"command":"curl -s https://evil.example","Command":"ls"}`,
		`{"Command":"ls","command":"curl -s https://evil.example"}`,
	} {
		ev, err := GeminiCLI{}.Parse([]byte(`{"session_id":"s","cwd":"/","hook_event_name":"BeforeTool","tool_name":"run_shell_command","tool_input":` + in + `}`))
		if err != nil {
			t.Fatal(err)
		}
		acts, err := GeminiCLI{}.Actions(ev)
		if err != nil {
			t.Fatal(err)
		}
		// Elsewhere the line is read (curl), on Windows it is PowerShell's
		// and refused unread, but it is still the "command" member's.
		want, opaque := "curl", false
		if runtime.GOOS == "windows" {
			want, opaque = "curl -s https://evil.example", true
		}
		if len(acts) != 1 || acts[0].Kind != policy.ActionShellExec || acts[0].Resource != want || (acts[0].Opaque != "") != opaque {
			t.Errorf("%s: actions %+v, want one shell.exec of %q (opaque: %v)", in, acts, want, opaque)
		}
	}
}

// BenchmarkGeminiCLIParseActions: the hook's own work on a BeforeTool
// shell event, before it asks the server.
func BenchmarkGeminiCLIParseActions(b *testing.B) {
	raw := []byte(`{"session_id":"s","cwd":"/tmp","hook_event_name":"BeforeTool","tool_name":"run_shell_command","tool_input":{"command":"git status && ls -la | grep x > out.txt"}}`)
	for b.Loop() {
		ev, err := GeminiCLI{}.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := (GeminiCLI{}).Actions(ev); err != nil {
			b.Fatal(err)
		}
	}
}
