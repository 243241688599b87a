package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/tlog"
)

// MaxEventSize is the largest canonical event the ledger accepts.
const MaxEventSize = 256 << 10

// Canonical returns the canonical serialization of ev: the bytes that are
// its Merkle leaf, hashed with tlog.RecordHash.
//
// Why deterministic JSON: a leaf hash must be recomputable, byte for byte,
// by anyone holding the event — the live ledger, a verifier reading an
// export years later, a SIEM pipeline — so the serialization must have
// exactly one form per event. JSON is what exports and APIs already carry,
// so an exported line is the leaf itself rather than a second encoding to
// keep in step. The form is encoding/json's encoding of Event: struct
// fields in declaration order with fixed names, map keys sorted,
// json.RawMessage compacted, no insignificant whitespace, <, > and &
// always escaped (\u003c, \u003e, \u0026), and times RFC 3339 in UTC
// (Normalize truncates them to microseconds, the precision every store
// keeps, and re-encodes Args with sorted keys). appendEvent writes that
// form directly, without reflection, because every governed action costs
// two events; TestCanonicalMatchesEncodingJSON holds it to encoding/json
// byte for byte. One difference: an event holding invalid UTF-8 is
// refused (an error wrapping ErrInvalid), where encoding/json would write
// \ufffd, which decodes to another string and so could never pass
// ParseEvent's check. Normalize makes every string valid first, so that
// whatever Canonical writes, ParseEvent accepts (TestCanonicalRoundTrip,
// FuzzCanonicalRoundTrip).
func Canonical(ev *Event) ([]byte, error) { return canonical(ev, 0) }

// canonical returns room bytes of scratch followed by Canonical(ev), in
// one allocation.
func canonical(ev *Event, room int) ([]byte, error) {
	var buf [16]string
	keys := detailKeys(buf[:0], ev.Details)
	b, ok := appendEvent(make([]byte, room, room+eventSizeHint(ev, keys)), ev, keys)
	if !ok {
		// A time RFC 3339 cannot represent, or Args that are not JSON:
		// encoding/json says why.
		enc, err := json.Marshal(ev)
		if err != nil {
			return nil, fmt.Errorf("%w: canonical encoding: %v", ErrInvalid, err)
		}
		b = append(b[:room], enc...)
	}
	if n := len(b) - room; n > MaxEventSize {
		return nil, fmt.Errorf("%w: event is %d bytes, over the %d-byte limit", ErrInvalid, n, MaxEventSize)
	}
	// appendEvent copies invalid UTF-8 through, so that one check here
	// finds it in any string and in Args.
	if !utf8.Valid(b[room:]) {
		return nil, fmt.Errorf("%w: event holds invalid UTF-8 (Normalize replaces it)", ErrInvalid)
	}
	return b, nil
}

// LeafHash returns the Merkle leaf hash of a canonical event.
func LeafHash(data []byte) tlog.Hash { return tlog.RecordHash(data) }

// Normalize puts ev in the form the ledger records: time in UTC truncated
// to microseconds (now if unset), arguments in canonical JSON, empty
// collections nil, and every string valid UTF-8 within its limit (invalid
// bytes replaced by U+FFFD, cut at a rune boundary: see Clip and the Max…
// limits). Every event the Ledger records passes through it, so that
// Canonical never meets a string it cannot write in a form ParseEvent
// accepts. It returns an error wrapping ErrInvalid for arguments that are
// not JSON or too large, and for lists over their limits. Slices and maps
// of ev that need a change are replaced by copies, never modified.
func Normalize(ev *Event, now time.Time) error {
	if ev.Time.IsZero() {
		ev.Time = now
	}
	ev.Time = ev.Time.UTC().Truncate(time.Microsecond)
	if len(ev.Args) > 0 {
		c, err := CanonicalJSON(ev.Args)
		if err != nil {
			return fmt.Errorf("%w: args: %v", ErrInvalid, err)
		}
		ev.Args = c
	} else {
		ev.Args = nil
	}
	if len(ev.Chain) == 0 {
		ev.Chain = nil
	}
	if len(ev.Details) == 0 {
		ev.Details = nil
	}
	if len(ev.Reasons) == 0 {
		ev.Reasons = nil
	}
	return clean(ev)
}

// ParseEvent strictly decodes a canonical event: unknown fields, trailing
// data and a non-canonical form are errors.
func ParseEvent(data []byte) (*Event, error) {
	if len(data) > MaxEventSize {
		return nil, fmt.Errorf("event is %d bytes, over the %d-byte limit", len(data), MaxEventSize)
	}
	var ev Event
	if err := strictUnmarshal(data, &ev); err != nil {
		return nil, err
	}
	c, err := Canonical(&ev)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(c, data) {
		return nil, errors.New("event is not in canonical form")
	}
	return &ev, nil
}

func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

// detailKeys appends the keys of details to keys, sorted.
func detailKeys(keys []string, details map[string]string) []string {
	for k := range details {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// eventSizeHint is a capacity for ev's canonical form that suffices
// unless many of its strings need escaping: the values' lengths plus room
// for the member names. keys are the keys of ev.Details.
func eventSizeHint(ev *Event, keys []string) int {
	n := 256 + len(ev.Type) + len(ev.Actor) + len(ev.Agent) + len(ev.OnBehalfOf) + len(ev.Task) +
		len(ev.Action) + len(ev.Resource) + len(ev.Decision) + len(ev.Reason) + len(ev.ApprovalID) +
		len(ev.ArgsDigest) + len(ev.Args) + len(ev.RequestID) + len(ev.Point)
	for _, c := range ev.Chain {
		n += len(c) + 3
	}
	for _, r := range ev.Reasons {
		n += len(r.Policy) + len(r.Message) + 28
	}
	for _, k := range keys {
		n += len(k) + len(ev.Details[k]) + 6
	}
	if o := ev.Outcome; o != nil {
		n += len(o.Status) + len(o.Error) + 80
	}
	return n
}

// appendEvent appends encoding/json's encoding of ev to b (see Canonical);
// keys are the keys of ev.Details, sorted. It reports false, with b undefined, for an event encoding/json fails on:
// a time outside what RFC 3339 can write, or Args that are not JSON.
func appendEvent(b []byte, ev *Event, keys []string) ([]byte, bool) {
	b = append(b, '{')
	if ev.V != 0 {
		b = append(b, `"v":`...)
		b = strconv.AppendInt(b, int64(ev.V), 10)
		b = append(b, ',')
	}
	if ev.Seq != 0 {
		b = append(b, `"seq":`...)
		b = strconv.AppendInt(b, ev.Seq, 10)
		b = append(b, ',')
	}
	b = append(b, `"time":"`...)
	b, err := ev.Time.AppendText(b) // what time.Time.MarshalJSON writes, unquoted
	if err != nil {
		return nil, false
	}
	b = append(b, `","type":`...)
	b = appendString(b, string(ev.Type))
	b = appendStringMember(b, "actor", ev.Actor)
	b = appendStringMember(b, "agent", ev.Agent)
	if len(ev.Chain) > 0 {
		b = append(b, `,"chain":[`...)
		for i, c := range ev.Chain {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, c)
		}
		b = append(b, ']')
	}
	b = appendStringMember(b, "on_behalf_of", ev.OnBehalfOf)
	b = appendStringMember(b, "task", ev.Task)
	b = appendStringMember(b, "action", ev.Action)
	b = appendStringMember(b, "resource", ev.Resource)
	b = appendStringMember(b, "decision", ev.Decision)
	b = appendStringMember(b, "reason", ev.Reason)
	if len(ev.Reasons) > 0 {
		b = append(b, `,"reasons":[`...)
		for i, r := range ev.Reasons {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"policy":`...)
			b = appendString(b, r.Policy)
			b = appendStringMember(b, "message", r.Message)
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	b = appendStringMember(b, "approval_id", ev.ApprovalID)
	if o := ev.Outcome; o != nil {
		b = append(b, `,"outcome":{"status":`...)
		b = appendString(b, o.Status)
		b = appendStringMember(b, "error", o.Error)
		b = appendIntMember(b, "bytes", o.Bytes)
		b = appendIntMember(b, "duration_ns", int64(o.Duration))
		b = append(b, '}')
	}
	b = appendStringMember(b, "args_digest", ev.ArgsDigest)
	if len(ev.Args) > 0 {
		b = append(b, `,"args":`...)
		if b, err = appendRaw(b, ev.Args); err != nil {
			return nil, false
		}
	}
	if len(ev.Details) > 0 {
		b = append(b, `,"details":{`...)
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			b = appendString(b, ev.Details[k])
		}
		b = append(b, '}')
	}
	b = appendStringMember(b, "request_id", ev.RequestID)
	b = appendStringMember(b, "point", ev.Point)
	return append(b, '}'), true
}

// appendStringMember appends `,"name":"v"`, or nothing when v is empty
// (omitempty).
func appendStringMember(b []byte, name, v string) []byte {
	if v == "" {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return appendString(b, v)
}

// appendIntMember appends `,"name":n`, or nothing when n is zero
// (omitempty).
func appendIntMember(b []byte, name string, n int64) []byte {
	if n == 0 {
		return b
	}
	b = append(b, ',', '"')
	b = append(b, name...)
	b = append(b, '"', ':')
	return strconv.AppendInt(b, n, 10)
}

// appendRaw appends raw as encoding/json writes a json.RawMessage:
// compacted, with <, >, &, U+2028 and U+2029 escaped. It returns an error
// for raw that is not one JSON value.
func appendRaw(b, raw []byte) ([]byte, error) {
	start := len(b)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, raw); err != nil {
		return nil, err
	}
	b = buf.Bytes()
	if seg := b[start:]; bytes.ContainsAny(seg, "<>&") || bytes.Contains(seg, []byte("\u2028")) || bytes.Contains(seg, []byte("\u2029")) {
		var esc bytes.Buffer
		json.HTMLEscape(&esc, seg)
		b = append(b[:start], esc.Bytes()...)
	}
	return b, nil
}

// plainByte marks the bytes appendString copies as they are: printable
// ASCII other than ", \, <, > and &.
var plainByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = !strings.ContainsRune(`"\<>&`, rune(c))
	}
	return t
}()

// appendString appends s as a JSON string as encoding/json writes it with
// HTML escaping on (json.Marshal's default): ", \ and the C0 controls
// escaped (\b, \f, \n, \r, \t by name, the rest as \u00XX), <, > and &
// as \u003c, \u003e and \u0026, U+2028 and U+2029 as \u2028 and \u2029.
// Invalid UTF-8 is copied as it is, for canonical to refuse: encoding/json
// writes each such byte as \ufffd, which decodes to U+FFFD and so would
// not encode back to the same bytes.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if plainByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
