package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mandatehq/mandate/internal/audit"
)

// AuditConfig configures the audit ledger and its streaming sinks.
type AuditConfig struct {
	// FailOpen lets actions proceed when their audit event cannot be
	// written. Off: fail closed.
	FailOpen bool
	// Origin names the ledger in its checkpoints; it is fixed when the
	// ledger's signing key is first generated. Empty: <trust_domain>/audit.
	Origin string
	// SigningKeyFile holds the checkpoint signing key (note signer format,
	// from `mandate audit keygen`); empty keeps a generated key in the
	// store.
	SigningKeyFile string
	// CheckpointInterval is how often a checkpoint is signed if the tree
	// grew; 0 disables periodic checkpoints.
	CheckpointInterval time.Duration
	// Retention is how long events are kept; 0 keeps them forever.
	Retention time.Duration
	// RedactFields are argument fields always replaced by keyed hashes.
	RedactFields []string
	// SinkBuffer is each sink's buffer, in events.
	SinkBuffer int
	// FileSink is the path of a JSON-lines file sink; empty disables it.
	FileSink string
	// FileSinkMaxMB is the size at which the file sink rotates.
	FileSinkMaxMB int
	// FileSinkBackups is how many rotated files the file sink keeps.
	FileSinkBackups int
	// Webhook is the URL of a webhook sink; empty disables it.
	Webhook string
	// WebhookTokenFile holds a bearer token the webhook sink sends in
	// Authorization; empty sends none.
	WebhookTokenFile string
	// Syslog is the syslog sink: "local", udp://host:port,
	// tcp://host:port or unix:///path; empty disables it.
	Syslog string
}

func (a *AuditConfig) validate(bad func(key, format string, args ...any)) {
	if a.CheckpointInterval < 0 {
		bad("audit.checkpoint_interval", "must not be negative (got %s)", a.CheckpointInterval)
	}
	if a.Retention < 0 {
		bad("audit.retention", "must not be negative (got %s)", a.Retention)
	} else if a.Retention > 0 && a.Retention < time.Hour {
		bad("audit.retention", "must be at least 1h, or 0 to keep events forever (got %s)", a.Retention)
	}
	if a.SinkBuffer < 1 {
		bad("audit.sinks.buffer", "must be at least 1 (got %d)", a.SinkBuffer)
	}
	if a.FileSinkMaxMB < 1 {
		bad("audit.sinks.file_max_mb", "must be at least 1 (got %d)", a.FileSinkMaxMB)
	}
	if a.FileSinkBackups < 1 {
		bad("audit.sinks.file_backups", "must be at least 1 (got %d)", a.FileSinkBackups)
	}
	if a.Webhook != "" {
		if u, err := url.Parse(a.Webhook); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("audit.sinks.webhook", "%q must be an absolute http(s) URL", a.Webhook)
		}
	}
	if a.SigningKeyFile != "" {
		if _, err := readSignerKey(a.SigningKeyFile); err != nil {
			bad("audit.signing_key_file", "%v", err)
		}
	}
	if a.WebhookTokenFile != "" {
		if a.Webhook == "" {
			bad("audit.sinks.webhook_token_file", "is set but audit.sinks.webhook is not")
		}
		if _, err := readToken(a.WebhookTokenFile); err != nil {
			bad("audit.sinks.webhook_token_file", "%v", err)
		}
	}
}

// openLedger opens the audit ledger on the store, with the configured
// sinks.
func (s *Server) openLedger(ctx context.Context) (_ *audit.Ledger, err error) {
	a := s.cfg.Audit
	origin := a.Origin
	if origin == "" {
		origin = s.cfg.TrustDomain + "/audit"
	}
	var sinks []audit.SinkConfig
	defer func() {
		// Until the ledger owns them, the sinks opened so far are ours to
		// close.
		if err != nil {
			for _, sc := range sinks {
				_ = sc.Writer.Close()
			}
		}
	}()
	if a.FileSink != "" {
		w, err := audit.NewFileSink(a.FileSink, int64(a.FileSinkMaxMB)<<20, a.FileSinkBackups)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, audit.SinkConfig{Name: "file", Writer: w, Buffer: a.SinkBuffer})
	}
	if a.Webhook != "" {
		var header http.Header
		if a.WebhookTokenFile != "" {
			tok, err := readToken(a.WebhookTokenFile)
			if err != nil {
				return nil, fmt.Errorf("audit.sinks.webhook_token_file: %w", err)
			}
			header = http.Header{"Authorization": {"Bearer " + tok}}
		}
		w, err := audit.NewWebhookSink(a.Webhook, header, nil)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, audit.SinkConfig{Name: "webhook", Writer: w, Buffer: a.SinkBuffer})
	}
	if a.Syslog != "" {
		addr := a.Syslog
		if addr == "local" {
			addr = ""
		}
		w, err := audit.NewSyslogSink(addr)
		if err != nil {
			return nil, err
		}
		sinks = append(sinks, audit.SinkConfig{Name: "syslog", Writer: w, Buffer: a.SinkBuffer})
	}
	var skey string
	if a.SigningKeyFile != "" {
		var err error
		if skey, err = readSignerKey(a.SigningKeyFile); err != nil {
			return nil, fmt.Errorf("audit.signing_key_file: %w", err)
		}
	}
	interval := a.CheckpointInterval
	if interval == 0 {
		interval = -1 // disabled
	}
	l, err := audit.NewLedger(ctx, audit.LedgerConfig{
		Store: s.backend, Sealer: s.sealer, Origin: origin, SignerKey: skey, FailOpen: a.FailOpen, RedactFields: a.RedactFields,
		Sinks: sinks, CheckpointInterval: interval, Retention: a.Retention, AnchorFile: AnchorPath(s.cfg.DataDir),
		Logger: s.log.With("component", "audit"),
	})
	if err != nil {
		return nil, fmt.Errorf("audit ledger: %w", err)
	}
	return l, nil
}

// readToken reads a bearer token from a file: one line, no whitespace.
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", errors.New("the file must hold one token without whitespace")
	}
	return tok, nil
}

// readSignerKey reads a note signer key (PRIVATE+KEY+…) from a file that
// only its owner may read.
func readSignerKey(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if st.Mode().Perm()&0o077 != 0 {
		return "", fmt.Errorf("%s is accessible by other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	skey := strings.TrimSpace(string(b))
	if _, err := note.NewSigner(skey); err != nil {
		return "", fmt.Errorf("%s does not hold a note signer key (PRIVATE+KEY+…, see mandate audit keygen): %v", path, err)
	}
	return skey, nil
}
