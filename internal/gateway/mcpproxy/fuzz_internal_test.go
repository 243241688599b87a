package mcpproxy

import (
	"bytes"
	"encoding/json"
	"net/http/httptest"
	"testing"
)

func FuzzCanonical(f *testing.F) {
	for _, s := range []string{`{"b":1,"a":[true,null,"x"]}`, `{"name":"t","inputSchema":{"type":"object"}}`, `1e400`, `"<&>"`, `{"a":1} x`, `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		c, err := Canonical(raw)
		if err != nil {
			return
		}
		if !json.Valid(c) {
			t.Fatalf("Canonical(%q) = %q, not valid JSON", raw, c)
		}
		c2, err := Canonical(c)
		if err != nil || !bytes.Equal(c, c2) {
			t.Fatalf("Canonical not idempotent: %q → %q → %q (%v)", raw, c, c2, err)
		}
	})
}

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

func FuzzCredential(f *testing.F) {
	for _, s := range []string{"Bearer abc", "DPoP abc", "bearer  x", "Basic x", "", "Bearer", "Bearer a b"} {
		f.Add(s, "proof")
	}
	f.Fuzz(func(t *testing.T, authz, dpop string) {
		r := httptest.NewRequest("POST", "http://h/mcp", nil)
		r.Header.Set("Authorization", authz)
		r.Header.Set("DPoP", dpop)
		c, ok := credentialFrom(r, "")
		if ok && (c.Token == "" || c.URL != "http://h/mcp") {
			t.Fatalf("credentialFrom(%q) = %+v", authz, c)
		}
	})
}
