package serveproc

import (
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestStart builds mandate, runs it with an MCP upstream from the
// configuration file, and stops it: it serves, reports CPU and memory,
// exits cleanly on SIGTERM and leaves nothing behind.
func TestStart(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts mandate")
	}
	ctx := t.Context()
	bin, err := Build(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	s, err := Start(ctx, Options{Bin: bin, TrustDomain: "example.org", Life: 2 * time.Hour,
		Upstreams: []Upstream{{Name: "echo", URL: "http://127.0.0.1:9/mcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if !strings.HasPrefix(s.URL, "http://127.0.0.1:") {
		t.Errorf("URL = %q, want a loopback URL", s.URL)
	}
	// The upstream from the file is served (its metadata is public).
	resp, err := http.Get(s.URL + "/.well-known/oauth-protected-resource/mcp/echo")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET the echo upstream's resource metadata = %s, want 200", resp.Status)
	}
	if _, err := os.Stat(s.Socket); err != nil {
		t.Errorf("admin socket: %v", err)
	}
	if m, err := s.Memory(); err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Errorf("Memory() = %+v, %v", m, err)
	}
	if cpu, err := s.CPU(); err != nil || cpu <= 0 {
		t.Errorf("CPU() = %v, %v; want a start-up's worth", cpu, err)
	}
	if s.DataSize() <= 0 {
		t.Error("DataSize() = 0, want the store's size")
	}
	if err := s.Stop(); err != nil {
		t.Errorf("Stop: %v\n%s", err, s.LogTail())
	}
	if err := s.Stop(); err != nil {
		t.Errorf("second Stop: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := os.Stat(s.Dir); !os.IsNotExist(err) {
		t.Errorf("directory %s after Close: %v", s.Dir, err)
	}
}

// TestStartFails: a server that cannot start is reported with its log.
func TestStartFails(t *testing.T) {
	if testing.Short() {
		t.Skip("builds mandate")
	}
	bin, err := Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	_, err = Start(t.Context(), Options{Bin: bin, TrustDomain: "example.org", Life: time.Hour, Args: []string{"--listen", "not an address"}})
	if err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("Start with a bad listen address = %v, want an exit with the log", err)
	}
}

func TestParseStatCPU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, stat string
		want       time.Duration
		ok         bool
	}{
		{"plain", "4242 (mandate) S 1 4242 4242 0 -1 4194560 9000 0 0 0 250 31 0 0 20 0 9 0 100 0 0", 2810 * time.Millisecond, true},
		{"spaces and parens in the name", "7 (a) b) (c) R 1 7 7 0 -1 0 0 0 0 0 1 2 0 0", 30 * time.Millisecond, true},
		{"short", "7 (x) R 1 2 3", 0, false},
		{"no name", "7 x R", 0, false},
		{"not a number", "7 (x) R 1 7 7 0 -1 0 0 0 0 0 a 2 0 0", 0, false},
	} {
		got, err := parseStatCPU([]byte(tc.stat))
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("%s: parseStatCPU = %v, %v; want %v (ok %v)", tc.name, got, err, tc.want, tc.ok)
		}
	}
}
