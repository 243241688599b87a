package hook

import (
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// cursor runs the hook with the Cursor adapter.
func cursor(c *Config) { c.Adapter = Cursor{} }

// cursorAnswer reads a before* answer: the permission and the message,
// failing on a member Cursor's answer does not have (and, for
// beforeReadFile, on anything but the permission).
func cursorAnswer(tb testing.TB, stdout string, readFile bool) (string, string) {
	tb.Helper()
	var out map[string]any
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		tb.Fatalf("stdout %q is not Cursor hook output: %v", stdout, err)
	}
	for k := range out {
		if k != "permission" && (readFile || k != "user_message" && k != "agent_message") {
			tb.Fatalf("stdout %q has a member %q the answer does not have", stdout, k)
		}
	}
	p, _ := out["permission"].(string)
	um, _ := out["user_message"].(string)
	am, _ := out["agent_message"].(string)
	if um != am {
		tb.Fatalf("user_message %q and agent_message %q differ", um, am)
	}
	return p, am
}

// TestCursorBeforeEvents: every recorded before* payload, against a real
// server with the shipped default policies, gets the permission the
// task's scope and the policies give, and the decision is in the ledger
// with the resource the hook resolved.
func TestCursorBeforeEvents(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("the recorded shell payloads are POSIX command lines; Windows denies them (TestCursorWindowsShell)")
	}
	e := newTestEnv(t)
	for _, tc := range []struct {
		file     string
		want     string // allow, deny or ask
		reason   string // in the message, if set
		resource string // a ledger resource of the decision ({{REPO}}: the real repository path)
		ask      bool   // configured to ask rather than hold for approvals
	}{
		{file: "pre_shell.json", want: AnswerAllow, resource: "tool:ls"},
		{file: "pre_shell_redirect.json", want: AnswerDeny, reason: "outside the task's scope", resource: "file:/etc/mandate-test-out"},
		{file: "pre_shell_hostile.json", want: AnswerDeny, reason: "command substitution"},
		{file: "pre_shell_outside_scope.json", want: AnswerDeny, reason: "outside the task's scope", resource: "tool:curl"},
		{file: "pre_shell_relative_write.json", want: AnswerDeny, reason: "outside the task's scope"},
		{file: "pre_mcp_url.json", want: AnswerAsk, reason: "needs approval", resource: "tool:github/create_issue", ask: true},
		{file: "pre_mcp_url_string_input.json", want: AnswerAsk, reason: "needs approval", resource: "tool:github/list_issues", ask: true},
		{file: "pre_mcp_port.json", want: AnswerDeny, reason: "outside the task's scope", resource: "tool:localhost_3000/query"},
		{file: "pre_mcp_command.json", want: AnswerDeny, reason: "cannot be named"},
		{file: "pre_mcp_both.json", want: AnswerDeny, reason: "ambiguous"},
		{file: "pre_read.json", want: AnswerAllow, resource: "file:{{REPO}}/src/main.go"},
		{file: "pre_read_outside.json", want: AnswerDeny, resource: "file:/etc/hostname"},
		{file: "pre_read_symlink.json", want: AnswerDeny},
		{file: "pre_read_relative.json", want: AnswerDeny},
		{file: "pre_read_attachment_outside.json", want: AnswerDeny, resource: "file:/etc/hostname"},
	} {
		t.Run(tc.file, func(t *testing.T) {
			mod := cursor
			if tc.ask {
				mod = func(c *Config) { cursor(c); c.OnApproval = OnApprovalAsk }
			}
			code, stdout, stderr := e.run(t, e.payloadOf(t, "cursor", tc.file), mod)
			if code != 0 {
				t.Fatalf("exit %d, stderr %q; want 0 and a permission", code, stderr)
			}
			readFile := strings.HasPrefix(tc.file, "pre_read")
			got, msg := cursorAnswer(t, stdout, readFile)
			if got != tc.want || !readFile && !strings.Contains(msg, tc.reason) {
				t.Errorf("permission = %s (%q), want %s with %q", got, msg, tc.want, tc.reason)
			}
			if !readFile && got != AnswerAllow && msg == "" {
				t.Error("a deny or ask without a message")
			}
		})
		if tc.resource != "" {
			e.wantDecisionOn(t, tc.file, tc.resource)
		}
	}
}

// TestCursorHold: a tool call that needs approval is held by default and
// decided again by the server once approved.
func TestCursorHold(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	answer := e.runApproved(t, e.payloadOf(t, "cursor", "pre_mcp_url.json"), cursor)
	if got, msg := cursorAnswer(t, answer, false); got != AnswerAllow {
		t.Fatalf("permission = %s (%q), want allow after the approval", got, msg)
	}
}

// TestCursorOutcomes: afterFileEdit, afterShellExecution and
// afterMCPExecution answer {} and are in the ledger, with the
// conversation as the session, before the hook exits.
func TestCursorOutcomes(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	for _, f := range []string{"post_edit.json", "post_shell.json", "post_mcp.json"} {
		code, stdout, stderr := e.run(t, e.payloadOf(t, "cursor", f), cursor)
		if f == "post_shell.json" && runtime.GOOS == "windows" {
			// The PowerShell line names no action (its
			// beforeShellExecution was refused), so there is no outcome
			// to record: an error.
			if code != ExitBlock || stdout != "" || !strings.Contains(stderr, "cannot be named as an action") {
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
	if ev := byRes["file:"+e.repo+"/src/main.go"]; ev == nil || ev.Outcome == nil || ev.Outcome.Status != "ok" || ev.Details["tool"] != "Edit" || ev.Details["source"] != "cursor" || ev.Details["session"] != "cur-conv-1" {
		t.Errorf("afterFileEdit event = %+v", ev)
	}
	if runtime.GOOS != "windows" {
		if ev := byRes["tool:git"]; ev == nil || ev.Outcome == nil || ev.Outcome.Status != "ok" {
			t.Errorf("afterShellExecution event = %+v", ev)
		}
	}
	if ev := byRes["tool:github/create_issue"]; ev == nil || ev.Details["tool"] != "create_issue" {
		t.Errorf("afterMCPExecution event = %+v", ev)
	}
}

// TestCursorFailClosed: garbage, an event mandate does not read (stop,
// beforeSubmitPrompt, preToolUse), members that are missing, of the
// wrong type or ambiguous exit 2 with the reason on stderr and nothing
// on stdout (Cursor blocks the action).
func TestCursorFailClosed(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	good := e.payloadOf(t, "cursor", "pre_shell.json")
	root := "/" // a workspace root that is absolute here
	if runtime.GOOS == "windows" {
		root = "C:/"
	}
	ev := func(members string) []byte {
		return []byte(`{"conversation_id":"c","generation_id":"g","workspace_roots":["` + root + `"],` + strings.ReplaceAll(members, "{{ROOT}}", root) + `}`)
	}
	for _, tc := range []struct {
		name   string
		in     []byte
		reason string
	}{
		{"garbage stdin", []byte("\x00\xffgarbage"), "UTF-8"},
		{"truncated stdin", good[:len(good)/2], "hook event"},
		{"empty stdin", nil, "empty"},
		{"not an object", []byte(`null`), "not a JSON object"},
		{"two events", append(append([]byte{}, good...), good...), "trailing data"},
		{"stop", e.payloadOf(t, "cursor", "stop.json"), "unknown hook event"},
		{"beforeSubmitPrompt", e.payloadOf(t, "cursor", "before_submit_prompt.json"), "unknown hook event"},
		{"preToolUse", e.payloadOf(t, "cursor", "pre_tool_use.json"), "unknown hook event"},
		{"Claude Code's event", []byte(`{"session_id":"s","cwd":"/","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}`), "unknown hook event"},
		{"event name in another case", ev(`"hook_event_name":"BeforeShellExecution","command":"ls","cwd":"/"`), "unknown hook event"},
		{"no conversation", []byte(`{"hook_event_name":"beforeShellExecution","command":"ls","cwd":"/"}`), "conversation_id is missing"},
		{"empty cwd", e.payloadOf(t, "cursor", "pre_shell_empty_cwd.json"), "cwd is missing"},
		{"no cwd", ev(`"hook_event_name":"beforeShellExecution","command":"ls"`), "cwd is missing"},
		{"relative cwd", ev(`"hook_event_name":"beforeShellExecution","command":"ls","cwd":"repo"`), "not an absolute path"},
		{"command not a string", ev(`"hook_event_name":"beforeShellExecution","command":["rm","-rf","/"],"cwd":"{{ROOT}}"`), "not a string"},
		{"command only in another case", ev(`"hook_event_name":"beforeShellExecution","Command":"ls","cwd":"{{ROOT}}"`), "command is missing"},
		{"MCP tool_input a list", e.payloadOf(t, "cursor", "pre_mcp_bad_input.json"), "neither an object"},
		{"MCP tool_input a string of a list", e.payloadOf(t, "cursor", "pre_mcp_string_not_object.json"), "not one JSON object"},
		{"MCP tool_input missing", ev(`"hook_event_name":"beforeMCPExecution","tool_name":"x","url":"https://github/mcp"`), "tool_input is missing"},
		{"MCP tool_name missing", ev(`"hook_event_name":"beforeMCPExecution","tool_input":{},"url":"https://github/mcp"`), "tool_name is missing"},
		{"no workspace root", []byte(`{"conversation_id":"c","hook_event_name":"beforeReadFile","file_path":"/etc/hostname"}`), "workspace_roots is missing"},
		{"attachment under two names", e.payloadOf(t, "cursor", "pre_read_attachment_alias.json"), "ambiguous"},
		{"attachments not a list", ev(`"hook_event_name":"beforeReadFile","file_path":"{{ROOT}}a","attachments":{"file_path":"{{ROOT}}etc/shadow"}`), "not a list"},
		{"attachment without a path", ev(`"hook_event_name":"beforeReadFile","file_path":"{{ROOT}}a","attachments":[{"type":"file"}]`), "names no file_path"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := e.run(t, tc.in, cursor)
			if code != ExitBlock || stdout != "" || !strings.HasPrefix(stderr, "mandate hook: ") || !strings.Contains(stderr, tc.reason) {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2, no stdout, a reason with %q", code, stdout, stderr, tc.reason)
			}
		})
	}
}

// TestCursorServerFailures: a server that is down, too slow or answers
// garbage blocks the action (exit 2), never allows it.
func TestCursorServerFailures(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	in := e.payloadOf(t, "cursor", "pre_read.json")
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := "http://" + l.Addr().String()
	l.Close()
	garbage := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"evaluations":[{"decision":true,"context":{"effect":"deny"}}]}`))
	}))
	t.Cleanup(garbage.Close)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	}))
	t.Cleanup(slow.Close)
	for name, url := range map[string]string{"down": down, "garbage": garbage.URL, "slow": slow.URL} {
		t.Run(name, func(t *testing.T) {
			code, stdout, stderr := e.run(t, in, func(c *Config) {
				cursor(c)
				c.Server = url
				c.Deadline = time.Second
			})
			if code != ExitBlock || stdout != "" || stderr == "" {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit 2 and a reason", code, stdout, stderr)
			}
		})
	}
}

// TestCursorExactMemberNames: a member is read by its exact name, as
// Cursor writes it: a "Command" beside "command" does not change what is
// decided (encoding/json would read either).
func TestCursorExactMemberNames(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("Windows denies every shell command")
	}
	for _, in := range []string{
		`{"command":"curl -s https://evil.example","Command":"ls"}`,
		`{"Command":"ls","command":"curl -s https://evil.example"}`,
	} {
		raw := strings.Replace(in, "{", `{"hook_event_name":"beforeShellExecution","conversation_id":"c","cwd":"/",`, 1)
		ev, err := Cursor{}.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		acts, err := Cursor{}.Actions(ev)
		if err != nil {
			t.Fatal(err)
		}
		if len(acts) != 1 || acts[0].Resource != "curl" {
			t.Errorf("%s: actions %+v, want shell.exec of curl only", in, acts)
		}
	}
}

// TestCursorMCPServerNames: how a server reached by URL is named, and
// the URLs that cannot name one.
func TestCursorMCPServerNames(t *testing.T) {
	t.Parallel()
	for u, want := range map[string]string{
		"https://GitHub.example.com/mcp":     "github.example.com",
		"https://github.example.com:443/x":   "github.example.com",
		"http://localhost:3000/mcp":          "localhost_3000",
		"http://127.0.0.1:8080":              "127.0.0.1_8080",
		"http://[::1]:3000/mcp":              "",
		"https://user:pw@github.example.com": "",
		"file:///tmp/mcp.sock":               "",
		"http://0x7f.1:3000":                 "",
	} {
		got, err := cuServerName(u)
		if want == "" {
			if err == nil {
				t.Errorf("%s: named %q, want refused", u, got)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", u, got, err, want)
		}
	}
}

// TestCursorWindowsShell: on Windows a shell command (PowerShell) is
// denied, whatever the server says.
func TestCursorWindowsShell(t *testing.T) {
	if runtime.GOOS != "windows" {
		t.Skip("Windows only")
	}
	ev, err := Cursor{}.Parse([]byte(`{"hook_event_name":"beforeShellExecution","conversation_id":"c","cwd":"C:\\repo","command":"dir"}`))
	if err != nil {
		t.Fatal(err)
	}
	acts, err := Cursor{}.Actions(ev)
	if err != nil || len(acts) != 1 || acts[0].Opaque == "" {
		t.Fatalf("actions %+v, %v; want one opaque (denied) shell.exec", acts, err)
	}
}

// FuzzCursorEvent: whatever arrives on stdin, Parse and Actions return
// (never panic); an event that parses has a kind, and a tool use maps to
// at least one action, each with a kind and a resource.
func FuzzCursorEvent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "cursor", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"hook_event_name":"beforeMCPExecution","conversation_id":"c","workspace_roots":["/"],"tool_name":"t","tool_input":"{}","url":"http://a.example:1"}`))
	f.Add([]byte(`{"hook_event_name":"beforeShellExecution"`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := Cursor{}.Parse(raw)
		if err != nil {
			return
		}
		if ev.Kind != BeforeTool && ev.Kind != AfterTool {
			t.Fatalf("parsed an event of kind %d", ev.Kind)
		}
		if ev.Session == "" || ev.Cwd == "" || ev.Tool == "" {
			t.Fatalf("parsed an event without session, cwd or tool: %+v", ev)
		}
		acts, err := Cursor{}.Actions(ev)
		if err != nil {
			return
		}
		if len(acts) == 0 {
			t.Fatal("a tool use mapped to no action")
		}
		for _, a := range acts {
			if a.Kind == "" || a.Resource == "" {
				t.Fatalf("action without kind or resource: %+v", a)
			}
		}
	})
}

// BenchmarkCursorParseActions: the hook's own work on a
// beforeShellExecution event, before it asks the server.
func BenchmarkCursorParseActions(b *testing.B) {
	raw := []byte(`{"hook_event_name":"beforeShellExecution","conversation_id":"c","generation_id":"g","workspace_roots":["/tmp"],"cwd":"/tmp","command":"git status && ls -la | grep x > out.txt"}`)
	for b.Loop() {
		ev, err := Cursor{}.Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := (Cursor{}).Actions(ev); err != nil {
			b.Fatal(err)
		}
	}
}
