package mcpproxy

import "testing"

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
