package audit

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

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
// keep in step. encoding/json makes it deterministic here: struct fields
// are written in declaration order with fixed names, map keys are sorted,
// json.RawMessage is compacted, there is no insignificant whitespace, <, >
// and & are always escaped (\u003c, \u003e, \u0026), and times are RFC
// 3339 in UTC (Normalize truncates them to microseconds, the precision
// every store keeps, and re-encodes Args with sorted keys).
func Canonical(ev *Event) ([]byte, error) {
	b, err := json.Marshal(ev)
	if err != nil {
		return nil, fmt.Errorf("audit: canonical encoding: %w", err)
	}
	if len(b) > MaxEventSize {
		return nil, fmt.Errorf("%w: event is %d bytes, over the %d-byte limit", ErrInvalid, len(b), MaxEventSize)
	}
	return b, nil
}

// LeafHash returns the Merkle leaf hash of a canonical event.
func LeafHash(data []byte) tlog.Hash { return tlog.RecordHash(data) }

// Normalize puts ev in the form the ledger records: time in UTC truncated
// to microseconds (now if unset), arguments in canonical JSON, empty
// collections nil. It returns an error wrapping ErrInvalid for arguments
// that are not JSON.
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
	return nil
}

// CanonicalJSON re-encodes one JSON value with object keys sorted, no
// insignificant whitespace, and numbers kept exactly as written.
func CanonicalJSON(raw []byte) ([]byte, error) {
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
