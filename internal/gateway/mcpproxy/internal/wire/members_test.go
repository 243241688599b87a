package wire

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/mandatehq/mandate/internal/jsontest"
)

// TestMembers holds Members to json.Unmarshal into a
// map[string]json.RawMessage, what it stands in for, and isCompact to
// json.Compact, on random JSON: objects with whitespace, escaped and
// repeated keys, and values of every kind, and non-objects.
func TestMembers(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	plainOnes := 0
	for range 20000 {
		raw := jsontest.Value(rng, 0)
		if rng.IntN(4) == 0 {
			raw = append(append([]byte(" \n"), raw...), "\t "...)
		}
		if plainMembers(raw, func(_, _ []byte) bool { return true }) {
			plainOnes++
		}
		checkMembers(t, raw)
	}
	if plainOnes < 1000 {
		t.Errorf("only %d objects took the short way; the generator no longer exercises it", plainOnes)
	}
}

func FuzzMembers(f *testing.F) {
	for _, s := range []string{`{}`, ` { "name" : "echo" , "arguments" : {"a":[1,"}"]} } `, `{"a":1,"a":2}`, `{"\u0061":1}`, `{"a":"\"}"}`, `null`, `[]`, `{"a":tru}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if json.Valid(raw) {
			checkMembers(t, raw)
		}
	})
}

func checkMembers(t *testing.T, raw []byte) {
	t.Helper()
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err == nil && isCompact(raw) != bytes.Equal(c.Bytes(), raw) {
		t.Fatalf("isCompact(%s) = %v, but json.Compact gives %s", raw, isCompact(raw), c.Bytes())
	}
	var want map[string]json.RawMessage
	if json.Unmarshal(raw, &want) != nil {
		want = nil
	}
	got := Members(raw)
	if (got == nil) != (want == nil) || len(got) != len(want) {
		t.Fatalf("Members(%s) = %q, want %q", raw, got, want)
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("Members(%s)[%q] = %s, want %s", raw, k, got[k], v)
		}
		var ws string
		wok := json.Unmarshal(v, &ws) == nil && ws != ""
		if gs, gok := StringMember(got, k); gs != ws || gok != wok {
			t.Fatalf("StringMember(%s, %q) = %q, %v; want %q, %v", raw, k, gs, gok, ws, wok)
		}
	}
}

// TestDecodeMessage holds Decode to json.Unmarshal on random
// messages: envelope members and others, names in other cases or escaped,
// repeated members, values of every type.
func TestDecodeMessage(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(9, 10))
	fast := 0
	for range 20000 {
		raw := randomMessage(rng)
		if decodePlainMessage(raw, &Message{}) {
			fast++
		}
		checkDecodeMessage(t, raw)
	}
	if fast < 2000 {
		t.Errorf("only %d messages took the short way; the generator no longer exercises it", fast)
	}
}

// TestIsToolError holds IsToolError to json.Unmarshal into a struct with
// an IsError field, on random results.
func TestIsToolError(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(11, 12))
	for range 20000 {
		checkIsToolError(t, randomObject(rng, []string{"isError", "isError", "IsError", "content", `\u0069sError`, "isErrorſ", "structuredContent"}))
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, s := range []string{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`, `{"jsonrpc":"2.0","id":"a","result":{"isError":true}}`,
		`{"method":5,"method":"x"}`, `{"Method":"x"}`, `{"id":null}`, `[]`, `{`, ` {"jsonrpc" : "2.0"} `} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		checkDecodeMessage(t, raw)
		if json.Valid(raw) {
			checkIsToolError(t, raw)
		}
	})
}

func checkDecodeMessage(t *testing.T, raw []byte) {
	t.Helper()
	var want, got Message
	werr := json.Unmarshal(raw, &want)
	gerr := Decode(raw, &got)
	if (werr == nil) != (gerr == nil) || werr != nil && werr.Error() != gerr.Error() {
		t.Fatalf("Decode(%s) error %v, want %v", raw, gerr, werr)
	}
	if werr == nil && !reflect.DeepEqual(got, want) {
		t.Fatalf("Decode(%s) = %+v, want %+v", raw, got, want)
	}
	if werr == nil {
		// What the relay sends on is compact, valid JSON.
		enc := got.Encode()
		var c bytes.Buffer
		if err := json.Compact(&c, enc); err != nil || !bytes.Equal(c.Bytes(), enc) {
			t.Fatalf("Decode(%s).Encode() = %s, not compact JSON (%v)", raw, enc, err)
		}
	}
}

func checkIsToolError(t *testing.T, raw []byte) {
	t.Helper()
	var v struct {
		IsError bool `json:"isError"`
	}
	_ = json.Unmarshal(raw, &v)
	if got := IsToolError(raw); got != v.IsError {
		t.Fatalf("IsToolError(%s) = %v, want %v", raw, got, v.IsError)
	}
}

// randomMessage returns a random JSON-RPC message, or something like one.
func randomMessage(rng *rand.Rand) []byte {
	return randomObject(rng, []string{"jsonrpc", "id", "method", "params", "result", "error", "Method", "ID", `\u006dethod`, "other", "jsonrpc", "method"})
}

// randomObject returns a JSON object with members named from names
// (repeats possible), whose values are strings as often as not.
func randomObject(rng *rand.Rand, names []string) []byte {
	b := []byte("{")
	for j := range rng.IntN(6) {
		if j > 0 {
			b = append(b, ',')
		}
		if rng.IntN(8) == 0 {
			b = append(b, ' ')
		}
		b = append(b, '"')
		b = append(b, names[rng.IntN(len(names))]...)
		b = append(b, `":`...)
		switch rng.IntN(4) {
		case 0:
			b = append(b, []string{"true", "false", "null", `"2.0"`, `"tools/call"`}[rng.IntN(5)]...)
		case 1:
			b = append(b, jsontest.String(rng)...)
		default:
			b = append(b, jsontest.Value(rng, 1)...)
		}
	}
	return append(b, '}')
}

// TestJSONString holds String to json.Marshal.
func TestJSONString(t *testing.T) {
	t.Parallel()
	pieces := []string{"tools/call", "echo", "a_b-c.d", " ", "<", ">", "&", `"`, `\`, "\n", "\x00", "\x7f", "é", "\u2028", "\xff", "🙂"}
	rng := rand.New(rand.NewPCG(13, 14))
	for range 5000 {
		var s string
		for range rng.IntN(4) {
			s += pieces[rng.IntN(len(pieces))]
		}
		want, _ := json.Marshal(s)
		if got := String(s); !bytes.Equal(got, want) {
			t.Fatalf("String(%q) = %s, want %s", s, got, want)
		}
	}
}

// TestSameID holds SameID to its definition: both ids have the same
// IDKey.
func TestSameID(t *testing.T) {
	t.Parallel()
	ids := []string{`"a"`, `"\u0061"`, ` "a" `, `"mandate-1"`, `"mandate-1" `, `""`, `"\n"`, "\"\xff\"", `1`, ` 1`, `01`, `1.0`, `-0`, `0`, `null`, `"1"`, `"a`, ``}
	for _, a := range ids {
		for _, b := range ids {
			ka, ok := IDKey(json.RawMessage(a))
			kb, _ := IDKey(json.RawMessage(b))
			if got, want := SameID(json.RawMessage(a), json.RawMessage(b)), ok && ka == kb; got != want {
				t.Errorf("SameID(%s, %s) = %v, want %v", a, b, got, want)
			}
		}
	}
}
