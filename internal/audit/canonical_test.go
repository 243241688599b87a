package audit_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/audit"
)

// TestCanonicalMatchesEncodingJSON holds Canonical to json.Marshal, the
// encoding that defined the ledger's leaves: on many random events, with
// every field filled or left empty at random and strings full of what
// JSON escapes, the bytes must be the same, and Canonical must fail
// exactly where json.Marshal does. The events are filled by reflection,
// so a field added to Event (or PolicyReason, Outcome) without teaching
// Canonical about it fails here.
func TestCanonicalMatchesEncodingJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	n := 20000
	if testing.Short() {
		n = 2000
	}
	for i := range n {
		var ev audit.Event
		fill(rng, reflect.ValueOf(&ev).Elem(), i%4 == 0)
		want, werr := json.Marshal(&ev)
		got, gerr := audit.Canonical(&ev)
		if werr == nil && invalidUTF8(reflect.ValueOf(ev)) {
			// Canonical refuses what json.Marshal would write as \ufffd.
			if !errors.Is(gerr, audit.ErrInvalid) {
				t.Fatalf("event %d holds invalid UTF-8: Canonical = %q, %v; want an error wrapping ErrInvalid", i, got, gerr)
			}
			continue
		}
		if (werr != nil) != (gerr != nil) {
			t.Fatalf("event %d: Canonical error %v, json.Marshal error %v\nevent: %#v", i, gerr, werr, ev)
		}
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("event %d: Canonical =\n%s\nwant (json.Marshal)\n%s", i, got, want)
		}
	}
}

// TestCanonicalFillsEveryField checks that fill, with full set, leaves no
// field of an event at its zero value, so that the comparison above
// covers each of them.
func TestCanonicalFillsEveryField(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	var ev audit.Event
	fill(rng, reflect.ValueOf(&ev).Elem(), true)
	v := reflect.ValueOf(ev)
	for i := range v.NumField() {
		if v.Field(i).IsZero() {
			t.Errorf("fill left Event.%s empty", v.Type().Field(i).Name)
		}
	}
}

// fill sets v to a random value; with full set, never to an empty one.
func fill(rng *rand.Rand, v reflect.Value, full bool) {
	empty := !full && rng.IntN(3) == 0
	switch {
	case v.Type() == reflect.TypeFor[time.Time]():
		v.Set(reflect.ValueOf(randomTime(rng)))
	case v.Type() == reflect.TypeFor[json.RawMessage]():
		if !empty {
			v.Set(reflect.ValueOf(json.RawMessage(rawValues[rng.IntN(len(rawValues))])))
		}
	case empty:
	case v.Kind() == reflect.String:
		v.SetString(randomString(rng))
	case v.Kind() == reflect.Int, v.Kind() == reflect.Int64:
		v.SetInt(rng.Int64N(1<<40) - 1<<20)
	case v.Kind() == reflect.Slice:
		s := reflect.MakeSlice(v.Type(), rng.IntN(4)+1, 4)
		if !full && rng.IntN(4) == 0 {
			s = s.Slice(0, 0) // empty but not nil: omitted as well
		}
		for i := range s.Len() {
			fill(rng, s.Index(i), full)
		}
		v.Set(s)
	case v.Kind() == reflect.Map:
		m := reflect.MakeMap(v.Type())
		for range rng.IntN(20) + 1 {
			k, e := reflect.New(v.Type().Key()).Elem(), reflect.New(v.Type().Elem()).Elem()
			fill(rng, k, full)
			fill(rng, e, false)
			m.SetMapIndex(k, e)
		}
		v.Set(m)
	case v.Kind() == reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		fill(rng, p.Elem(), full)
		v.Set(p)
	case v.Kind() == reflect.Struct:
		for i := range v.NumField() {
			fill(rng, v.Field(i), full)
		}
	default:
		panic("fill: teach fill (and Canonical) about " + v.Type().String())
	}
}

// invalidUTF8 reports whether any string of v, or its Args, is not
// valid UTF-8.
func invalidUTF8(v reflect.Value) bool {
	switch {
	case v.Type() == reflect.TypeFor[json.RawMessage]():
		return !utf8.Valid(v.Bytes())
	case v.Type() == reflect.TypeFor[time.Time]():
		return false
	}
	switch v.Kind() {
	case reflect.String:
		return !utf8.ValidString(v.String())
	case reflect.Slice:
		for i := range v.Len() {
			if invalidUTF8(v.Index(i)) {
				return true
			}
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			if invalidUTF8(it.Key()) || invalidUTF8(it.Value()) {
				return true
			}
		}
	case reflect.Pointer:
		return !v.IsNil() && invalidUTF8(v.Elem())
	case reflect.Struct:
		for i := range v.NumField() {
			if invalidUTF8(v.Field(i)) {
				return true
			}
		}
	}
	return false
}

// rawValues are Args as a caller may hand them over: canonical or not,
// with what encoding/json escapes in a RawMessage, and not JSON at all.
var rawValues = []string{
	`{}`, `null`, `{"a":1}`, ` { "b" : [ 1 , 2.50 , "x" ] , "a" : null } `,
	`{"html":"<script>&amp;</script>"}`, `{"amp":"a&b"}`, `{">":"<"}`, "{\"sep\":\"\u2028\u2029\"}", `"\u003c"`,
	`[true,false,{"deep":{"deeper":[]}}]`, `{"n":1e400}`, "\t\"tab\"\n",
	`{`, `{"a":}`, `nope`, `{} {}`, "{\"bad\":\"\xff\"}",
}

// randomTime returns times in and out of UTC and of RFC 3339's range.
func randomTime(rng *rand.Rand) time.Time {
	t := time.Unix(rng.Int64N(1<<34)-1<<33, rng.Int64N(1e9))
	switch rng.IntN(8) {
	case 0:
		return time.Time{}
	case 1:
		return t.In(time.FixedZone("", (rng.IntN(48)-24)*1800))
	case 2:
		return t.In(time.FixedZone("", 25*3600)) // not writable in RFC 3339
	case 3:
		return t.AddDate(10000, 0, 0)
	}
	return t.UTC()
}

// pieces are what random strings are made of.
var pieces = []string{
	"a", "spiffe://example.org/agent/x", "tool.call", " ", "é", "日本", "🙂",
	`"`, `\`, "/", "<", ">", "&", "\u2028", "\u2029", "\x00", "\b", "\f", "\n", "\r", "\t", "\x1f", "\x7f",
	"\xff", "\xe2\x80", "\xed\xa0\x80", "\ufffd",
}

func randomString(rng *rand.Rand) string {
	var b []byte
	for range rng.IntN(8) + 1 {
		b = append(b, pieces[rng.IntN(len(pieces))]...)
	}
	return string(b)
}

// BenchmarkCanonical measures the canonical encoding of an event as the
// access pipeline records one for a governed MCP call.
func BenchmarkCanonical(b *testing.B) {
	ev := audit.Event{
		Time: time.Date(2026, 11, 27, 21, 0, 0, 123456000, time.UTC), Type: audit.TypeActionDecided,
		Actor: "spiffe://mandate.local/agent/bench", Agent: "spiffe://mandate.local/agent/bench",
		Chain:      []string{"spiffe://mandate.local/agent/bench"},
		OnBehalfOf: "user:alice", Task: "tsk_01JDQ3Z8X5R2Y7W9V4T6S1P0NM", Action: "tool.call",
		Resource: "tool:echo/echo", Decision: "allow", Reasons: []audit.PolicyReason{{Policy: "mandate:autonomous-in-scope"}},
		Details: map[string]string{"policies": "mandate:autonomous-in-scope", "risk": "read", "in_scope": "true", "sensitivity": "public"},
		Point:   "mcp",
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := audit.Canonical(&ev); err != nil {
			b.Fatal(err)
		}
	}
}
