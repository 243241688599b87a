package hook

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// GeminiCLI is the adapter for Gemini CLI's hooks: command hooks that get
// one event as JSON on stdin (the base fields of Gemini CLI's hooks
// reference: session_id, transcript_path, cwd, hook_event_name,
// timestamp; for tool events tool_name, tool_input, mcp_context and
// tool_response; source and reason for the session events) and answer a
// BeforeTool event with {"decision": "allow"|"deny", "reason": ...} on
// stdout. Gemini CLI's hooks have no "ask": a tool use that needs
// approval is held (the default) or, configured to ask, denied.
type GeminiCLI struct{}

var _ Adapter = GeminiCLI{}

// Name implements Adapter.
func (GeminiCLI) Name() string { return "gemini-cli" }

// gmEvent is a Gemini CLI hook input. Members Gemini CLI adds in later
// releases are ignored.
type gmEvent struct {
	SessionID      string          `json:"session_id"`
	TranscriptPath string          `json:"transcript_path"`
	Cwd            string          `json:"cwd"`
	HookEventName  string          `json:"hook_event_name"`
	Timestamp      string          `json:"timestamp"`
	ToolName       string          `json:"tool_name"`
	ToolInput      json.RawMessage `json:"tool_input"`
	MCPContext     json.RawMessage `json:"mcp_context"`
	ToolResponse   json.RawMessage `json:"tool_response"`
	Source         string          `json:"source"`
	Reason         string          `json:"reason"`
}

// Parse implements Adapter.
func (GeminiCLI) Parse(raw []byte) (*Event, error) {
	var in gmEvent
	if err := decodeEvent(raw, &in); err != nil {
		return nil, err
	}
	ev := &Event{Name: in.HookEventName, Session: in.SessionID, Cwd: in.Cwd, Tool: in.ToolName, Raw: &in}
	switch in.HookEventName {
	case "BeforeTool":
		ev.Kind = BeforeTool
	case "AfterTool":
		ev.Kind = AfterTool
		failed, err := gmFailed(in.ToolResponse)
		if err != nil {
			return nil, err
		}
		ev.Failed = failed
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

// gmFailed says whether an AfterTool's tool_response (llmContent,
// returnDisplay and an optional error) reports an error.
func gmFailed(resp json.RawMessage) (bool, error) {
	if len(resp) == 0 || string(resp) == "null" {
		return false, nil
	}
	var r map[string]json.RawMessage
	if err := json.Unmarshal(resp, &r); err != nil {
		return false, errors.New("hook event: tool_response is not an object")
	}
	e := string(r["error"])
	return e != "" && e != "null" && e != `""`, nil
}

// webSearchHostGemini is the host a google_web_search is decided for: the
// search runs through the Gemini API, not from the agent's machine.
const webSearchHostGemini = "generativelanguage.googleapis.com"

// maxFetchURLs is the most URLs one web_fetch prompt may carry (Gemini
// CLI's own limit).
const maxFetchURLs = 20

// Actions implements Adapter: see docs/coding-agents.md for the mapping.
// Tool arguments are read by their exact names, as Gemini CLI's tools
// read them (not case-insensitively, as encoding/json would), and a tool
// whose argument has changed its name across releases accepts each name
// but refuses more than one.
func (GeminiCLI) Actions(ev *Event) ([]Action, error) {
	in, ok := ev.Raw.(*gmEvent)
	if !ok {
		return nil, errors.New("gemini-cli: not a Gemini CLI event")
	}
	var args map[string]json.RawMessage
	if err := json.Unmarshal(in.ToolInput, &args); err != nil {
		return nil, fmt.Errorf("%s: tool_input: %v", in.ToolName, err)
	}
	arg := func(names ...string) (string, bool, error) { return gmString(in.ToolName, args, names...) }
	need := func(names ...string) (string, error) {
		s, ok, err := arg(names...)
		if err == nil && !ok {
			err = fmt.Errorf("%s: tool_input.%s is missing", in.ToolName, names[0])
		}
		return s, err
	}
	switch tool := in.ToolName; tool {
	case "run_shell_command":
		cmd, err := need("command")
		if err != nil {
			return nil, err
		}
		dir, set, err := arg("dir_path", "directory")
		if err != nil {
			return nil, err
		}
		if runtime.GOOS == "windows" {
			// Gemini CLI runs it with PowerShell, which ReadShell does not read.
			acts := opaque(policy.ActionShellExec, cmd, "a PowerShell command line cannot be read safely")
			acts[0].Command = acts[0].Resource
			return acts, nil
		}
		cwd := in.Cwd
		if set {
			if cwd, err = RealPath(in.Cwd, dir); err != nil {
				return opaque(policy.ActionShellExec, dir, err.Error()), nil
			}
		}
		return shellActions(cwd, cmd)
	case "write_file", "replace":
		p, err := need("file_path")
		if err != nil {
			return nil, err
		}
		return fileAction(policy.ActionFileWrite, in.Cwd, p), nil
	case "read_file":
		p, err := need("file_path", "absolute_path", "path")
		if err != nil {
			return nil, err
		}
		return fileAction(policy.ActionFileRead, in.Cwd, p), nil
	case "list_directory":
		p, err := need("dir_path", "path")
		if err != nil {
			return nil, err
		}
		return fileAction(policy.ActionFileRead, in.Cwd, p), nil
	case "glob", "search_file_content":
		pattern, err := need("pattern")
		if err != nil {
			return nil, err
		}
		root, set, err := arg("dir_path", "path")
		if err != nil {
			return nil, err
		}
		if !set {
			root = in.Cwd
		}
		if tool == "glob" {
			return globAction(in.Cwd, root, pattern), nil
		}
		return fileAction(policy.ActionFileRead, in.Cwd, root), nil
	case "read_many_files":
		return gmReadMany(in.Cwd, args)
	case "web_fetch":
		prompt, err := need("prompt")
		if err != nil {
			return nil, err
		}
		return fetchActions(prompt), nil
	case "google_web_search":
		if _, err := need("query"); err != nil {
			return nil, err
		}
		return []Action{{Kind: policy.ActionHTTPRequest, Resource: webSearchHostGemini,
			Destination: policy.Destination{Host: webSearchHostGemini, Method: "POST"}}}, nil
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

// gmString reads the string argument named by one of names (aliases of
// one argument across releases; JSON null is absent). More than one
// alias set, or a value that is not a string, is an error.
func gmString(tool string, args map[string]json.RawMessage, names ...string) (string, bool, error) {
	var val, from string
	for _, n := range names {
		raw, ok := args[n]
		if !ok || string(raw) == "null" {
			continue
		}
		if from != "" {
			return "", false, fmt.Errorf("%s: tool_input has both %s and %s: which one the tool uses is ambiguous", tool, from, n)
		}
		if err := json.Unmarshal(raw, &val); err != nil {
			return "", false, fmt.Errorf("%s: tool_input.%s is not a string", tool, n)
		}
		from = n
	}
	return val, from != "", nil
}

// gmReadMany maps read_many_files (include, or paths in earlier
// releases: paths or glob patterns under the working directory) to the
// file.read of each pattern's root. exclude only narrows: it is ignored.
func gmReadMany(cwd string, args map[string]json.RawMessage) ([]Action, error) {
	var patterns []string
	for _, n := range []string{"include", "paths"} {
		raw, ok := args[n]
		if !ok || string(raw) == "null" {
			continue
		}
		var ps []string
		if err := json.Unmarshal(raw, &ps); err != nil {
			return nil, fmt.Errorf("read_many_files: tool_input.%s is not a list of strings", n)
		}
		patterns = append(patterns, ps...)
	}
	if len(patterns) == 0 {
		return nil, errors.New("read_many_files: tool_input names no file (include)")
	}
	if len(patterns) > MaxShellCommands {
		return opaque(policy.ActionFileRead, patterns[0], fmt.Sprintf("more than %d patterns", MaxShellCommands)), nil
	}
	var acts []Action
	for _, p := range patterns {
		acts = append(acts, globAction(cwd, cwd, p)...)
	}
	return acts, nil
}

// fetchActions maps a web_fetch prompt to the http.request of every URL
// in it, found as Gemini CLI finds them: each run of characters other
// than JavaScript's white space that starts with http:// or https://
// (matched here without regard to case, which finds more, never fewer).
// A prompt without one, or with more than Gemini CLI fetches, is denied.
func fetchActions(prompt string) []Action {
	var acts []Action
	for _, tok := range strings.FieldsFunc(prompt, jsSpace) {
		low := strings.ToLower(tok)
		i := strings.Index(low, "http://")
		if j := strings.Index(low, "https://"); j >= 0 && (i < 0 || j < i) {
			i = j
		}
		if i < 0 {
			continue
		}
		u := tok[i:]
		a, err := urlAction(u)
		if err != nil {
			return opaque(policy.ActionHTTPRequest, u, err.Error())
		}
		acts = append(acts, a)
	}
	switch {
	case len(acts) == 0:
		return opaque(policy.ActionHTTPRequest, prompt, "the prompt names no http:// or https:// URL")
	case len(acts) > maxFetchURLs:
		return opaque(policy.ActionHTTPRequest, prompt, fmt.Sprintf("the prompt names more than %d URLs", maxFetchURLs))
	}
	return acts
}

// jsSpace is JavaScript's \s: the white space and line terminators of
// ECMAScript, which end a URL in Gemini CLI's prompt.
func jsSpace(r rune) bool {
	switch r {
	case '\t', '\n', '\v', '\f', '\r', ' ', 0xa0, 0x1680, 0x2028, 0x2029, 0x202f, 0x205f, 0x3000, 0xfeff:
		return true
	}
	return r >= 0x2000 && r <= 0x200a
}

// gmOutput is the answer to a BeforeTool event.
type gmOutput struct {
	Decision string `json:"decision"`
	Reason   string `json:"reason,omitempty"`
}

// Render implements Adapter: a BeforeTool event is answered with decision
// and reason (ask, which Gemini CLI's hooks do not have, is a deny that
// says so); the others with an empty object.
func (GeminiCLI) Render(w io.Writer, ev *Event, a Answer) error {
	if ev.Kind != BeforeTool {
		_, err := io.WriteString(w, "{}\n")
		return err
	}
	out := gmOutput(a)
	switch a.Decision {
	case AnswerAllow:
		out.Reason = ""
	case AnswerDeny:
	case AnswerAsk:
		out.Decision = AnswerDeny
		out.Reason = a.Reason + "; Gemini CLI's hooks cannot ask: denied (run the hook with --on-approval hold to wait for the approval)"
	default:
		return fmt.Errorf("gemini-cli: no decision %q", a.Decision)
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}
