package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"unicode/utf8"
)

// CanonicalJSON re-encodes one JSON value deterministically: object keys
// sorted (bytewise), no insignificant whitespace, numbers kept exactly as
// written, no HTML escaping. It is mandate's one canonical JSON: tool pins,
// call arguments (what is decided, digested and sent upstream) and the
// ledger's argument digests all use it. Anything but exactly one JSON
// value (trailing data included) is an error. When raw is in that form
// already it is returned itself.
func CanonicalJSON(raw []byte) ([]byte, error) {
	if isCanonicalJSON(raw) {
		// The common case for a call's arguments (compact JSON, few
		// keys): decoding and encoding again would give the same bytes.
		return raw, nil
	}
	v, err := decodeValue(raw)
	if err != nil {
		return nil, err
	}
	return marshalValue(v)
}

func decodeValue(raw []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, errors.New("trailing data after the JSON value")
	}
	return v, nil
}

func marshalValue(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// isCanonicalJSON reports whether raw is one JSON value exactly as
// marshalValue writes it, in a form that one pass can check: no
// whitespace, object keys in strictly increasing byte order (so no
// duplicates), strings without escapes, control characters, invalid UTF-8,
// U+2028 or U+2029 (marshalValue writes each of those escaped), numbers as
// the JSON grammar has them (marshalValue keeps them as written), and at
// most maxCanonicalDepth levels of nesting. It may report false for
// canonical JSON (a string that needs an escape, say); CanonicalJSON then
// takes the long way, which also finds any error.
func isCanonicalJSON(raw []byte) bool {
	rest, ok := canonicalValue(raw, 0)
	return ok && len(rest) == 0
}

// maxCanonicalDepth bounds the nesting isCanonicalJSON follows.
const maxCanonicalDepth = 64

// canonicalValue checks the JSON value at the start of b (see
// isCanonicalJSON) and returns what follows it.
func canonicalValue(b []byte, depth int) ([]byte, bool) {
	if len(b) == 0 || depth > maxCanonicalDepth {
		return nil, false
	}
	switch b[0] {
	case '{':
		b = b[1:]
		if len(b) > 0 && b[0] == '}' {
			return b[1:], true
		}
		var prev []byte
		for first := true; ; first = false {
			key, rest, ok := canonicalString(b)
			if !ok || !first && bytes.Compare(prev, key) >= 0 || len(rest) == 0 || rest[0] != ':' {
				return nil, false
			}
			prev = key
			if b, ok = canonicalValue(rest[1:], depth+1); !ok || len(b) == 0 {
				return nil, false
			}
			switch b[0] {
			case ',':
				b = b[1:]
			case '}':
				return b[1:], true
			default:
				return nil, false
			}
		}
	case '[':
		b = b[1:]
		if len(b) > 0 && b[0] == ']' {
			return b[1:], true
		}
		for {
			var ok bool
			if b, ok = canonicalValue(b, depth+1); !ok || len(b) == 0 {
				return nil, false
			}
			switch b[0] {
			case ',':
				b = b[1:]
			case ']':
				return b[1:], true
			default:
				return nil, false
			}
		}
	case '"':
		_, rest, ok := canonicalString(b)
		return rest, ok
	case 't':
		return canonicalLiteral(b, "true")
	case 'f':
		return canonicalLiteral(b, "false")
	case 'n':
		return canonicalLiteral(b, "null")
	}
	return canonicalNumber(b)
}

func canonicalLiteral(b []byte, lit string) ([]byte, bool) {
	if !bytes.HasPrefix(b, []byte(lit)) {
		return nil, false
	}
	return b[len(lit):], true
}

// canonicalString checks the string at the start of b and returns its
// contents (which need no unescaping) and what follows it.
func canonicalString(b []byte) (s, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '"' {
		return nil, nil, false
	}
	end := bytes.IndexByte(b[1:], '"')
	if end < 0 {
		return nil, nil, false
	}
	s = b[1 : 1+end]
	for _, c := range s {
		if c < 0x20 || c == '\\' {
			return nil, nil, false
		}
	}
	if !utf8.Valid(s) || bytes.Contains(s, []byte("\u2028")) || bytes.Contains(s, []byte("\u2029")) {
		return nil, nil, false
	}
	return s, b[2+end:], true
}

// canonicalNumber checks the number at the start of b against the JSON
// grammar, -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?, and returns
// what follows it.
func canonicalNumber(b []byte) ([]byte, bool) {
	digits := func(b []byte) int {
		n := 0
		for n < len(b) && '0' <= b[n] && b[n] <= '9' {
			n++
		}
		return n
	}
	if len(b) > 0 && b[0] == '-' {
		b = b[1:]
	}
	switch n := digits(b); {
	case n == 0 || n > 1 && b[0] == '0':
		return nil, false
	default:
		b = b[n:]
	}
	if len(b) > 0 && b[0] == '.' {
		n := digits(b[1:])
		if n == 0 {
			return nil, false
		}
		b = b[1+n:]
	}
	if len(b) > 0 && (b[0] == 'e' || b[0] == 'E') {
		b = b[1:]
		if len(b) > 0 && (b[0] == '+' || b[0] == '-') {
			b = b[1:]
		}
		n := digits(b)
		if n == 0 {
			return nil, false
		}
		b = b[n:]
	}
	return b, true
}
