package mcpproxy

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"
)

// TestMembers holds members to json.Unmarshal into a
// map[string]json.RawMessage, what it stands in for, on random JSON:
// objects with whitespace, escaped and repeated keys, and values of every
// kind, and non-objects.
func TestMembers(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(7, 8))
	plainOnes := 0
	for range 20000 {
		raw := randomJSON(rng, 0)
		if rng.IntN(4) == 0 {
			raw = append(append([]byte(" \n"), raw...), "\t "...)
		}
		if _, ok := plainMembers(raw); ok {
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
	var want map[string]json.RawMessage
	if json.Unmarshal(raw, &want) != nil {
		want = nil
	}
	got := members(raw)
	if (got == nil) != (want == nil) || len(got) != len(want) {
		t.Fatalf("members(%s) = %q, want %q", raw, got, want)
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("members(%s)[%q] = %s, want %s", raw, k, got[k], v)
		}
		var ws string
		wok := json.Unmarshal(v, &ws) == nil && ws != ""
		if gs, gok := stringMember(got, k); gs != ws || gok != wok {
			t.Fatalf("stringMember(%s, %q) = %q, %v; want %q, %v", raw, k, gs, gok, ws, wok)
		}
	}
}
