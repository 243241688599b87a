package audit

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultSinkBuffer is a sink's buffer, in events, when SinkConfig.Buffer
// is zero.
const DefaultSinkBuffer = 4096

// maxSinkBatch caps the events handed to one SinkWriter call.
const maxSinkBatch = 512

// SinkWriter delivers durable events somewhere else: a file, a webhook, a
// syslog server. It is called from one goroutine at a time.
type SinkWriter interface {
	WriteEvents(ctx context.Context, evs []*Event) error
	Close() error
}

// CheckpointWriter is implemented by sinks that also receive every new
// signed checkpoint: copies kept beyond the server's reach are what
// expose a later rewrite of the ledger (see docs/audit.md). It is called
// from the same goroutine as WriteEvents.
type CheckpointWriter interface {
	WriteCheckpoint(ctx context.Context, cp *Checkpoint) error
}

// checkpointBuffer is how many checkpoints may wait for a sink.
const checkpointBuffer = 16

// SinkConfig is one streaming sink.
type SinkConfig struct {
	// Name labels the sink in logs and metrics (file, webhook, syslog).
	Name   string
	Writer SinkWriter
	// Buffer is how many events may wait for the sink; when it is full,
	// new events are dropped (counted in mandate_audit_sink_dropped_total
	// and logged) rather than slowing the ledger. Default
	// DefaultSinkBuffer.
	Buffer int
}

// sink is a SinkWriter behind a bounded buffer. The ledger is the system
// of record; sinks are best-effort copies and never block it.
type sink struct {
	name     string
	w        SinkWriter
	ch       chan *Event
	cps      chan *Checkpoint // nil unless w is a CheckpointWriter
	log      *slog.Logger
	dropped  prometheus.Counter
	failures prometheus.Counter

	mu        sync.Mutex
	closed    bool
	drops     int64 // since the last drop log
	lastDropL time.Time
}

func newSink(sc SinkConfig, log *slog.Logger, m ledgerMetrics) *sink {
	if sc.Buffer <= 0 {
		sc.Buffer = DefaultSinkBuffer
	}
	s := &sink{name: sc.Name, w: sc.Writer, ch: make(chan *Event, sc.Buffer), log: log.With("sink", sc.Name),
		dropped: m.sinkDropped.WithLabelValues(sc.Name), failures: m.sinkFailures.WithLabelValues(sc.Name)}
	if _, ok := sc.Writer.(CheckpointWriter); ok {
		s.cps = make(chan *Checkpoint, checkpointBuffer)
	}
	return s
}

// offerCheckpoint queues cp without blocking, if the sink takes
// checkpoints.
func (s *sink) offerCheckpoint(cp *Checkpoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.cps == nil {
		return
	}
	select {
	case s.cps <- cp:
	default:
		s.drop(1, "checkpoint buffer full")
	}
}

// offer queues evs without blocking, dropping what does not fit.
func (s *sink) offer(evs []*Event) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	var n int64
	for _, ev := range evs {
		select {
		case s.ch <- ev:
		default:
			n++
		}
	}
	if n > 0 {
		s.drop(n, "buffer full")
	}
}

// drop counts and (at most every 10 seconds) logs dropped events. Call
// with s.mu held.
func (s *sink) drop(n int64, why string) {
	s.dropped.Add(float64(n))
	s.drops += n
	if now := time.Now(); now.Sub(s.lastDropL) >= 10*time.Second {
		s.log.Warn("audit sink dropped events; the ledger still has them (mandate audit export)", "dropped", s.drops, "reason", why)
		s.drops, s.lastDropL = 0, now
	}
}

func (s *sink) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
		if s.cps != nil {
			close(s.cps)
		}
	}
}

// run delivers queued events and checkpoints until the buffers are
// closed and drained, or ctx ends.
func (s *sink) run(ctx context.Context) {
	defer func() {
		if err := s.w.Close(); err != nil {
			s.log.Warn("closing audit sink", "err", err)
		}
	}()
	evs, cps := s.ch, s.cps
	batch := make([]*Event, 0, maxSinkBatch)
	for evs != nil || cps != nil {
		select {
		case <-ctx.Done():
			return
		case cp, ok := <-cps:
			if !ok {
				cps = nil
				continue
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.w.(CheckpointWriter).WriteCheckpoint(wctx, cp)
			cancel()
			if err != nil {
				s.failures.Inc()
				s.log.Error("audit sink checkpoint delivery failed", "err", err, "size", cp.Size)
				s.mu.Lock()
				s.drop(1, "checkpoint delivery failed")
				s.mu.Unlock()
			}
		case ev, ok := <-evs:
			if !ok {
				evs = nil
				continue
			}
			batch = append(batch[:0], ev)
		fill:
			for len(batch) < maxSinkBatch {
				select {
				case ev, ok := <-evs:
					if !ok {
						evs = nil
						break fill
					}
					batch = append(batch, ev)
				default:
					break fill
				}
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err := s.w.WriteEvents(wctx, batch)
			cancel()
			if err != nil {
				s.failures.Inc()
				s.log.Error("audit sink delivery failed", "err", err, "events", len(batch))
				s.mu.Lock()
				s.drop(int64(len(batch)), "delivery failed")
				s.mu.Unlock()
			}
		}
	}
}

// eventLines encodes evs as JSON lines of their canonical form.
func eventLines(evs []*Event) ([]byte, error) {
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := Canonical(ev)
		if err != nil {
			return nil, err
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return buf.Bytes(), nil
}

// FileSink appends events as JSON lines to a file, rotating it when it
// would grow past MaxBytes: path becomes path.1, path.1 becomes path.2, …,
// keeping MaxBackups old files.
type FileSink struct {
	path       string
	maxBytes   int64
	maxBackups int
	f          *os.File
	size       int64
}

// NewFileSink opens (creating with mode 0600) the file at path.
// maxBytes <= 0 means 100 MiB; maxBackups <= 0 means 5.
func NewFileSink(path string, maxBytes int64, maxBackups int) (*FileSink, error) {
	if maxBytes <= 0 {
		maxBytes = 100 << 20
	}
	if maxBackups <= 0 {
		maxBackups = 5
	}
	s := &FileSink{path: path, maxBytes: maxBytes, maxBackups: maxBackups}
	if err := s.open(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileSink) open() error {
	if err := os.MkdirAll(filepath.Dir(s.path), 0o700); err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	s.f, s.size = f, st.Size()
	return nil
}

func (s *FileSink) rotate() error {
	if err := s.f.Close(); err != nil {
		return err
	}
	for i := s.maxBackups - 1; i >= 1; i-- {
		from := fmt.Sprintf("%s.%d", s.path, i)
		if _, err := os.Stat(from); err == nil {
			if err := os.Rename(from, fmt.Sprintf("%s.%d", s.path, i+1)); err != nil {
				return err
			}
		}
	}
	if err := os.Rename(s.path, s.path+".1"); err != nil {
		return err
	}
	return s.open()
}

// WriteEvents implements SinkWriter. A file is rotated before a line
// that would take it past the limit (a single longer line gets a file of
// its own).
func (s *FileSink) WriteEvents(_ context.Context, evs []*Event) error {
	var buf bytes.Buffer
	for _, ev := range evs {
		b, err := Canonical(ev)
		if err != nil {
			return err
		}
		if s.size+int64(buf.Len()) > 0 && s.size+int64(buf.Len()+len(b)+1) > s.maxBytes {
			if err := s.flush(&buf); err != nil {
				return err
			}
			if err := s.rotate(); err != nil {
				return fmt.Errorf("audit file sink: rotate: %w", err)
			}
		}
		buf.Write(b)
		buf.WriteByte('\n')
	}
	return s.flush(&buf)
}

func (s *FileSink) flush(buf *bytes.Buffer) error {
	n, err := s.f.Write(buf.Bytes())
	s.size += int64(n)
	buf.Reset()
	return err
}

// Close implements SinkWriter.
func (s *FileSink) Close() error { return s.f.Close() }

// WriteCheckpoint implements CheckpointWriter: each checkpoint is written
// to <path>.checkpoints/checkpoint-<size>.txt (mode 0600), ready for
// mandate audit verify --checkpoint.
func (s *FileSink) WriteCheckpoint(_ context.Context, cp *Checkpoint) error {
	dir := s.path + ".checkpoints"
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("checkpoint-%d.txt", cp.Size)), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return nil // already written
	}
	if err != nil {
		return fmt.Errorf("audit file sink: %w", err)
	}
	if _, err := f.Write(cp.Note); err != nil {
		f.Close()
		return fmt.Errorf("audit file sink: %w", err)
	}
	return f.Close()
}

// WebhookSink POSTs batches of events as JSON lines
// (application/x-ndjson) to a URL; any non-2xx answer is a failure.
type WebhookSink struct {
	url    string
	header http.Header
	client *http.Client
}

// NewWebhookSink returns a sink posting to rawURL (http or https) with the
// extra request headers header (e.g. Authorization).
func NewWebhookSink(rawURL string, header http.Header, client *http.Client) (*WebhookSink, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("audit webhook sink: %q is not an http(s) URL", rawURL)
	}
	if client == nil {
		client = &http.Client{Timeout: 10 * time.Second}
	}
	return &WebhookSink{url: u.String(), header: header.Clone(), client: client}, nil
}

// WriteEvents implements SinkWriter.
func (s *WebhookSink) WriteEvents(ctx context.Context, evs []*Event) error {
	b, err := eventLines(evs)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("audit webhook sink: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit webhook sink: %s answered %s", s.url, resp.Status)
	}
	return nil
}

// Close implements SinkWriter.
func (s *WebhookSink) Close() error { s.client.CloseIdleConnections(); return nil }

// WriteCheckpoint implements CheckpointWriter: the signed checkpoint is
// POSTed as text/plain, with its tree size in Mandate-Checkpoint-Size.
func (s *WebhookSink) WriteCheckpoint(ctx context.Context, cp *Checkpoint) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.url, bytes.NewReader(cp.Note))
	if err != nil {
		return err
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "text/plain; charset=utf-8")
	req.Header.Set("Mandate-Checkpoint-Size", strconv.FormatInt(cp.Size, 10))
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("audit webhook sink: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("audit webhook sink: %s answered %s", s.url, resp.Status)
	}
	return nil
}

// syslogTag tags every message the syslog sink sends.
const syslogTag = "mandate-audit"

// SyslogSink sends each event as one syslog message (facility authpriv,
// severity info, tag mandate-audit) whose text is the event's JSON.
type SyslogSink struct {
	w syslogWriter
}

// syslogWriter is a connection to a syslog server that sends messages at
// facility authpriv, severity info, tagged mandate-audit (log/syslog on
// Unix; a network client on Windows, which has no local syslog daemon).
type syslogWriter interface {
	Info(msg string) error
	Close() error
}

// NewSyslogSink connects to the syslog server at address: udp://host:port,
// tcp://host:port, unix:///dev/log, or "" for the local syslog daemon.
func NewSyslogSink(address string) (*SyslogSink, error) {
	network, raddr := "", ""
	if address != "" {
		u, err := url.Parse(address)
		if err != nil {
			return nil, fmt.Errorf("audit syslog sink: address %q: %w", address, err)
		}
		switch u.Scheme {
		case "udp", "tcp":
			network, raddr = u.Scheme, u.Host
		case "unix", "unixgram":
			network, raddr = u.Scheme, u.Path
		default:
			return nil, fmt.Errorf("audit syslog sink: address %q: want udp://host:port, tcp://host:port or unix:///path", address)
		}
	}
	w, err := dialSyslog(network, raddr)
	if err != nil {
		return nil, fmt.Errorf("audit syslog sink: %w", err)
	}
	return &SyslogSink{w: w}, nil
}

// WriteEvents implements SinkWriter.
func (s *SyslogSink) WriteEvents(_ context.Context, evs []*Event) error {
	var errs []error
	for _, ev := range evs {
		b, err := Canonical(ev)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := s.w.Info(strings.TrimSpace(string(b))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close implements SinkWriter.
func (s *SyslogSink) Close() error { return s.w.Close() }

// WriteCheckpoint implements CheckpointWriter: one message whose text is
// {"checkpoint": "<signed note>"}.
func (s *SyslogSink) WriteCheckpoint(_ context.Context, cp *Checkpoint) error {
	b, err := json.Marshal(map[string]string{"checkpoint": string(cp.Note)})
	if err != nil {
		return err
	}
	return s.w.Info(string(b))
}
