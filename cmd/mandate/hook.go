package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/hook"
)

// hookExit is a hook's exit status whose reason is already on stderr, in
// the form the coding agent reads: run returns the status without adding
// to it.
type hookExit struct{ code int }

func (e hookExit) Error() string { return fmt.Sprintf("hook exit status %d", e.code) }

// silentExit reports the status of a hookExit.
func silentExit(err error) (int, bool) {
	var he hookExit
	if errors.As(err, &he) {
		return he.code, true
	}
	return 0, false
}

// hookAdapters are the coding agents `mandate hook` speaks to.
var hookAdapters = map[string]hook.Adapter{"claude-code": hook.ClaudeCode{}, "gemini-cli": hook.GeminiCLI{}, "cursor": hook.Cursor{}}

// hookAgentHelp is what differs, in 'mandate hook <agent> --help', from
// one agent to another: its events and answer, what --on-approval ask
// does, and an event to try by hand.
type hookAgentHelp struct{ title, events, ask, event string }

var hookHelp = map[string]hookAgentHelp{
	"claude-code": {"Claude Code", `Reads one Claude Code hook event (PreToolUse, PostToolUse,
PostToolUseFailure, SessionStart, SessionEnd) on stdin and answers it:
a PreToolUse event with hookSpecificOutput.permissionDecision allow or deny
and the reason on stdout; the others by recording them in the ledger.`,
		"--on-approval ask answers ask instead, so that Claude Code's\nown prompt decides.",
		`{"session_id":"s1","cwd":"/repo","hook_event_name":"PreToolUse","tool_name":"Bash","tool_input":{"command":"git status"},"tool_use_id":"toolu_1"}`},
	"gemini-cli": {"Gemini CLI", `Reads one Gemini CLI hook event (BeforeTool, AfterTool, SessionStart,
SessionEnd) on stdin and answers it: a BeforeTool event with {"decision":
"allow"} or {"decision": "deny", "reason": ...} on stdout; the others by
recording them in the ledger and answering {}.`,
		"Gemini CLI's hooks cannot ask: --on-approval ask denies such a\ncall, saying it needs approval.",
		`{"session_id":"s1","cwd":"/repo","hook_event_name":"BeforeTool","tool_name":"run_shell_command","tool_input":{"command":"git status"}}`},
	"cursor": {"Cursor", `Reads one Cursor hook event (beforeShellExecution, beforeMCPExecution,
beforeReadFile, afterShellExecution, afterMCPExecution, afterFileEdit) on
stdin and answers it: a before* event with {"permission": "allow"|"deny"|
"ask"} and, for a shell or MCP call, the reason as user_message and
agent_message (beforeReadFile: the permission alone); the after* events by
recording them in the ledger and answering {}. Other events (stop,
beforeSubmitPrompt, preToolUse, sessionStart, ...) are refused: do not
configure the hook there.`,
		"--on-approval ask answers ask instead, so that Cursor asks you\n(beforeReadFile, which cannot ask: deny).",
		`{"conversation_id":"c1","generation_id":"g1","workspace_roots":["/repo"],"hook_event_name":"beforeShellExecution","command":"git status","cwd":"/repo"}`},
}

func (a *app) hookCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "hook",
		Short: "Govern a coding agent's tool calls from inside it (Claude Code, Gemini CLI and Cursor hooks)",
		Long: `A coding agent runs 'mandate hook <agent>' before and after every tool use
and at the start and end of a session. Each tool use is mapped to mandate
actions (a shell command to shell.exec of every program it starts, a file
tool to file.read or file.write of the real path, a fetch to http.request,
an MCP tool to tool.call, a sub-agent to task.delegate) and decided by the
server's AuthZEN API with the task's token; outcomes and sessions go to the
ledger. Any failure blocks the call (exit status 2). See docs/coding-agents.md.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(a.hookRunCmd("claude-code"), a.hookRunCmd("gemini-cli"), a.hookRunCmd("cursor"), a.hookInstallCmd())
	return cmd
}

func (a *app) hookRunCmd(agent string) *cobra.Command {
	var server, dpopKeyFile, deadline, onApproval string
	h := hookHelp[agent]
	install := "see docs/coding-agents.md"
	if agent == "claude-code" || agent == "cursor" {
		install = "see 'mandate hook install " + agent + "'"
	}
	cmd := &cobra.Command{
		Use:   agent,
		Short: "Answer one " + h.title + " hook event (stdin → stdout)",
		Long: h.events + `

A tool use that needs a person's approval (mandate's approval_required) is
held by default: the hook waits, within its deadline, for the approval
request to be decided (mandate approval approve, or the approval page), then
asks the server again; not approved in time, it is blocked with the
approval's id. ` + h.ask + `

The task token comes from the file $MANDATE_TASK_TOKEN_FILE (read on every
call, so that a renewed token is used) or $MANDATE_TASK_TOKEN; a DPoP-bound
token needs its key (--dpop-key). It fails closed: garbage, truncated or
oversized input, an unknown event or tool, no token, an unreachable server,
an answer that is not a decision, or the deadline exits with status 2 and the
reason on stderr, which blocks the call.`,
		Example: `  # what ` + h.title + ` runs (` + install + `):
  MANDATE_SERVER=https://mandate.example.com MANDATE_TASK_TOKEN_FILE=~/.mandate/task-token \
    mandate hook ` + agent + ` < event.json
  # try it by hand:
  echo '` + h.event + `' |
    mandate hook ` + agent + ` --server http://127.0.0.1:8420`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg := hook.Config{
				Adapter: hookAdapters[agent],
				Server:  firstNonEmpty(server, a.getenv("MANDATE_SERVER")),
				Getenv:  a.getenv, Stdin: cmd.InOrStdin(), Stdout: a.stdout, Stderr: a.stderr,
			}
			fail := func(err error) error {
				fmt.Fprintf(a.stderr, "mandate hook: %v\n", err)
				return hookExit{hook.ExitBlock}
			}
			if cfg.Server == "" {
				return fail(errors.New("no server: pass --server or set MANDATE_SERVER"))
			}
			if d := firstNonEmpty(deadline, a.getenv("MANDATE_HOOK_DEADLINE")); d != "" {
				v, err := time.ParseDuration(d)
				if err != nil || v <= 0 {
					return fail(fmt.Errorf("--deadline %q: want a positive duration such as 20s", d))
				}
				cfg.Deadline = v
			}
			switch cfg.OnApproval = firstNonEmpty(onApproval, a.getenv("MANDATE_HOOK_ON_APPROVAL")); cfg.OnApproval {
			case "", hook.OnApprovalHold, hook.OnApprovalAsk:
			default:
				return fail(fmt.Errorf("--on-approval %q: want %s or %s", cfg.OnApproval, hook.OnApprovalHold, hook.OnApprovalAsk))
			}
			if dpopKeyFile = firstNonEmpty(dpopKeyFile, a.getenv("MANDATE_DPOP_KEY")); dpopKeyFile != "" {
				key, err := readPrivateJWK(dpopKeyFile)
				if err != nil {
					return fail(err)
				}
				cfg.DPoPKey = key
			}
			if code := hook.Run(cmd.Context(), cfg); code != 0 {
				return hookExit{code}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&server, "server", "", "the mandate server's public URL (default $MANDATE_SERVER)")
	cmd.Flags().StringVar(&dpopKeyFile, "dpop-key", "", "private JWK file of the key a DPoP-bound task token is bound to (default $MANDATE_DPOP_KEY)")
	cmd.Flags().StringVar(&onApproval, "on-approval", "", "what a tool use that needs approval gets: hold (wait for mandate's approval, the default) or ask (the agent's own prompt; Gemini CLI and Cursor's beforeReadFile: deny) (default $MANDATE_HOOK_ON_APPROVAL)")
	cmd.Flags().StringVar(&deadline, "deadline", "", fmt.Sprintf("give up and block the call after this long; keep it under the hook's timeout (default $MANDATE_HOOK_DEADLINE, else %s)", hook.DefaultDeadline))
	return cmd
}

// hookTimeout is the timeout, in seconds, the installed settings give
// each hook: the hook's own deadline (hook.DefaultDeadline) is shorter.
const hookTimeout = 60

// hookEvents are the Claude Code events mandate hooks, and whether the
// event takes a tool matcher.
var hookEvents = []struct {
	name    string
	matcher bool
}{
	{"PreToolUse", true}, {"PostToolUse", true}, {"PostToolUseFailure", true},
	{"SessionStart", false}, {"SessionEnd", false},
}

// hookInstallTargets are the agents 'mandate hook install' configures:
// the settings file under the project (or home) directory, and how
// mandate's hook is merged into it.
var hookInstallTargets = map[string]struct {
	file  string
	merge func(existing []byte, command string) ([]byte, error)
}{
	"claude-code": {filepath.Join(".claude", "settings.json"), mergeHookSettings},
	"cursor":      {filepath.Join(".cursor", "hooks.json"), mergeCursorHooks},
}

func (a *app) hookInstallCmd() *cobra.Command {
	var project, user, print bool
	var command, dir string
	cmd := &cobra.Command{
		Use:   "install claude-code|cursor",
		Short: "Write (or print) the Claude Code or Cursor settings that run mandate's hook",
		Long: `Adds mandate's hook to a coding agent's settings.

claude-code: .claude/settings.json gets PreToolUse, PostToolUse and
PostToolUseFailure for every tool (matcher "*"), SessionStart and SessionEnd,
each running 'mandate hook claude-code' with a 60 s timeout (the hook gives
up, and blocks, after 55 s).

cursor: .cursor/hooks.json ({"version": 1}) gets beforeShellExecution,
beforeMCPExecution and beforeReadFile with failClosed (a hook that crashes or
times out blocks the action too), and afterShellExecution,
afterMCPExecution and afterFileEdit, each running 'mandate hook cursor' with
a 60 s timeout.

--project writes the file under the current directory (or --dir), --user
under your home directory; --print writes the settings to stdout instead.
An existing file is merged: its other keys and other hooks are kept, an
earlier mandate hook is replaced, and a file that is not valid JSON is
refused, never overwritten.

The hook reads MANDATE_SERVER and MANDATE_TASK_TOKEN_FILE (or
MANDATE_TASK_TOKEN) from the agent's environment ('mandate run' sets them).`,
		Example: `  mandate hook install claude-code --project
  mandate hook install claude-code --user
  mandate hook install claude-code --print > /tmp/settings.json
  mandate hook install claude-code --project --command "/usr/local/bin/mandate hook claude-code"
  mandate hook install cursor --project`,
		Args: exactArgs("agent"),
		RunE: func(cmd *cobra.Command, args []string) error {
			target, ok := hookInstallTargets[args[0]]
			if !ok {
				return usageError{fmt.Errorf("hook install: unknown coding agent %q (known: claude-code, cursor; Gemini CLI is configured by hand, see docs/coding-agents.md)", args[0])}
			}
			if project && user {
				return usageError{errors.New("hook install: --project and --user exclude each other")}
			}
			if !project && !user && !print {
				return usageError{errors.New("hook install: choose --project, --user or --print")}
			}
			if command == "" {
				command = defaultHookCommand(args[0])
			}
			var path string
			switch {
			case project:
				base := dir
				if base == "" {
					wd, err := os.Getwd()
					if err != nil {
						return err
					}
					base = wd
				}
				path = filepath.Join(base, target.file)
			case user:
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("hook install --user: %w", err)
				}
				path = filepath.Join(home, target.file)
			}
			var existing []byte
			if path != "" {
				b, err := os.ReadFile(path)
				if err != nil && !errors.Is(err, os.ErrNotExist) {
					return err
				}
				existing = b
			}
			out, err := target.merge(existing, command)
			if err != nil {
				return fmt.Errorf("%s: %w", firstNonEmpty(path, "settings"), err)
			}
			if print {
				_, err := a.stdout.Write(out)
				return err
			}
			if err := writeFileAtomic(path, out); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "mandate's hook is in %s\n", path)
			return nil
		},
	}
	cmd.Flags().BoolVar(&project, "project", false, "write the project's settings (.claude/settings.json, .cursor/hooks.json)")
	cmd.Flags().BoolVar(&user, "user", false, "write your own settings (~/.claude/settings.json, ~/.cursor/hooks.json)")
	cmd.Flags().BoolVar(&print, "print", false, "print the settings (merged with the chosen file, if any) instead of writing them")
	cmd.Flags().StringVar(&command, "command", "", "the hook command (default: this mandate binary's absolute path with 'hook <agent>')")
	cmd.Flags().StringVar(&dir, "dir", "", "the project directory for --project (default the current directory)")
	return cmd
}

// cursorHookEvents are the Cursor events mandate hooks, and whether the
// hook is to fail closed there (a before* event: Cursor otherwise lets
// the action run when the hook crashes or times out).
var cursorHookEvents = []struct {
	name       string
	failClosed bool
}{
	{"beforeShellExecution", true}, {"beforeMCPExecution", true}, {"beforeReadFile", true},
	{"afterShellExecution", false}, {"afterMCPExecution", false}, {"afterFileEdit", false},
}

// mergeCursorHooks adds mandate's hook to a Cursor hooks.json (existing,
// possibly empty): other keys, events and hooks are kept as they are; a
// hook of an earlier install (a command ending in "hook cursor") is
// replaced. A version other than 1 is refused: its format is not known.
func mergeCursorHooks(existing []byte, command string) ([]byte, error) {
	file := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := json.Unmarshal(existing, &file); err != nil || file == nil {
			return nil, fmt.Errorf("not a valid JSON hooks file, left as it is: %v", err)
		}
	}
	if v, ok := file["version"]; ok && string(v) != "1" {
		return nil, fmt.Errorf("\"version\" is %s, not 1: left as it is", v)
	}
	file["version"] = json.RawMessage("1")
	hooks := map[string]json.RawMessage{}
	if raw, ok := file["hooks"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &hooks); err != nil {
			return nil, fmt.Errorf("\"hooks\" is not an object, left as it is: %v", err)
		}
	}
	for _, ev := range cursorHookEvents {
		var entries []json.RawMessage
		if raw, ok := hooks[ev.name]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &entries); err != nil {
				return nil, fmt.Errorf("\"hooks.%s\" is not a list, left as it is: %v", ev.name, err)
			}
		}
		var kept []json.RawMessage
		for _, e := range entries {
			var h struct {
				Command string `json:"command"`
			}
			if json.Unmarshal(e, &h) == nil && strings.HasSuffix(strings.TrimSpace(h.Command), "hook cursor") {
				continue // an earlier install of mandate's hook
			}
			kept = append(kept, e)
		}
		mine := map[string]any{"command": command, "timeout": hookTimeout}
		if ev.failClosed {
			mine["failClosed"] = true
		}
		b, err := json.Marshal(mine)
		if err != nil {
			return nil, err
		}
		if hooks[ev.name], err = json.Marshal(append(kept, b)); err != nil {
			return nil, err
		}
	}
	b, err := json.Marshal(hooks)
	if err != nil {
		return nil, err
	}
	file["hooks"] = b
	out, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// defaultHookCommand runs this binary by its absolute path, so that the
// agent's PATH does not choose which program governs it.
func defaultHookCommand(agent string) string {
	exe, err := os.Executable()
	if err != nil {
		return "mandate hook " + agent
	}
	if strings.ContainsAny(exe, " '\"\\$`") {
		exe = "'" + strings.ReplaceAll(exe, "'", `'\''`) + "'"
	}
	return exe + " hook " + agent
}

// mergeHookSettings adds mandate's hook to Claude Code settings (existing,
// possibly empty): other keys, events, matcher groups and hooks are kept
// as they are (members mandate does not know included); a hook of an
// earlier install (a command ending in "hook claude-code") is replaced.
func mergeHookSettings(existing []byte, command string) ([]byte, error) {
	settings := map[string]json.RawMessage{}
	if len(bytes.TrimSpace(existing)) > 0 {
		if err := json.Unmarshal(existing, &settings); err != nil {
			return nil, fmt.Errorf("not valid JSON settings, left as it is: %v", err)
		}
	}
	hooks := map[string]json.RawMessage{}
	if raw, ok := settings["hooks"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &hooks); err != nil {
			return nil, fmt.Errorf("\"hooks\" is not an object, left as it is: %v", err)
		}
	}
	mineCmd, _ := json.Marshal(map[string]any{"type": "command", "command": command, "timeout": hookTimeout})
	for _, ev := range hookEvents {
		var groups []map[string]json.RawMessage
		if raw, ok := hooks[ev.name]; ok && string(raw) != "null" {
			if err := json.Unmarshal(raw, &groups); err != nil {
				return nil, fmt.Errorf("\"hooks.%s\" is not a list of matcher groups, left as it is: %v", ev.name, err)
			}
		}
		var kept []map[string]json.RawMessage
		for _, g := range groups {
			var cmds []json.RawMessage
			if raw, ok := g["hooks"]; ok {
				if err := json.Unmarshal(raw, &cmds); err != nil {
					return nil, fmt.Errorf("\"hooks.%s[].hooks\" is not a list, left as it is: %v", ev.name, err)
				}
			}
			var left []json.RawMessage
			for _, c := range cmds {
				var h struct {
					Command string `json:"command"`
				}
				if json.Unmarshal(c, &h) == nil && strings.HasSuffix(strings.TrimSpace(h.Command), "hook claude-code") {
					continue // an earlier install of mandate's hook
				}
				left = append(left, c)
			}
			if len(cmds) > 0 && len(left) == 0 {
				continue
			}
			if len(cmds) > 0 {
				b, _ := json.Marshal(left)
				g["hooks"] = b
			}
			kept = append(kept, g)
		}
		mine := map[string]json.RawMessage{"hooks": json.RawMessage("[" + string(mineCmd) + "]")}
		if ev.matcher {
			mine["matcher"] = json.RawMessage(`"*"`)
		}
		b, err := json.Marshal(append(kept, mine))
		if err != nil {
			return nil, err
		}
		hooks[ev.name] = b
	}
	b, err := json.Marshal(hooks)
	if err != nil {
		return nil, err
	}
	settings["hooks"] = b
	out, err := json.MarshalIndent(settings, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// writeFileAtomic writes b to path through a temporary file in the same
// directory, so that a crash never leaves half a settings file.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	mode := os.FileMode(0o644)
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".settings-*.json")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(mode); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
