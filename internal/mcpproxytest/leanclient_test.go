package mcpproxytest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestLeanClient: the lean client speaks both revisions to EchoServer and
// to the Go SDK's servers (which answer with server-sent events, and in
// 2026-07-28 validate the _meta triple and the headers), and counts
// anything but a successful tool result as an error.
func TestLeanClient(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		h       http.Handler
		version string
	}{
		{"lean 2025-11-25", &EchoServer{}, Version20251125},
		{"lean 2026-07-28", &EchoServer{Versions: AllVersions}, Version20260728},
		{"lean 2026-07-28 only", &EchoServer{Versions: []string{Version20260728}}, Version20260728},
		{"sdk 2025-11-25", SDKEchoServer(), Version20251125},
		{"sdk stateless 2026-07-28", SDKStatelessEchoServer(), Version20260728},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			ctx := t.Context()
			dial := func(tool, args string) *LeanClient {
				t.Helper()
				s, err := DialLeanClient(ctx, LeanClientConfig{Endpoint: srv.URL, Transport: srv.Client().Transport,
					ProtocolVersion: tc.version, Tool: tool, Arguments: args})
				if err != nil {
					t.Fatalf("DialLeanClient: %v", err)
				}
				return s
			}
			s := dial("", "")
			stateful := tc.version == Version20251125
			if (s.SessionID() != "") != stateful || s.ProtocolVersion() != tc.version {
				t.Errorf("session %q version %q, want %s with a session: %v", s.SessionID(), s.ProtocolVersion(), tc.version, stateful)
			}
			for i := range 3 {
				if err := s.Call(ctx); err != nil {
					t.Fatalf("Call %d: %v", i, err)
				}
			}
			for args, tool := range map[string]string{`{"text":1}`: "echo", `{}`: "nope"} {
				if err := dial(tool, args).Call(ctx); !errors.Is(err, ErrCall) {
					t.Errorf("Call %s(%s) = %v, want ErrCall", tool, args, err)
				}
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Call(ctx); (err == nil) == stateful {
				t.Errorf("Call after Close = %v, want an error only with a session (%v)", err, stateful)
			}
		})
	}
}

// TestLeanClientRefused: a client asking for 2026-07-28 of a server that
// speaks only the stateful revisions fails to dial, and says why; so does
// one asking for a revision it does not know.
func TestLeanClientRefused(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]http.Handler{"lean": &EchoServer{}, "sdk stateful": SDKEchoServer()} {
		srv := httptest.NewServer(h)
		defer srv.Close()
		_, err := DialLeanClient(t.Context(), LeanClientConfig{Endpoint: srv.URL, ProtocolVersion: Version20260728})
		if !errors.Is(err, ErrCall) || !strings.Contains(err.Error(), "server/discover") {
			t.Errorf("%s: DialLeanClient(2026-07-28) = %v, want ErrCall from server/discover", name, err)
		}
	}
	if _, err := DialLeanClient(t.Context(), LeanClientConfig{Endpoint: "http://127.0.0.1:9", ProtocolVersion: "2024-11-05"}); err == nil {
		t.Error("DialLeanClient(2024-11-05) succeeded")
	}
}

// TestScanEvents checks the client's server-sent events parser.
func TestScanEvents(t *testing.T) {
	t.Parallel()
	s := &LeanClient{}
	for _, tc := range []struct {
		name, body string
		ok         bool
	}{
		{"one event", "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n", true},
		{"CRLF and no space", "data:{\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\r\n\r\n", true},
		{"split data lines", "data: {\"jsonrpc\":\"2.0\",\ndata: \"id\":7,\"result\":{}}\n\n", true},
		{"after a notification and a request", "id: 1\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n" +
			"data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\"}\n\n" +
			": comment\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}", true},
		{"another id", "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n", false},
		{"priming event only", "id: 0\ndata:\n\n", false},
	} {
		ok, err := s.scanEvents([]byte(tc.body), []byte("7"))
		if ok != tc.ok || (tc.ok && err != nil) {
			t.Errorf("%s: scanEvents = %v, %v; want %v", tc.name, ok, err, tc.ok)
		}
	}
}

// BenchmarkLeanClient is the harness's own cost: the lean client calling
// EchoServer, in each revision.
func BenchmarkLeanClient(b *testing.B) {
	srv := httptest.NewServer(&EchoServer{Versions: AllVersions})
	defer srv.Close()
	for _, v := range []string{Version20251125, Version20260728} {
		b.Run(v, func(b *testing.B) {
			s, err := DialLeanClient(b.Context(), LeanClientConfig{Endpoint: srv.URL, Transport: srv.Client().Transport, ProtocolVersion: v})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := s.Call(b.Context()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
