package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// ClaudeCode is the adapter for Claude Code's hooks: command hooks that
// get one event as JSON on stdin (the fields of Claude Code's hooks
// reference: session_id, transcript_path, cwd, permission_mode,
// hook_event_name, tool_name, tool_input, tool_use_id, tool_response,
// error, is_interrupt, source, reason) and answer a PreToolUse event with
// hookSpecificOutput.permissionDecision on stdout.
type ClaudeCode struct{}

var _ Adapter = ClaudeCode{}

// Name implements Adapter.
func (ClaudeCode) Name() string { return "claude-code" }

// ccEvent is a Claude Code hook input. Members Claude Code adds in later
// releases are ignored: the input is its format, not mandate's.
type ccEvent struct {
	SessionID      string          `json:"session_id"`
	TranscriptPath string          `json:"transcript_path"`
	Cwd            string          `json:"cwd"`
	PermissionMode string          `json:"permission_mode"`
	HookEventName  string          `json:"hook_event_name"`
	ToolName       string          `json:"tool_name"`
	ToolInput      json.RawMessage `json:"tool_input"`
	ToolUseID      string          `json:"tool_use_id"`
	ToolResponse   json.RawMessage `json:"tool_response"`
	Error          string          `json:"error"`
	IsInterrupt    bool            `json:"is_interrupt"`
	Source         string          `json:"source"`
	Reason         string          `json:"reason"`
}

// Parse implements Adapter.
func (ClaudeCode) Parse(raw []byte) (*Event, error) {
	var in ccEvent
	if err := decodeEvent(raw, &in); err != nil {
		return nil, err
	}
	// encoding/json matched "Tool_Name" to tool_name and kept the last of
	// two: an event whose member names are not distinct is refused.
	if err := distinctKeys("hook event", raw); err != nil {
		return nil, err
	}
	ev := &Event{Name: in.HookEventName, Session: in.SessionID, ToolUseID: in.ToolUseID, Cwd: in.Cwd, Tool: in.ToolName, Raw: &in}
	switch in.HookEventName {
	case "PreToolUse":
		ev.Kind = BeforeTool
	case "PostToolUse":
		ev.Kind = AfterTool
	case "PostToolUseFailure":
		ev.Kind, ev.Failed, ev.Interrupted = AfterTool, true, in.IsInterrupt
	case "SessionStart":
		ev.Kind, ev.Detail = SessionStart, in.Source
	case "SessionEnd":
		ev.Kind, ev.Detail = SessionEnd, in.Reason
	case "":
		return nil, errors.New("hook event: hook_event_name is missing")
	default:
		return nil, fmt.Errorf("%w %s", ErrUnknownEvent, resource.Quote(in.HookEventName))
	}
	if err := ev.complete(in.ToolInput); err != nil {
		return nil, err
	}
	return ev, nil
}

// Tool inputs, as Claude Code's tools define them (only the members that
// name what the tool touches).
type (
	ccBash struct {
		Command *string `json:"command"`
	}
	ccFile struct {
		FilePath     string `json:"file_path"`
		NotebookPath string `json:"notebook_path"`
	}
	ccSearch struct {
		Pattern *string `json:"pattern"`
		Path    string  `json:"path"`
	}
	ccFetch struct {
		URL string `json:"url"`
	}
)

// webSearchHost is the host a WebSearch is decided for: the search runs
// on Anthropic's side, not from the agent's machine.
const webSearchHost = "api.anthropic.com"

// Actions implements Adapter: see docs/coding-agents.md for the mapping.
func (ClaudeCode) Actions(ev *Event) ([]Action, error) {
	in, ok := ev.Raw.(*ccEvent)
	if !ok {
		return nil, errors.New("claude-code: not a Claude Code event")
	}
	input := in.ToolInput
	if !strings.HasPrefix(in.ToolName, "mcp__") {
		// Claude Code's own tools (an MCP tool's arguments are its
		// server's business, not part of what is decided).
		if err := distinctKeys(in.ToolName, input); err != nil {
			return nil, err
		}
	}
	switch tool := in.ToolName; tool {
	case "Bash":
		var b ccBash
		if err := json.Unmarshal(input, &b); err != nil || b.Command == nil {
			return nil, fmt.Errorf("%s: tool_input.command is missing or not a string", tool)
		}
		return shellActions(in.Cwd, *b.Command)
	case "Write", "Edit", "MultiEdit", "NotebookEdit", "Read":
		var f ccFile
		if err := json.Unmarshal(input, &f); err != nil {
			return nil, fmt.Errorf("%s: tool_input: %v", tool, err)
		}
		p := f.FilePath
		if tool == "NotebookEdit" {
			p = f.NotebookPath
		}
		if p == "" {
			return nil, fmt.Errorf("%s: tool_input names no file", tool)
		}
		kind := policy.ActionFileWrite
		if tool == "Read" {
			kind = policy.ActionFileRead
		}
		return fileAction(kind, in.Cwd, p), nil
	case "Glob", "Grep":
		var s ccSearch
		if err := json.Unmarshal(input, &s); err != nil || s.Pattern == nil {
			return nil, fmt.Errorf("%s: tool_input.pattern is missing or not a string", tool)
		}
		root := s.Path
		if root == "" {
			root = in.Cwd
		}
		if tool == "Glob" {
			return globAction(in.Cwd, root, *s.Pattern), nil
		}
		return fileAction(policy.ActionFileRead, in.Cwd, root), nil
	case "WebFetch":
		var f ccFetch
		if err := json.Unmarshal(input, &f); err != nil || f.URL == "" {
			return nil, fmt.Errorf("%s: tool_input.url is missing", tool)
		}
		a, err := urlAction(f.URL)
		if err != nil {
			return opaque(policy.ActionHTTPRequest, f.URL, err.Error()), nil
		}
		return []Action{a}, nil
	case "WebSearch":
		return []Action{{Kind: policy.ActionHTTPRequest, Resource: webSearchHost,
			Destination: policy.Destination{Host: webSearchHost, Method: "POST"}}}, nil
	case "Task", "Agent":
		if ev.Agent == "" {
			return nil, fmt.Errorf("%s: the agent is not known", tool)
		}
		return []Action{{Kind: policy.ActionTaskDelegate, Resource: ev.Agent}}, nil
	default:
		if rest, ok := strings.CutPrefix(tool, "mcp__"); ok {
			server, name, ok := strings.Cut(rest, "__")
			if !ok || server == "" || name == "" {
				return nil, fmt.Errorf("%w %s: want mcp__<server>__<tool>", ErrUnknownTool, resource.Quote(tool))
			}
			return []Action{{Kind: policy.ActionToolCall, Resource: server + "/" + name, Server: server}}, nil
		}
		return nil, fmt.Errorf("%w %s", ErrUnknownTool, resource.Quote(tool))
	}
}

// fileAction is the action on a path, or a denied one if the path does
// not resolve to a canonical real path.
func fileAction(kind, cwd, p string) []Action {
	real, err := RealPath(cwd, p)
	if err != nil {
		return opaque(kind, p, err.Error())
	}
	return []Action{{Kind: kind, Resource: real}}
}

// opaque is a denied action: seen is what the tool named, which the
// server refuses as not canonical and records.
func opaque(kind, seen, why string) []Action {
	if len(seen) > resource.MaxLen {
		seen = seen[:resource.MaxLen]
	}
	if seen == "" {
		seen = "?"
	}
	return []Action{{Kind: kind, Resource: seen, Opaque: why}}
}

// globAction is the file.read of what a glob pattern can match: the
// pattern's literal directory prefix, under root unless it is absolute.
func globAction(cwd, root, pattern string) []Action {
	prefix, err := globRoot(pattern)
	if err != nil {
		return opaque(policy.ActionFileRead, pattern, err.Error())
	}
	if prefix != "" {
		if filepath.IsAbs(prefix) || strings.HasPrefix(prefix, "/") {
			root = prefix
		} else {
			root = filepath.Join(root, prefix)
		}
	}
	return fileAction(policy.ActionFileRead, cwd, root)
}

// globRoot returns the literal directory prefix of a glob pattern, the
// root of what it can match. A ".." after the first wildcard could climb
// out of it: refused.
func globRoot(pattern string) (string, error) {
	segs := strings.Split(filepath.ToSlash(pattern), "/")
	var lit []string
	for i, s := range segs {
		if strings.ContainsAny(s, "*?[{") {
			for _, t := range segs[i:] {
				if strings.Contains(t, "..") { // "..", or one inside braces: {a,../..}
					return "", errors.New("a \"..\" after a wildcard can climb out of the pattern's root")
				}
			}
			break
		}
		if i == len(segs)-1 {
			break // the last literal segment may be a file name: its directory is the root
		}
		lit = append(lit, s)
	}
	if len(lit) == 1 && lit[0] == "" {
		return "/", nil
	}
	return strings.Join(lit, "/"), nil
}

// shellActions maps a Bash command line to the actions it takes.
func shellActions(cwd, line string) ([]Action, error) {
	rd := ReadShell(line)
	if rd.Opaque != "" {
		acts := opaque(policy.ActionShellExec, line, "the command cannot be read safely: "+rd.Opaque)
		acts[0].Command = acts[0].Resource
		return acts, nil
	}
	if len(rd.Commands) == 0 && len(rd.Writes) == 0 && len(rd.Reads) == 0 {
		return opaque(policy.ActionShellExec, line, "the command line runs nothing mandate can name"), nil
	}
	var acts []Action
	for _, c := range rd.Commands {
		prog := c.Program
		if strings.ContainsAny(prog, `/\`) {
			real, err := RealPath(cwd, prog)
			if err != nil {
				return opaque(policy.ActionShellExec, prog, err.Error()), nil
			}
			prog = real
		}
		text := c.Text
		if len(text) > resource.MaxLen {
			text = text[:resource.MaxLen]
		}
		acts = append(acts, Action{Kind: policy.ActionShellExec, Resource: prog, Command: text})
	}
	for _, w := range rd.Writes {
		acts = append(acts, fileAction(policy.ActionFileWrite, cwd, w)...)
	}
	for _, r := range rd.Reads {
		acts = append(acts, fileAction(policy.ActionFileRead, cwd, r)...)
	}
	return acts, nil
}

// ccOutput is the answer to a PreToolUse event.
type ccOutput struct {
	HookSpecificOutput ccDecision `json:"hookSpecificOutput"`
}

type ccDecision struct {
	HookEventName            string `json:"hookEventName"`
	PermissionDecision       string `json:"permissionDecision"`
	PermissionDecisionReason string `json:"permissionDecisionReason,omitempty"`
}

// Render implements Adapter: a PreToolUse event is answered with
// hookSpecificOutput; the others with nothing (exit status 0).
func (ClaudeCode) Render(w io.Writer, ev *Event, a Answer) error {
	if ev.Kind != BeforeTool {
		return nil
	}
	switch a.Decision {
	case AnswerAllow, AnswerDeny, AnswerAsk:
	default:
		return fmt.Errorf("claude-code: no permission decision %q", a.Decision)
	}
	b, err := json.Marshal(ccOutput{ccDecision{HookEventName: "PreToolUse", PermissionDecision: a.Decision, PermissionDecisionReason: a.Reason}})
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
