package audit

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"testing"

	"github.com/mandatehq/mandate/internal/jsontest"
)

// TestIsCanonicalJSON checks CanonicalJSON's short way against its long way on
// random JSON: every value the long way writes whose strings need no
// escapes must be recognized as canonical, and anything recognized must
// be what the long way writes. FuzzCanonicalJSON checks the second half on
// arbitrary bytes.
func TestIsCanonicalJSON(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(5, 6))
	recognized := 0
	for i := range 20000 {
		raw := jsontest.Value(rng, 0)
		c, err := canonicalizeSlowly(raw)
		if err != nil {
			t.Fatalf("canonicalizeSlowly(%s): %v", raw, err)
		}
		for _, in := range [][]byte{raw, c} {
			if isCanonicalJSON(in) {
				recognized++
				if !bytes.Equal(in, c) {
					t.Fatalf("value %d: isCanonicalJSON(%s), but canonicalize gives %s", i, in, c)
				}
			}
		}
		if !isCanonicalJSON(c) && !bytes.ContainsAny(c, `\`+"\u2028\u2029") {
			t.Fatalf("value %d: the long way gives %s, which isCanonicalJSON does not recognize", i, c)
		}
	}
	if recognized < 5000 {
		t.Errorf("only %d values recognized as canonical; the generator no longer exercises the short way", recognized)
	}
}

// canonicalizeSlowly is CanonicalJSON without its short way.
func canonicalizeSlowly(raw []byte) ([]byte, error) {
	v, err := decodeValue(raw)
	if err != nil {
		return nil, err
	}
	return marshalValue(v)
}

func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `{"name":"t","inputSchema":{"type":"object"}}`, `1e400`, `"<&>"`, `{"a":1} x`, `[`,
		`{"a":1,"b":[true,false,null,-0.5e+3,"é<&>"],"c":{}}`, `{"a":1,"a":2}`, `{"b":1,"a":2}`, `"\u00e9"`, "\"\u2028\"", `01`, `-`, `1.`, `1e`, `{"a":1}}`, `{"a":1}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		if isCanonicalJSON(raw) {
			// The short way must agree with the long way.
			if c, err := canonicalizeSlowly(raw); err != nil || !bytes.Equal(c, raw) {
				t.Fatalf("isCanonicalJSON(%q), but the long way = %q, %v", raw, c, err)
			}
		}
		c, err := CanonicalJSON(raw)
		if err != nil {
			return
		}
		if !json.Valid(c) || !json.Valid(raw) {
			t.Fatalf("CanonicalJSON(%q) = %q: both must be one valid JSON value", raw, c)
		}
		c2, err := CanonicalJSON(c)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("CanonicalJSON not idempotent: %q → %q → %q (%v)", raw, c, c2, err)
		}
	})
}
