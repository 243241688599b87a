package mcpproxy

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// message is one JSON-RPC 2.0 message as the gateway's raw relay sees it:
// the envelope decoded, the payload (params, result, error) kept as it
// came, so that relaying does not re-encode what the gateway does not
// need to read.
type message struct {
	JSONRPC string          `json:"jsonrpc"`
	ID      json.RawMessage `json:"id,omitempty"`
	Method  string          `json:"method,omitempty"`
	Params  json.RawMessage `json:"params,omitempty"`
	Result  json.RawMessage `json:"result,omitempty"`
	Error   json.RawMessage `json:"error,omitempty"`
}

func (m *message) hasID() bool          { return len(m.ID) > 0 && string(m.ID) != "null" }
func (m *message) isRequest() bool      { return m.Method != "" && m.hasID() }
func (m *message) isNotification() bool { return m.Method != "" && !m.hasID() }
func (m *message) isResponse() bool {
	return m.Method == "" && m.hasID() && (m.Result != nil || m.Error != nil)
}

// decodeMessage decodes b into m (a zero message) exactly as
// json.Unmarshal does, error included: by decodePlainMessage when it can,
// by json.Unmarshal otherwise.
func decodeMessage(b []byte, m *message) error {
	if decodePlainMessage(b, m) {
		return nil
	}
	*m = message{}
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
func decodePlainMessage(b []byte, m *message) bool {
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

// encode returns m as compact JSON (one line, as a server-sent event's data
// needs).
func (m *message) encode() []byte {
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
	case m.hasID():
		member("id", m.ID)
	case m.Method == "":
		// A response about a message whose id is unknown (JSON-RPC 2.0 §5).
		b.WriteString(`,"id":null`)
	}
	if m.Method != "" {
		member("method", jsonString(m.Method))
	}
	member("params", m.Params)
	member("result", m.Result)
	member("error", m.Error)
	b.WriteByte('}')
	return b.Bytes()
}

// jsonString returns s as json.Marshal encodes it; without reflection for
// printable ASCII that needs no escape (method and tool names).
func jsonString(s string) []byte {
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

// errorMessage is the JSON-RPC response carrying err for request id (nil
// for an error about a message whose id is unknown).
func errorMessage(id json.RawMessage, err *jsonrpc.Error) *message {
	e, _ := json.Marshal(err)
	return &message{ID: id, Error: e}
}

// idKey normalizes a JSON-RPC id (MCP allows strings and integers) for
// use as a map key: the same id always gives the same key, however it was
// escaped or formatted.
func idKey(raw json.RawMessage) (string, bool) {
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

// relayIDPrefix begins the string ids the gateway gives the messages it
// relays raw: its own requests to upstreams, and upstreams' requests it
// passes to downstream clients. The SDK numbers its requests with
// integers, so these ids cannot collide with the ids of the requests the
// gateway's SDK sessions send on the same sessions.
const relayIDPrefix = "mandate-"

// relayID returns a fresh relay id as a JSON string.
func (g *Gateway) relayID() json.RawMessage {
	n := g.relaySeq.Add(1)
	b := make([]byte, 0, len(relayIDPrefix)+22)
	b = append(b, '"')
	b = append(b, relayIDPrefix...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, '"')
}
