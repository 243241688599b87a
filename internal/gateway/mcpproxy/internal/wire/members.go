package wire

import (
	"bytes"
	"encoding/json"
	"strings"
)

// FoldedMember returns a member of fields that is not one of names but
// matches one of them case-insensitively, with Unicode folding, as Go's
// encoding/json matches struct fields ("Arguments", or "argumentſ" with
// a long s). An upstream that parses params so would read such a member
// in place of the one the gateway decided on: with several matching
// members the last wins, and the re-encoded params put "argumentſ" after
// "arguments".
func FoldedMember(fields map[string]json.RawMessage, names []string) (member, name string, ok bool) {
	for k := range fields {
		for _, n := range names {
			if k != n && strings.EqualFold(k, n) {
				return k, n, true
			}
		}
	}
	return "", "", false
}

// StringMember returns the string member key of fields, as json.Unmarshal
// decodes it; false if it is missing, not a string, or empty.
func StringMember(fields map[string]json.RawMessage, key string) (string, bool) {
	raw := fields[key]
	if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' && plain(raw[1:len(raw)-1]) {
		// What Unmarshal would decode it to, without decoding.
		return string(raw[1 : len(raw)-1]), len(raw) > 2
	}
	var v string
	if json.Unmarshal(raw, &v) != nil || v == "" {
		return "", false
	}
	return v, true
}

// IsToolError reports whether a tools/call result says isError, as
// json.Unmarshal into a struct with an IsError bool field reads it
// (whatever error it returns). result must be valid JSON. It is the one
// member of a result the relay reads.
func IsToolError(result json.RawMessage) bool {
	var v []byte // the last isError: a later bool overrides whatever came before
	plainOK := plainMembers(result, func(k, val []byte) bool {
		switch {
		case string(k) == "isError":
			v = val
		case strings.EqualFold(string(k), "isError"):
			return false // encoding/json matches names case-insensitively
		}
		return true
	})
	if plainOK {
		switch {
		case v == nil:
			return false
		case string(v) == "true" || string(v) == "false":
			return string(v) == "true"
		}
	}
	var out struct {
		IsError bool `json:"isError"`
	}
	_ = json.Unmarshal(result, &out)
	return out.IsError
}

// Members returns the members of params as json.Unmarshal decodes a JSON
// object into a map[string]json.RawMessage (each value's bytes without
// the whitespace around them, the last of equal keys winning, keys
// unescaped), or nil if params is not an object. params must be valid
// JSON, as a decoded message's are.
func Members(params json.RawMessage) map[string]json.RawMessage {
	fields := make(map[string]json.RawMessage, 4)
	if plainMembers(params, func(k, v []byte) bool {
		fields[string(k)] = v
		return true
	}) {
		return fields
	}
	fields = nil
	if json.Unmarshal(params, &fields) != nil {
		return nil
	}
	return fields
}

// plainMembers calls f, in order, with the key and the value of each
// member of obj, a valid JSON object whose keys need no unescaping (the
// common case), without reflection; the value shares obj's bytes, without
// the whitespace around it. It reports false, having called f for some of
// the members maybe, when obj is anything else or f returns false.
func plainMembers(obj []byte, f func(key, value []byte) bool) bool {
	i := skipSpace(obj, 0)
	if i == len(obj) || obj[i] != '{' {
		return false
	}
	if i = skipSpace(obj, i+1); i < len(obj) && obj[i] == '}' {
		return skipSpace(obj, i+1) == len(obj)
	}
	for i < len(obj) && obj[i] == '"' {
		n := bytes.IndexByte(obj[i+1:], '"')
		if n < 0 {
			return false
		}
		key := obj[i+1 : i+1+n]
		if !plain(key) {
			return false
		}
		if i = skipSpace(obj, i+2+n); i == len(obj) || obj[i] != ':' {
			return false
		}
		start := skipSpace(obj, i+1)
		end := skipValue(obj, start)
		if end == start || !f(key, obj[start:end:end]) {
			return false
		}
		if i = skipSpace(obj, end); i == len(obj) {
			return false
		}
		switch obj[i] {
		case ',':
			i = skipSpace(obj, i+1)
		case '}':
			return skipSpace(obj, i+1) == len(obj)
		default:
			return false
		}
	}
	return false
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n') {
		i++
	}
	return i
}

// skipValue returns the index just after the valid JSON value that starts
// at b[i] (i itself if there is none).
func skipValue(b []byte, i int) int {
	depth := 0
	for j := i; j < len(b); j++ {
		switch b[j] {
		case '"':
			for j++; j < len(b) && b[j] != '"'; j++ {
				if b[j] == '\\' {
					j++
				}
			}
		case '{', '[':
			depth++
			continue
		case '}', ']':
			if depth == 0 {
				return j // the end of an enclosing value
			}
			depth--
		case ',', ':', ' ', '\t', '\r', '\n':
			if depth == 0 {
				return j // the end of a literal
			}
			continue
		default:
			continue // a literal's byte, or inside a container
		}
		// A string or a container has closed.
		if depth == 0 {
			return min(j+1, len(b))
		}
	}
	return len(b)
}
