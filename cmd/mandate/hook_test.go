package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestHookInstallMerges: installing into an existing settings file keeps
// its other keys and hooks (members mandate does not know included),
// replaces an earlier mandate hook instead of adding a second, and
// refuses a file that is not valid JSON without touching it.
func TestHookInstallMerges(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, ".claude", "settings.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	const existing = `{"model": "opus", "permissions": {"allow": ["Bash(ls)"]},
	  "hooks": {"PreToolUse": [{"matcher": "Bash", "hooks": [{"type": "command", "command": "./lint.sh", "onFailure": "block"}]}]}}`
	if err := os.WriteFile(path, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}
	install := func() (int, string) {
		var out, errb bytes.Buffer
		code := run(t.Context(), []string{"hook", "install", "claude-code", "--project", "--dir", dir, "--command", "/opt/mandate hook claude-code"}, &out, &errb, func(string) string { return "" })
		return code, out.String() + errb.String()
	}
	for range 2 { // twice: the second install replaces the first
		if code, out := install(); code != 0 {
			t.Fatalf("install: %d %s", code, out)
		}
	}
	b, _ := os.ReadFile(path)
	var got struct {
		Model       string         `json:"model"`
		Permissions map[string]any `json:"permissions"`
		Hooks       map[string][]struct {
			Matcher string           `json:"matcher"`
			Hooks   []map[string]any `json:"hooks"`
		} `json:"hooks"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Model != "opus" || got.Permissions == nil {
		t.Errorf("other keys lost: %s", b)
	}
	pre := got.Hooks["PreToolUse"]
	if len(pre) != 2 || pre[0].Hooks[0]["command"] != "./lint.sh" || pre[0].Hooks[0]["onFailure"] != "block" {
		t.Errorf("the existing PreToolUse hook was not kept as it was: %s", b)
	}
	for _, ev := range []string{"PreToolUse", "PostToolUse", "PostToolUseFailure", "SessionStart", "SessionEnd"} {
		n := 0
		for _, g := range got.Hooks[ev] {
			for _, h := range g.Hooks {
				if h["command"] == "/opt/mandate hook claude-code" {
					n++
					if h["timeout"] != float64(hookTimeout) || h["type"] != "command" {
						t.Errorf("%s hook = %v", ev, h)
					}
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d mandate hooks, want 1: %s", ev, n, b)
		}
	}

	if err := os.WriteFile(path, []byte(`{"hooks": {`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := install(); code != 1 || !strings.Contains(out, "not valid JSON") {
		t.Errorf("malformed settings: %d %s, want a refusal", code, out)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"hooks": {` {
		t.Errorf("malformed settings were overwritten: %s", b)
	}
}

// TestHookGeminiCLIRegistered: 'mandate hook gemini-cli' is the Gemini
// CLI adapter, and it fails closed (exit 2, the reason on stderr, nothing
// on stdout) without a server or on an event of another agent.
func TestHookGeminiCLIRegistered(t *testing.T) {
	for _, tc := range []struct {
		name   string
		env    map[string]string
		stdin  string
		reason string
	}{
		{"no server", nil, `{}`, "no server"},
		{"a Claude Code event", map[string]string{"MANDATE_SERVER": "http://127.0.0.1:1", "MANDATE_TASK_TOKEN": "x"},
			`{"session_id":"s","cwd":"/","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"ls"}}`, "unknown hook event"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			a := &app{stdout: &out, stderr: &errb, getenv: func(k string) string { return tc.env[k] }}
			root := a.rootCmd()
			root.SetArgs([]string{"hook", "gemini-cli"})
			root.SetIn(strings.NewReader(tc.stdin))
			root.SetOut(&out)
			root.SetErr(&errb)
			var exit hookExit
			if err := root.ExecuteContext(t.Context()); !errors.As(err, &exit) || exit.code != 2 || out.Len() != 0 || !strings.Contains(errb.String(), tc.reason) {
				t.Errorf("exit %+v, stdout %q, stderr %q; want 2, nothing, %q", exit, out.String(), errb.String(), tc.reason)
			}
		})
	}
}

// TestHookInstallCursor: installing into an existing .cursor/hooks.json
// keeps its other hooks, replaces an earlier mandate hook, makes the
// before* hooks fail closed, and refuses a version it does not know
// without touching the file; an agent install does not configure is
// refused.
func TestHookInstallCursor(t *testing.T) {
	dir := tempDir(t)
	path := filepath.Join(dir, ".cursor", "hooks.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	const existing = `{"version": 1, "hooks": {"afterFileEdit": [{"command": "./hooks/format.sh"}], "stop": [{"command": "./hooks/audit.sh"}]}}`
	if err := os.WriteFile(path, []byte(existing), 0o644); err != nil {
		t.Fatal(err)
	}
	install := func(agent string) (int, string) {
		var out, errb bytes.Buffer
		code := run(t.Context(), []string{"hook", "install", agent, "--project", "--dir", dir, "--command", "/opt/mandate hook cursor"}, &out, &errb, func(string) string { return "" })
		return code, out.String() + errb.String()
	}
	for range 2 {
		if code, out := install("cursor"); code != 0 {
			t.Fatalf("install: %d %s", code, out)
		}
	}
	b, _ := os.ReadFile(path)
	var got struct {
		Version int                         `json:"version"`
		Hooks   map[string][]map[string]any `json:"hooks"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Version != 1 || len(got.Hooks["stop"]) != 1 || got.Hooks["stop"][0]["command"] != "./hooks/audit.sh" {
		t.Errorf("other hooks lost: %s", b)
	}
	if edit := got.Hooks["afterFileEdit"]; len(edit) != 2 || edit[0]["command"] != "./hooks/format.sh" {
		t.Errorf("the existing afterFileEdit hook was not kept first: %s", b)
	}
	for _, ev := range []string{"beforeShellExecution", "beforeMCPExecution", "beforeReadFile", "afterShellExecution", "afterMCPExecution", "afterFileEdit"} {
		n := 0
		for _, h := range got.Hooks[ev] {
			if h["command"] == "/opt/mandate hook cursor" {
				n++
				before := strings.HasPrefix(ev, "before")
				if h["timeout"] != float64(60) || (h["failClosed"] == true) != before {
					t.Errorf("%s: mandate's hook %v: want timeout 60 and failClosed %v", ev, h, before)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s has %d mandate hooks, want 1: %s", ev, n, b)
		}
	}
	if err := os.WriteFile(path, []byte(`{"version": 2, "hooks": {}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, out := install("cursor"); code != 1 || !strings.Contains(out, "not 1") {
		t.Errorf("version 2: %d %s, want refused", code, out)
	}
	if b, _ := os.ReadFile(path); string(b) != `{"version": 2, "hooks": {}}` {
		t.Errorf("a refused file was changed: %s", b)
	}
	if code, out := install("gemini-cli"); code == 0 || !strings.Contains(out, "unknown coding agent") {
		t.Errorf("install gemini-cli: %d %s, want refused", code, out)
	}
}

// tempDir is t.TempDir, except that a failure to remove it afterwards is
// not a test failure: under Wine 8.0 (CI runs these tests there) Go
// cannot delete anything (its Deleteat asks for
// FileDispositionInformationEx, which Wine does not implement), so the
// directory is left in the Wine prefix, which CI empties.
func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", strings.ReplaceAll(tb.Name(), "/", "_"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
