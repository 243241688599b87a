package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mandatehq/mandate/internal/audit"
)

// blockingSink blocks every write until released, to fill its buffer.
type blockingSink struct {
	release chan struct{}
	mu      sync.Mutex
	got     int
}

func (s *blockingSink) WriteEvents(ctx context.Context, evs []*audit.Event) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.mu.Lock()
	s.got += len(evs)
	s.mu.Unlock()
	return nil
}

func (s *blockingSink) Close() error { return nil }

func TestSinkDropsInsteadOfBlocking(t *testing.T) {
	t.Parallel()
	bs := &blockingSink{release: make(chan struct{})}
	var logs bytes.Buffer
	var logMu sync.Mutex
	e := newEnv(t, audit.LedgerConfig{Sinks: []audit.SinkConfig{{Name: "slow", Writer: bs, Buffer: 4}}, Logger: newLogger(lockedWriter{&logs, &logMu})})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.ledger.Run(ctx) }()
	// The sink takes one event and blocks; four more fill its buffer; the
	// rest are dropped, and Record never waits for the sink.
	start := time.Now()
	e.fill(t, 20)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("recording 20 events with a blocked sink took %s", d)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(e.ledger.Collectors()...)
	dropped := testutil.ToFloat64(mustCollector(t, reg, "mandate_audit_sink_dropped_total"))
	// The sink holds at most its buffer plus the batch it took before
	// blocking; everything else is dropped.
	if dropped < 1 {
		t.Errorf("mandate_audit_sink_dropped_total = %v, want drops (20 events, buffer 4)", dropped)
	}
	logMu.Lock()
	if !strings.Contains(logs.String(), "audit sink dropped events") {
		t.Errorf("no log about dropped events:\n%s", logs.String())
	}
	logMu.Unlock()
	close(bs.release)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if bs.got+int(dropped) != 20 {
		t.Errorf("sink got %d events and dropped %v, want 20 in all", bs.got, dropped)
	}
	// The ledger has every event regardless.
	if evs, _ := e.ledger.Events(t.Context(), audit.Query{}); len(evs) != 20 {
		t.Errorf("ledger has %d events, want 20", len(evs))
	}
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func mustCollector(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			var sum float64
			for _, m := range mf.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
			c := prometheus.NewCounter(prometheus.CounterOpts{Name: name})
			c.Add(sum)
			return c
		}
	}
	return prometheus.NewCounter(prometheus.CounterOpts{Name: name})
}

func TestFileSinkRotates(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.jsonl")
	fs, err := audit.NewFileSink(path, 1000, 2)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, audit.LedgerConfig{Sinks: []audit.SinkConfig{{Name: "file", Writer: fs}}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.ledger.Run(ctx) }()
	e.fill(t, 30)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var lines int
	for _, name := range []string{"audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"} {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		st, _ := f.Stat()
		if st.Size() > 1000 {
			t.Errorf("%s is %d bytes, over the 1000-byte limit", name, st.Size())
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", name, st.Mode().Perm())
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if _, err := audit.ParseEvent(sc.Bytes()); err != nil {
				t.Errorf("%s: line %q: %v", name, sc.Text(), err)
			}
			lines++
		}
		f.Close()
	}
	if _, err := os.Stat(filepath.Join(dir, "audit.jsonl.3")); err == nil {
		t.Error("the file sink kept more than 2 backups")
	}
	if lines == 0 || lines >= 30 {
		t.Errorf("the kept files hold %d events, want some but not all 30 (older files rotated away)", lines)
	}
}

func TestWebhookSink(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var bodies []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		if r.Header.Get("Content-Type") != "application/x-ndjson" || r.Header.Get("Authorization") != "Bearer s" {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		bodies = append(bodies, string(b))
	}))
	defer ts.Close()
	ws, err := audit.NewWebhookSink(ts.URL, http.Header{"Authorization": {"Bearer s"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, audit.LedgerConfig{Sinks: []audit.SinkConfig{{Name: "webhook", Writer: ws}}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.ledger.Run(ctx) }()
	e.fill(t, 5)
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if n := strings.Count(strings.Join(bodies, ""), "\n"); n != 5 {
		t.Errorf("webhook received %d events, want 5: %q", n, bodies)
	}
	if _, err := audit.NewWebhookSink("ftp://x", nil, nil); err == nil {
		t.Error("NewWebhookSink(ftp://x) = nil error")
	}
	if _, err := audit.NewSyslogSink("smtp://x"); err == nil {
		t.Error("NewSyslogSink(smtp://x) = nil error")
	}
}

func TestSyslogSink(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ss, err := audit.NewSyslogSink("udp://" + pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	ev := event(1)
	ev.Seq, ev.Time = 1, t0
	if err := ss.WriteEvents(t.Context(), []*audit.Event{&ev}); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64<<10)
	_ = pc.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, _, err := pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	msg := string(buf[:n])
	// <86>: facility authpriv (10) * 8 + severity info (6).
	if !strings.HasPrefix(msg, "<86>") || !strings.Contains(msg, "mandate-audit") || !strings.Contains(msg, `"type":"token.refused"`) {
		t.Errorf("syslog message = %q, want priority <86>, tag mandate-audit and the event", msg)
	}
	if err := ss.WriteCheckpoint(t.Context(), &audit.Checkpoint{Size: 1, Note: []byte("o\n1\nAAAA\n\n— o sig\n")}); err != nil {
		t.Fatal(err)
	}
	n, _, err = pc.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if msg := string(buf[:n]); !strings.Contains(msg, `{"checkpoint":"o\n1\nAAAA\n\n— o sig\n"}`) {
		t.Errorf("syslog checkpoint message = %q", msg)
	}
}

func TestSinksReceiveCheckpoints(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var notes []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if strings.HasPrefix(r.Header.Get("Content-Type"), "text/plain") {
			mu.Lock()
			notes = append(notes, r.Header.Get("Mandate-Checkpoint-Size")+"|"+string(b))
			mu.Unlock()
		}
	}))
	defer ts.Close()
	ws, err := audit.NewWebhookSink(ts.URL, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	fs, err := audit.NewFileSink(path, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, audit.LedgerConfig{Sinks: []audit.SinkConfig{{Name: "file", Writer: fs}, {Name: "webhook", Writer: ws}}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- e.ledger.Run(ctx) }()
	e.fill(t, 3)
	if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.fill(t, 2)
	cancel() // Run signs a final checkpoint (size 5) and drains the sinks
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for _, size := range []int64{3, 5} {
		b, err := os.ReadFile(filepath.Join(path+".checkpoints", fmt.Sprintf("checkpoint-%d.txt", size)))
		if err != nil {
			t.Errorf("file sink checkpoint %d: %v", size, err)
			continue
		}
		if cp, err := audit.ParseCheckpoint(b, e.ledger.VerifierKey()); err != nil || cp.Size != size {
			t.Errorf("file sink checkpoint %d = %+v, %v", size, cp, err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(notes) != 2 || !strings.HasPrefix(notes[0], "3|"+e.ledger.Origin()+"\n3\n") || !strings.HasPrefix(notes[1], "5|") {
		t.Errorf("webhook received checkpoints %q, want sizes 3 and 5", notes)
	}
}

// closeCountingSink counts Close calls.
type closeCountingSink struct{ closed atomic.Int32 }

func (s *closeCountingSink) WriteEvents(context.Context, []*audit.Event) error { return nil }
func (s *closeCountingSink) Close() error                                      { s.closed.Add(1); return nil }

// TestCloseWithoutRun: a ledger that is never run releases its sinks on
// Close, once; it cannot be run after.
func TestCloseWithoutRun(t *testing.T) {
	t.Parallel()
	w := &closeCountingSink{}
	e := newEnv(t, audit.LedgerConfig{Sinks: []audit.SinkConfig{{Name: "count", Writer: w}}})
	if err := e.ledger.Close(); err != nil {
		t.Fatal(err)
	}
	if err := e.ledger.Close(); err != nil || w.closed.Load() != 1 {
		t.Fatalf("after two Closes: %v, writer closed %d times, want once", err, w.closed.Load())
	}
	if err := e.ledger.Run(t.Context()); err == nil {
		t.Fatal("Run after Close succeeded")
	}
	e.fill(t, 1) // recording still works
}
