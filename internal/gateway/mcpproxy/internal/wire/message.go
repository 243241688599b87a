package wire

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Message is one JSON-RPC 2.0 message as the gateway's raw relay sees it:
// the envelope decoded, the payload (params, result, error) kept as it
// came, so that relaying does not re-encode what the gateway does not
// need to read.
type Message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

// HasID reports whether m has an id other than null.
func (m *Message) HasID() bool { return len(m.ID) > 0 && string(m.ID) != "null" }

// IsRequest reports whether m is a request: a method and an id.
func (m *Message) IsRequest() bool { return m.Method != "" && m.HasID() }

// IsNotification reports whether m is a notification: a method without an
// id.
func (m *Message) IsNotification() bool { return m.Method != "" && !m.HasID() }

// IsResponse reports whether m is a response: an id and a result or an
// error, without a method.
func (m *Message) IsResponse() bool {
	return m.Method == "" && m.HasID() && (m.Result != nil || m.Error != nil)
}

// Decode decodes b into m (a zero Message) exactly as json.Unmarshal
// does, error included: without reflection when it can (see
// decodePlainMessage), by json.Unmarshal otherwise. m's members may share
// b's bytes, so b must not change while m is in use.
func Decode(b []byte, m *Message) error {
	if decodePlainMessage(b, m) {
		return nil
	}
	*m = Message{}
	return json.Unmarshal(b, m)
}

// decodePlainMessage decodes a valid message whose members need no
// unescaping and are named exactly as the envelope's (as senders write
// them), without reflection; its members share b's bytes, so b must not
// change while m is in use. As with json.Unmarshal, the last of repeated
// members wins. It reports false, with m set in part maybe, for anything
// else: another case of an envelope name (encoding/json matches names
// case-insensitively), or a jsonrpc or method that is not a plain string
// (json.Unmarshal fails on any that is not a string, even when a later
// one is).
func decodePlainMessage(b []byte, m *Message) bool {
	if !json.Valid(b) {
		return false
	}
	return plainMembers(b, func(k, v []byte) bool {
		switch string(k) {
		case "jsonrpc", "method":
			if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' || !plain(v[1:len(v)-1]) {
				return false
			}
			if string(k) == "jsonrpc" {
				m.JSONRPC = string(v[1 : len(v)-1])
			} else {
				m.Method = string(v[1 : len(v)-1])
			}
		case "id":
			m.ID = v
		case "params":
			m.Params = v
		case "result":
			m.Result = v
		case "error":
			m.Error = v
		default:
			// Other members are ignored, as by json.Unmarshal.
			key := string(k)
			for _, n := range envelope {
				if strings.EqualFold(key, n) {
					return false
				}
			}
		}
		return true
	})
}

// envelope are the members of a message, as encoding/json names them.
var envelope = [...]string{"jsonrpc", "id", "method", "params", "result", "error"}

// Encode returns m as compact JSON (one line, as a server-sent event's data
// needs).
func (m *Message) Encode() []byte {
	var b bytes.Buffer
	b.Grow(64 + len(m.Params) + len(m.Result) + len(m.Error))
	b.WriteString(`{"jsonrpc":"2.0"`)
	member := func(name string, raw json.RawMessage) {
		if len(raw) == 0 {
			return
		}
		b.WriteString(`,"` + name + `":`)
		switch {
		case isCompact(raw):
			// The common case, and a result can be large: copied, not
			// run through json.Compact's scanner.
			b.Write(raw)
		case json.Compact(&b, raw) != nil:
			// Members come from a successful decode, so they are valid
			// JSON; this is unreachable.
			b.WriteString("null")
		}
	}
	switch {
	case m.HasID():
		member("id", m.ID)
	case m.Method == "":
		// A response about a message whose id is unknown (JSON-RPC 2.0 §5).
		b.WriteString(`,"id":null`)
	}
	if m.Method != "" {
		member("method", String(m.Method))
	}
	member("params", m.Params)
	member("result", m.Result)
	member("error", m.Error)
	b.WriteByte('}')
	return b.Bytes()
}

// String returns s as json.Marshal encodes it; without reflection for
// printable ASCII that needs no escape (method and tool names).
func String(s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return b
		}
	}
	b := make([]byte, 0, len(s)+2)
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// isCompact reports whether raw, valid JSON, has no whitespace outside
// its strings: whether json.Compact would leave it as it is.
func isCompact(raw []byte) bool {
	inString := false
	for i := 0; i < len(raw); i++ {
		switch c := raw[i]; {
		case inString && c == '\\':
			i++ // an escaped byte ends no string
		case c == '"':
			inString = !inString
		case !inString && (c == ' ' || c == '\t' || c == '\r' || c == '\n'):
			return false
		}
	}
	return true
}

// ErrorMessage is the JSON-RPC response carrying err for request id (nil
// for an error about a message whose id is unknown).
func ErrorMessage(id json.RawMessage, err *jsonrpc.Error) *Message {
	e, _ := json.Marshal(err)
	return &Message{ID: id, Error: e}
}

// IDKey normalizes a JSON-RPC id (MCP allows strings and integers) for
// use as a map key: the same id always gives the same key, however it was
// escaped or formatted. A string id's key is "s" and the string, an
// integer's "n" and its decimal digits; it reports false for anything
// else.
func IDKey(raw json.RawMessage) (string, bool) {
	raw = bytes.Trim(raw, " \t\r\n") // JSON whitespace
	if len(raw) == 0 {
		return "", false
	}
	if raw[0] == '"' {
		if len(raw) >= 2 && raw[len(raw)-1] == '"' && plain(raw[1:len(raw)-1]) {
			return "s" + string(raw[1:len(raw)-1]), true
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return "", false
		}
		return "s" + s, true
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil || !json.Valid(raw) {
		return "", false
	}
	return "n" + strconv.FormatInt(n, 10), true
}

// SameID reports whether two JSON-RPC ids are the same id: whether they
// have the same IDKey.
func SameID(a, b json.RawMessage) bool {
	if len(a) > 2 && a[0] == '"' && a[len(a)-1] == '"' && bytes.Equal(a, b) && plain(a[1:len(a)-1]) {
		// The same plain string (as an upstream sends a relay id back):
		// what IDKey would make of both, without making it.
		return true
	}
	ka, ok := IDKey(a)
	kb, _ := IDKey(b)
	return ok && ka == kb
}

// plain reports whether b is the inside of a JSON string that decodes to
// itself (the common case for ids).
func plain(b []byte) bool {
	for _, c := range b {
		if c < 0x20 || c == '"' || c == '\\' {
			return false
		}
	}
	return utf8.Valid(b)
}
