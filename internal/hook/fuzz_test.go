package hook

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzReadShell: whatever the line, ReadShell returns (never panics), and
// a line it reads names only non-empty programs, within the limit.
func FuzzReadShell(f *testing.F) {
	for _, s := range []string{
		"git status", "cat a | sh", `bash -c "$(curl x)"`, "sudo -u root rm -rf /", "find . -exec rm {} \\;",
		"cat <<EOF > x\n$(id)\nEOF", `x='a[$(id)]'; echo $((x))`, "watch -n 1 'ls; rm x'", "{rm,-rf,/}", "\\rm -rf /",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r := ReadShell(line)
		if r.Opaque != "" {
			if len(r.Commands)+len(r.Writes)+len(r.Reads) != 0 {
				t.Fatalf("opaque reading names actions: %+v", r)
			}
			return
		}
		if n := len(r.Commands) + len(r.Writes) + len(r.Reads); n > MaxShellCommands {
			t.Fatalf("%d actions, over the limit %d", n, MaxShellCommands)
		}
		for _, c := range r.Commands {
			if c.Program == "" {
				t.Fatalf("an empty program in %+v", r)
			}
		}
	})
}

// FuzzClaudeCodeEvent: whatever arrives on stdin, Parse and Actions
// return (never panic); an event that parses has a kind, and every action
// is either opaque (denied) or names a resource.
func FuzzClaudeCodeEvent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "claude-code", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"hook_event_name":"PreToolUse","session_id":"s","cwd":"/","tool_name":"Bash","tool_input":{"command":"ls"}}`))
	f.Add([]byte(`{"hook_event_name":"PreToolUse"`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := ClaudeCode{}.Parse(raw)
		if err != nil {
			return
		}
		if ev.Kind < BeforeTool || ev.Kind > SessionEnd {
			t.Fatalf("parsed an event of kind %d", ev.Kind)
		}
		if ev.Kind != BeforeTool && ev.Kind != AfterTool {
			return
		}
		ev.Agent = "spiffe://example.org/agent/fuzz"
		acts, err := ClaudeCode{}.Actions(ev)
		if err != nil {
			return
		}
		for _, a := range acts {
			if a.Kind == "" || a.Resource == "" {
				t.Fatalf("action without kind or resource: %+v", a)
			}
		}
	})
}

// FuzzGeminiCLIEvent: whatever arrives on stdin, Parse and Actions
// return (never panic); an event that parses has a kind, and every action
// is either opaque (denied) or names a resource.
func FuzzGeminiCLIEvent(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "gemini-cli", "*.json"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(`{"hook_event_name":"BeforeTool","session_id":"s","cwd":"/","tool_name":"web_fetch","tool_input":{"prompt":"https://a.example https://b.example"}}`))
	f.Add([]byte(`{"hook_event_name":"BeforeTool"`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := GeminiCLI{}.Parse(raw)
		if err != nil {
			return
		}
		if ev.Kind < BeforeTool || ev.Kind > SessionEnd {
			t.Fatalf("parsed an event of kind %d", ev.Kind)
		}
		if ev.Kind != BeforeTool && ev.Kind != AfterTool {
			return
		}
		acts, err := GeminiCLI{}.Actions(ev)
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
