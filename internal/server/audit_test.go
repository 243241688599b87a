package server

import (
	"bufio"
	"bytes"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/store"
)

func TestValidateAudit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string
	}{
		{"defaults", func(c *Config) {}, ""},
		{"negative interval", func(c *Config) { c.Audit.CheckpointInterval = -time.Second }, "audit.checkpoint_interval: must not be negative"},
		{"short retention", func(c *Config) { c.Audit.Retention = time.Minute }, "audit.retention: must be at least 1h"},
		{"negative retention", func(c *Config) { c.Audit.Retention = -time.Hour }, "audit.retention: must not be negative"},
		{"no buffer", func(c *Config) { c.Audit.SinkBuffer = 0 }, "audit.sinks.buffer: must be at least 1"},
		{"file size", func(c *Config) { c.Audit.FileSinkMaxMB = 0 }, "audit.sinks.file_max_mb"},
		{"backups", func(c *Config) { c.Audit.FileSinkBackups = 0 }, "audit.sinks.file_backups"},
		{"webhook", func(c *Config) { c.Audit.Webhook = "siem.example/ingest" }, "audit.sinks.webhook: \"siem.example/ingest\" must be an absolute http(s) URL"},
		{"signing key file missing", func(c *Config) { c.Audit.SigningKeyFile = "/nonexistent/ledger.key" }, "audit.signing_key_file: stat /nonexistent/ledger.key"},
		{"webhook token without webhook", func(c *Config) { c.Audit.WebhookTokenFile = "/nonexistent" }, "audit.sinks.webhook_token_file: is set but audit.sinks.webhook is not"},
		{"webhook token file missing", func(c *Config) {
			c.Audit.Webhook, c.Audit.WebhookTokenFile = "https://siem.example/in", "/nonexistent/token"
		}, "audit.sinks.webhook_token_file: open /nonexistent/token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := Defaults()
			c.DataDir = "/data"
			c.complete(func(string) string { return "" })
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServerAuditLedger: the server records into the ledger, streams to
// the file sink, exports metrics, warns when failing open, and leaves a
// verifiable ledger with a final checkpoint when it stops.
func TestServerAuditLedger(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	sinkFile := filepath.Join(cfg.DataDir, "audit.jsonl")
	cfg.Audit.FileSink = sinkFile
	cfg.Audit.FailOpen = true
	var logs syncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, stop := startServer(t, cfg)
	if !strings.Contains(logs.String(), "AUDIT FAIL-OPEN is configured") {
		t.Errorf("no fail-open warning at start; logs:\n%s", logs.String())
	}
	code, body := get(t, http.DefaultClient, "http://"+s.Addr().String()+"/metrics")
	if code != 200 || !strings.Contains(body, "mandate_audit_tree_size") {
		t.Errorf("GET /metrics = %d, want the audit metrics", code)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// The signing key rotation at start was recorded and streamed.
	f, err := os.Open(sinkFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() || !strings.Contains(sc.Text(), `"type":"signing_key.rotated"`) {
		t.Errorf("file sink's first line = %q, want the signing key event", sc.Text())
	}
	db, err := openStoreForTest(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _, err := seal.LoadKeyring(seal.Sources{File: filepath.Join(cfg.DataDir, DefaultKEKFile)})
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := l.LatestCheckpoint(t.Context())
	if err != nil || cp.Size < 1 {
		t.Fatalf("after shutdown, LatestCheckpoint() = %v, %v; want the final checkpoint", cp, err)
	}
	if rep, err := l.Verify(t.Context()); err != nil || !rep.OK() {
		t.Errorf("Verify() after shutdown = %+v, %v", rep, err)
	}
}

func openStoreForTest(t *testing.T, cfg Config) (audit.Store, error) {
	t.Helper()
	cfg.complete(os.Getenv)
	b, err := store.Open(t.Context(), cfg.Store)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { b.Close() })
	return b, nil
}

// TestNewFailureClosesSinks: when the server fails to start after opening
// its ledger, the ledger's sinks (here a file) are not left open.
func TestNewFailureClosesSinks(t *testing.T) {
	if _, err := os.Stat("/proc/self/fd"); err != nil {
		t.Skip("needs /proc/self/fd")
	}
	cfg := testConfig(t)
	sinkPath := filepath.Join(t.TempDir(), "audit.jsonl")
	cfg.Audit.FileSink = sinkPath
	cfg.Policy.Dir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.Policy.Dir, "bad.cedar"), []byte("permit ("), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), cfg); err == nil {
		t.Fatal("New with an invalid policy succeeded")
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		if target, _ := os.Readlink(filepath.Join("/proc/self/fd", fd.Name())); target == sinkPath {
			t.Fatalf("the file sink %s is still open (fd %s)", sinkPath, fd.Name())
		}
	}
}
