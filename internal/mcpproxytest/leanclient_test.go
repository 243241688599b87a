package mcpproxytest

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestLeanClient: the lean client works against EchoServer and against a
// Go SDK server (which answers with server-sent events), and counts
// anything but a successful tool result as an error.
func TestLeanClient(t *testing.T) {
	t.Parallel()
	for name, h := range map[string]http.Handler{"lean": &EchoServer{}, "sdk": SDKEchoServer()} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(h)
			defer srv.Close()
			ctx := t.Context()
			s, err := DialLeanClient(ctx, LeanClientConfig{Endpoint: srv.URL, Transport: srv.Client().Transport})
			if err != nil {
				t.Fatalf("DialLeanClient: %v", err)
			}
			if s.SessionID() == "" || s.ProtocolVersion() != LeanClientVersion {
				t.Errorf("session %q version %q, want a session and %s", s.SessionID(), s.ProtocolVersion(), LeanClientVersion)
			}
			for i := range 3 {
				if err := s.Call(ctx); err != nil {
					t.Fatalf("Call %d: %v", i, err)
				}
			}
			for args, tool := range map[string]string{`{"text":1}`: "echo", `{}`: "nope"} {
				bad, err := DialLeanClient(ctx, LeanClientConfig{Endpoint: srv.URL, Transport: srv.Client().Transport, Tool: tool, Arguments: args})
				if err != nil {
					t.Fatalf("DialLeanClient: %v", err)
				}
				if err := bad.Call(ctx); !errors.Is(err, ErrCall) {
					t.Errorf("Call %s(%s) = %v, want ErrCall", tool, args, err)
				}
			}
			if err := s.Close(ctx); err != nil {
				t.Fatal(err)
			}
			if err := s.Call(ctx); err == nil {
				t.Error("Call after DELETE succeeded")
			}
		})
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
// EchoServer.
func BenchmarkLeanClient(b *testing.B) {
	srv := httptest.NewServer(&EchoServer{})
	defer srv.Close()
	s, err := DialLeanClient(b.Context(), LeanClientConfig{Endpoint: srv.URL, Transport: srv.Client().Transport})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := s.Call(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}
