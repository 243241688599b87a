package mcpproxy

import (
	"bytes"
	"encoding/json"
	"io"
	"slices"
	"testing"
	"testing/iotest"
)

// FuzzCountingReader: the notification count does not depend on how the
// stream is split into reads.
func FuzzCountingReader(f *testing.F) {
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{}}\n\ndata: {\"id\":1,\"result\":{}}\n"), 7)
	f.Add([]byte("{\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{}}\n{\"jsonrpc\":\"2.0\",\"id\":2,\"method\":\"notifications/message\"}\n"), 30)
	f.Add([]byte("notifications/\n\n\r\ndata:"), 1)
	f.Fuzz(func(t *testing.T, stream []byte, split int) {
		count := func(parts ...[]byte) int64 {
			var c msgCounter
			cr := &countingReader{c: &c}
			for _, p := range parts {
				cr.scan(p)
			}
			return c.seen.Load()
		}
		if split < 0 || split > len(stream) {
			split = len(stream) / 2
		}
		if a, b := count(stream), count(stream[:split], stream[split:]); a != b {
			t.Fatalf("count(%q) = %d whole, %d split at %d", stream, a, b, split)
		}
	})
}

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
			sr := newSSEReader(r, limit)
			var out []string
			for {
				d, err := sr.next()
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
		k, ok := idKey(raw)
		var v any
		d := json.NewDecoder(bytes.NewReader(raw))
		d.UseNumber() // integers beyond float64's precision stay exact
		if !json.Valid(raw) || d.Decode(&v) != nil {
			if ok {
				t.Fatalf("idKey(%q) accepted invalid JSON", raw)
			}
			return
		}
		if !ok {
			return
		}
		again, _ := json.Marshal(v)
		if k2, ok2 := idKey(again); !ok2 || k2 != k {
			t.Fatalf("idKey(%q) = %q, but its re-encoding %q gives %q (%v)", raw, k, again, k2, ok2)
		}
	})
}
