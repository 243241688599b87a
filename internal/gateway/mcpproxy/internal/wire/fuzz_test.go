package wire

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

// FuzzSSEReader: the events read from a stream do not depend on how it
// arrives (whole, or a byte at a time), and none exceeds the bound.
func FuzzSSEReader(f *testing.F) {
	f.Add([]byte("event: message\ndata: {\"a\":1}\n\n: comment\nid: 3\ndata: x\ndata: y\r\n\r\ndata\n\ndata: tail"), 64)
	f.Add([]byte("data:no-space\n\n\n\nretry: 10\ndata: \n\n"), 4)
	f.Fuzz(func(t *testing.T, stream []byte, limit int) {
		if limit <= 0 || limit > 1<<16 {
			limit = 1 << 10
		}
		read := func(r io.Reader) ([]string, error) {
			sr := NewEventReader(r, limit)
			defer sr.Release()
			var out []string
			for {
				d, err := sr.Next()
				if err != nil {
					if err == io.EOF {
						err = nil
					}
					return out, err
				}
				if len(d) > limit {
					t.Fatalf("event of %d bytes over the bound %d", len(d), limit)
				}
				out = append(out, string(d))
			}
		}
		whole, werr := read(bytes.NewReader(stream))
		bytewise, berr := read(iotest.OneByteReader(bytes.NewReader(stream)))
		if !slices.Equal(whole, bytewise) || (werr == nil) != (berr == nil) {
			t.Fatalf("stream %q: whole %q (%v), byte-wise %q (%v)", stream, whole, werr, bytewise, berr)
		}
	})
}

// FuzzIDKey: an id's key does not depend on how the id is encoded.
func FuzzIDKey(f *testing.F) {
	for _, s := range []string{`"mandate-1"`, `"mandate-\u0031"`, `7`, ` -3 `, `1.5`, `"\"q"`, `{}`, `null`, `"unterminated`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		k, ok := IDKey(raw)
		var v any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber() // integers beyond float64's precision stay exact
		if !json.Valid(raw) || d.Decode(&v) != nil {
			if ok {
				t.Fatalf("IDKey(%q) accepted invalid JSON", raw)
			}
			return
		}
		if !ok {
			return
		}
		again, _ := json.Marshal(v)
		if k2, ok2 := IDKey(again); !ok2 || k2 != k {
			t.Fatalf("IDKey(%q) = %q, but its re-encoding %q gives %q (%v)", raw, k, again, k2, ok2)
		}
	})
}
