package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// Cursor is the adapter for Cursor's agent hooks: command hooks,
// configured in .cursor/hooks.json, that get one event as JSON on stdin
// and answer on stdout. Cursor's own reference (cursor.com/docs/agent/hooks)
// was not available when this was written; the event set and shapes are
// those that the third-party references agree on, for Cursor 1.7 to 2.x:
// the cursor-hooks npm package's types (github.com/johnlindquist/cursor-hooks,
// src/types.ts), Cupcake's Cursor harness reference
// (cupcake.eqtylab.io/reference/harnesses/cursor) and hookshot's
// (github.com/CorridorSecurity/hookshot, cursor/types.go). Every event
// carries hook_event_name, conversation_id, generation_id and
// workspace_roots; the tool's arguments are members of the event itself
// (command and cwd; tool_name, tool_input and the server's url or command;
// file_path and attachments), not a tool_input object. beforeShellExecution
// and beforeMCPExecution are answered with {"permission": "allow"|"deny"|
// "ask", "user_message", "agent_message"}, beforeReadFile with the
// permission alone. Exit status 2 blocks the action.
type Cursor struct{}

var _ Adapter = Cursor{}

// Name implements Adapter.
func (Cursor) Name() string { return "cursor" }

// Cursor's events that mandate handles.
const (
	cuBeforeShell = "beforeShellExecution"
	cuBeforeMCP   = "beforeMCPExecution"
	cuBeforeRead  = "beforeReadFile"
	cuAfterShell  = "afterShellExecution"
	cuAfterMCP    = "afterMCPExecution"
	cuAfterEdit   = "afterFileEdit"
)

// cuEvent is a Cursor hook input, read by exact member names as Cursor's
// own (JavaScript) reader of a hook's answer and its tools read them:
// encoding/json would match "Command" for "command".
type cuEvent struct {
	name    string
	members map[string]json.RawMessage
}

// str reads a member that is a string (JSON null or absent: not set).
func (in *cuEvent) str(name string) (string, bool, error) {
	raw, ok := in.members[name]
	if !ok || string(raw) == "null" {
		return "", false, nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false, fmt.Errorf("%s: %s is not a string", in.name, name)
	}
	return s, true, nil
}

// need reads a member that must be a non-empty string.
func (in *cuEvent) need(name string) (string, error) {
	s, _, err := in.str(name)
	if err == nil && s == "" {
		err = fmt.Errorf("%s: %s is missing", in.name, name)
	}
	return s, err
}

// Parse implements Adapter. The conversation is the session: Cursor's
// events of this set carry no session of their own and no tool-call ID.
func (Cursor) Parse(raw []byte) (*Event, error) {
	in := &cuEvent{}
	if err := decodeEvent(raw, &in.members); err != nil {
		return nil, err
	}
	if in.members == nil {
		return nil, errors.New("hook event: not a JSON object")
	}
	name, _, err := in.str("hook_event_name")
	if err != nil {
		return nil, err
	}
	in.name = name
	ev := &Event{Name: name, Raw: in}
	switch name {
	case cuBeforeShell, cuBeforeMCP, cuBeforeRead:
		ev.Kind = BeforeTool
	case cuAfterShell, cuAfterMCP, cuAfterEdit:
		// Cursor reports no exit status or error: the outcome is that it ran.
		ev.Kind = AfterTool
	case "":
		return nil, errors.New("hook event: hook_event_name is missing")
	default:
		// stop ends an agent loop, not the conversation; beforeSubmitPrompt,
		// preToolUse, sessionStart and the others are not read here.
		return nil, fmt.Errorf("%w %s", ErrUnknownEvent, resource.Quote(name))
	}
	if ev.Session, err = in.need("conversation_id"); err != nil {
		return nil, err
	}
	switch name {
	case cuBeforeShell, cuAfterShell:
		ev.Tool = "Shell"
	case cuBeforeMCP, cuAfterMCP:
		if ev.Tool, err = in.need("tool_name"); err != nil {
			return nil, err
		}
	case cuBeforeRead:
		ev.Tool = "Read"
	case cuAfterEdit:
		ev.Tool = "Edit"
	}
	// A shell command runs in the event's cwd, which it must name (a
	// relative path read against another directory would be decided
	// as another file). The other events name absolute paths; their
	// working directory is the workspace's first root.
	cwd, set, err := in.str("cwd")
	if err != nil {
		return nil, err
	}
	if !set && name != cuBeforeShell {
		if cwd, err = cuWorkspaceRoot(in); err != nil {
			return nil, err
		}
	}
	if cwd == "" {
		return nil, fmt.Errorf("%s: cwd is missing or empty", name)
	}
	if !filepath.IsAbs(cwd) {
		return nil, fmt.Errorf("%s: cwd %s is not an absolute path", name, resource.Quote(cwd))
	}
	ev.Cwd = cwd
	// The event itself is the tool's input (an object, as decoded).
	if err := ev.complete(json.RawMessage("{}")); err != nil {
		return nil, err
	}
	return ev, nil
}

// cuWorkspaceRoot is the first of workspace_roots.
func cuWorkspaceRoot(in *cuEvent) (string, error) {
	var roots []string
	if raw, ok := in.members["workspace_roots"]; ok {
		if err := json.Unmarshal(raw, &roots); err != nil {
			return "", fmt.Errorf("%s: workspace_roots is not a list of strings", in.name)
		}
	}
	if len(roots) == 0 || roots[0] == "" {
		return "", fmt.Errorf("%s: workspace_roots is missing", in.name)
	}
	return roots[0], nil
}

// Actions implements Adapter: see docs/coding-agents.md for the mapping.
func (Cursor) Actions(ev *Event) ([]Action, error) {
	in, ok := ev.Raw.(*cuEvent)
	if !ok {
		return nil, errors.New("cursor: not a Cursor event")
	}
	switch in.name {
	case cuBeforeShell, cuAfterShell:
		cmd, err := in.need("command")
		if err != nil {
			return nil, err
		}
		if runtime.GOOS == "windows" {
			// Cursor runs it in the terminal's shell, PowerShell by default,
			// which ReadShell does not read.
			acts := opaque(policy.ActionShellExec, cmd, "a Windows command line (PowerShell) cannot be read safely")
			acts[0].Command = acts[0].Resource
			return acts, nil
		}
		return shellActions(ev.Cwd, cmd)
	case cuBeforeMCP, cuAfterMCP:
		return cuMCPAction(in, ev.Tool)
	case cuBeforeRead:
		return cuReadActions(in)
	case cuAfterEdit:
		p, err := in.need("file_path")
		if err != nil {
			return nil, err
		}
		return fileAction(policy.ActionFileWrite, "", p), nil
	}
	return nil, fmt.Errorf("%w %s", ErrUnknownTool, resource.Quote(in.name))
}

// cuMCPAction maps an MCP tool call to tool.call of <server>/<tool>. The
// event does not carry the server's name in mcp.json, only how it is
// reached: a server reached by URL is named by the URL's canonical host
// (with "_<port>" for a port other than the scheme's default); a server
// Cursor starts from a command line cannot be named (the program, often
// npx or uvx, names no server) and is denied, as is an event that names
// both or neither. tool_input is an object or, as some releases send it,
// a JSON string holding one; anything else is refused.
func cuMCPAction(in *cuEvent, tool string) ([]Action, error) {
	if err := cuToolInput(in); err != nil {
		return nil, err
	}
	u, hasURL, err := in.str("url")
	if err != nil {
		return nil, err
	}
	command, hasCommand, err := in.str("command")
	if err != nil {
		return nil, err
	}
	switch {
	case hasURL && hasCommand:
		return opaque(policy.ActionToolCall, tool, "the event names the MCP server both by url and by command: which one runs is ambiguous"), nil
	case hasCommand:
		return opaque(policy.ActionToolCall, tool, fmt.Sprintf("the MCP server started by %s cannot be named (Cursor gives its command line, not its name)", resource.Quote(command))), nil
	case !hasURL:
		return opaque(policy.ActionToolCall, tool, "the event names no MCP server (url or command)"), nil
	}
	server, err := cuServerName(u)
	if err != nil {
		return opaque(policy.ActionToolCall, tool, "the MCP server's url: "+err.Error()), nil
	}
	return []Action{{Kind: policy.ActionToolCall, Resource: server + "/" + tool, Server: server}}, nil
}

// cuToolInput checks that tool_input is an object or a JSON string whose
// content is exactly one object.
func cuToolInput(in *cuEvent) error {
	raw, ok := in.members["tool_input"]
	if !ok || len(raw) == 0 {
		return fmt.Errorf("%s: tool_input is missing", in.name)
	}
	switch raw[0] {
	case '{':
		return nil
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("%s: tool_input: %v", in.name, err)
		}
		var obj map[string]json.RawMessage
		if err := decodeOne([]byte(s), &obj); err != nil || obj == nil {
			return fmt.Errorf("%s: tool_input is a string that is not one JSON object", in.name)
		}
		return nil
	}
	return fmt.Errorf("%s: tool_input is neither an object nor a JSON string of one", in.name)
}

// cuServerName names an MCP server reached at rawURL by the URL's
// canonical host, "_<port>" appended for a port other than the scheme's
// default ("_" is in no host name, so the name is unambiguous).
func cuServerName(rawURL string) (string, error) {
	a, err := urlAction(rawURL)
	if err != nil {
		return "", err
	}
	name := a.Resource
	if host, port, ok := strings.Cut(name, ":"); ok && !strings.HasPrefix(name, "[") {
		name = host + "_" + port
	}
	if strings.HasPrefix(name, "[") {
		return "", errors.New("an IPv6 literal cannot name an MCP server")
	}
	return name, resource.CheckTool(name)
}

// cuReadActions maps beforeReadFile to the file.read of file_path and of
// every attachment (a file or rule Cursor adds to the context is read
// too). An attachment names its path as file_path or, in some releases,
// filePath: exactly one of them.
func cuReadActions(in *cuEvent) ([]Action, error) {
	p, err := in.need("file_path")
	if err != nil {
		return nil, err
	}
	acts := fileAction(policy.ActionFileRead, "", p)
	raw, ok := in.members["attachments"]
	if !ok || string(raw) == "null" {
		return acts, nil
	}
	var atts []map[string]json.RawMessage
	if err := json.Unmarshal(raw, &atts); err != nil {
		return nil, fmt.Errorf("%s: attachments is not a list of objects", in.name)
	}
	if len(atts) >= MaxShellCommands {
		return opaque(policy.ActionFileRead, p, fmt.Sprintf("more than %d attachments", MaxShellCommands-1)), nil
	}
	for i, att := range atts {
		path, _, err := gmString(fmt.Sprintf("%s: attachments[%d]", in.name, i), att, "file_path", "filePath")
		if err != nil {
			return nil, err
		}
		if path == "" {
			return nil, fmt.Errorf("%s: attachments[%d] names no file_path", in.name, i)
		}
		acts = append(acts, fileAction(policy.ActionFileRead, "", path)...)
	}
	return acts, nil
}

// cuOutput is the answer to a before* event.
type cuOutput struct {
	Permission   string `json:"permission"`
	UserMessage  string `json:"user_message,omitempty"`
	AgentMessage string `json:"agent_message,omitempty"`
}

// Render implements Adapter: beforeShellExecution and beforeMCPExecution
// get the permission and, for a deny or an ask, the reason as both
// user_message and agent_message; beforeReadFile the permission alone
// (ask, which its answer does not have, is a deny); the after* events {}.
func (Cursor) Render(w io.Writer, ev *Event, a Answer) error {
	if ev.Kind != BeforeTool {
		_, err := io.WriteString(w, "{}\n")
		return err
	}
	switch a.Decision {
	case AnswerAllow, AnswerDeny, AnswerAsk:
	default:
		return fmt.Errorf("cursor: no permission %q", a.Decision)
	}
	out := cuOutput{Permission: a.Decision}
	if ev.Name == cuBeforeRead {
		if a.Decision == AnswerAsk {
			out.Permission = AnswerDeny
		}
	} else if a.Decision != AnswerAllow {
		out.UserMessage, out.AgentMessage = a.Reason, a.Reason
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
