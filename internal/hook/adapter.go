package hook

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/policy"
)

// MaxEventBytes is the largest hook event read from stdin. A Write or
// Edit event carries the file's content; a larger event is refused (the
// hook exits 2), never cut.
const MaxEventBytes = 16 << 20

// EventKind is what happened in the coding agent.
type EventKind int

// Event kinds.
const (
	// BeforeTool: the agent is about to use a tool; the answer decides.
	BeforeTool EventKind = iota + 1
	// AfterTool: a tool ran (Failed says whether it failed).
	AfterTool
	// SessionStart and SessionEnd bracket a session.
	SessionStart
	SessionEnd
)

// Event is one hook event, parsed by an Adapter.
type Event struct {
	Kind EventKind
	// Name is the agent's own name of the event ("PreToolUse").
	Name string
	// Session is the agent's session ID; ToolUseID its ID of the tool
	// call (correlates the decision, sent as X-Request-ID, with the
	// outcome).
	Session, ToolUseID string
	// Cwd is the agent's working directory, against which relative
	// paths are made absolute.
	Cwd string
	// Tool is the agent's tool name.
	Tool string
	// Failed and Interrupted describe the outcome of an AfterTool event.
	Failed, Interrupted bool
	// Detail is the event's own qualifier (SessionStart's source,
	// SessionEnd's reason).
	Detail string
	// Agent is the acting agent's SPIFFE ID (from the task token), set
	// before Actions: a sub-agent is delegated to the same agent.
	Agent string
	// Raw is the adapter's parsed payload, for Actions.
	Raw any
}

// Action is one attempted operation a tool use maps to, as the AuthZEN
// API is asked about it.
type Action struct {
	// Kind is one of policy.Actions.
	Kind string
	// Resource is the canonical resource.
	Resource string
	// Server is the MCP server of a tool.call.
	Server      string
	Destination policy.Destination
	// Command is the shell command's text (shell.exec).
	Command string
	// Opaque, if set, says why the tool use cannot be read safely: the
	// action is denied whatever the server answers (its Resource is what
	// was seen, which the server refuses as not canonical and records).
	Opaque string
}

// Answer is the hook's verdict on a BeforeTool event.
type Answer struct {
	// Decision is allow, deny or ask.
	Decision string
	Reason   string
}

// Answers of a BeforeTool event.
const (
	AnswerAllow = "allow"
	AnswerDeny  = "deny"
	AnswerAsk   = "ask"
)

// Adapter is one coding agent's hook protocol: it parses the agent's
// event, maps a tool use to the actions mandate decides, and writes the
// answer in the agent's format. Implementations are stateless and safe
// for concurrent use.
type Adapter interface {
	// Name is the agent's name in the CLI ("claude-code").
	Name() string
	// Parse parses one event (at most MaxEventBytes). An unknown event or
	// a malformed one is an error.
	Parse(raw []byte) (*Event, error)
	// Actions maps the tool use of ev to actions; an unknown tool is an
	// error. Paths are resolved (RealPath) here.
	Actions(ev *Event) ([]Action, error)
	// Render writes the answer to a BeforeTool event in the agent's
	// format; for other events it writes what the agent expects after a
	// successful hook (possibly nothing).
	Render(w io.Writer, ev *Event, a Answer) error
}

// ErrUnknownTool is returned (wrapped) by Actions for a tool the adapter
// does not map: it is denied.
var ErrUnknownTool = errors.New("unknown tool")

// ErrUnknownEvent is returned (wrapped) by Parse for an event the adapter
// does not handle.
var ErrUnknownEvent = errors.New("unknown hook event")

// decodeEvent decodes a hook event of at most MaxEventBytes of valid
// UTF-8, exactly one JSON value, into dst (an adapter's input type).
func decodeEvent(raw []byte, dst any) error {
	if len(raw) > MaxEventBytes {
		return fmt.Errorf("hook event larger than %d bytes", MaxEventBytes)
	}
	if !utf8.Valid(raw) {
		return errors.New("hook event is not valid UTF-8")
	}
	if err := decodeOne(raw, dst); err != nil {
		return fmt.Errorf("hook event: %w", err)
	}
	return nil
}

// decodeOne decodes exactly one JSON value into dst.
func decodeOne(raw []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("empty input")
		}
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// complete checks that a parsed event names what every adapter needs: a
// session, and for a tool event the tool, its input (an object) and the
// working directory its paths are read against.
func (ev *Event) complete(toolInput json.RawMessage) error {
	if ev.Session == "" {
		return errors.New("hook event: session_id is missing")
	}
	if ev.Kind == BeforeTool || ev.Kind == AfterTool {
		switch {
		case ev.Tool == "":
			return errors.New("hook event: tool_name is missing")
		case len(toolInput) == 0 || toolInput[0] != '{':
			return errors.New("hook event: tool_input is not an object")
		case ev.Cwd == "":
			return errors.New("hook event: cwd is missing")
		}
	}
	return nil
}
