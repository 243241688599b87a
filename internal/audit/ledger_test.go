package audit_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type env struct {
	db     *sqlite.DB
	ledger *audit.Ledger
	path   string
	now    time.Time
	next   int // index of the next event fill records
}

func newEnv(t *testing.T, cfg audit.LedgerConfig) *env { return newEnvTB(t, cfg) }

func newEnvTB(t testing.TB, cfg audit.LedgerConfig) *env {
	t.Helper()
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	e := &env{db: db, path: path, now: t0}
	if cfg.Store == nil {
		cfg.Store = db
	}
	if cfg.Sealer == nil {
		cfg.Sealer = sealtest.Keyring()
	}
	cfg.Now = func() time.Time { return e.now }
	cfg.CheckpointInterval = -1
	if e.ledger, err = audit.NewLedger(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// event returns the i-th test event: a mix of sources and fields.
func event(i int) audit.Event {
	ev := audit.Event{
		Type:  audit.TypeActionDecided,
		Agent: fmt.Sprintf("spiffe://example.org/agent/a%d", i%3), Task: fmt.Sprintf("tsk_%d", i%4),
		Chain:      []string{"spiffe://example.org/agent/root", fmt.Sprintf("spiffe://example.org/agent/a%d", i%3)},
		OnBehalfOf: "alice@example.com", Action: "file.write", Resource: fmt.Sprintf("file:/repo/f%d.go", i),
		Decision: audit.DecisionAllow, Reasons: []audit.PolicyReason{{Policy: "p-write", Message: "in scope"}},
		Outcome:   &audit.Outcome{Status: "ok", Bytes: int64(i), Duration: time.Duration(i) * time.Millisecond},
		RequestID: fmt.Sprintf("req-%d", i), Point: "mcp",
	}
	switch i % 5 {
	case 1:
		ev.Type, ev.Decision, ev.Outcome = audit.TypeTokenRefused, audit.DecisionDeny, nil
		ev.Reason = "replayed jti"
	case 2:
		ev.Decision, ev.ApprovalID, ev.Outcome = audit.DecisionApprovalRequired, fmt.Sprintf("apr_%d", i), nil
	case 3:
		ev.Type, ev.Details = audit.TypeAgentRegistered, map[string]string{"owner": "bob"}
	}
	return ev
}

// fill records n events, one at a time, a second apart.
func (e *env) fill(t *testing.T, n int) {
	t.Helper()
	for range n {
		i := e.next
		e.next++
		e.now = e.now.Add(time.Second)
		if err := e.ledger.Record(t.Context(), event(i)); err != nil {
			t.Fatalf("Record(%d) = %v", i, err)
		}
	}
}

func (e *env) raw(t *testing.T) *sql.DB {
	t.Helper()
	raw, err := sql.Open("sqlite", "file:"+e.path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { raw.Close() })
	return raw
}

func (e *env) exec(t *testing.T, q string, args ...any) {
	t.Helper()
	if _, err := e.raw(t).Exec(q, args...); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
}

func TestRecordAssignsSeqsAndRoundTrips(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{})
	e.fill(t, 10)
	evs, err := e.ledger.Events(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 10 {
		t.Fatalf("Events() = %d events, want 10", len(evs))
	}
	for i, ev := range evs {
		want := event(i)
		if ev.Seq != int64(i+1) || ev.Type != want.Type || ev.Resource != want.Resource || !ev.Time.Equal(t0.Add(time.Duration(i+1)*time.Second)) {
			t.Errorf("event %d = %+v, want seq %d like %+v", i, ev, i+1, want)
		}
	}
	size, _, err := e.ledger.Head(t.Context())
	if err != nil || size != 10 {
		t.Errorf("Head() size = %d, %v, want 10", size, err)
	}
}

func TestRecordRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{FailOpen: true})
	for name, ev := range map[string]audit.Event{
		"no type":    {},
		"bad args":   {Type: audit.TypeActionDecided, Args: []byte(`{"a":`)},
		"huge args":  {Type: audit.TypeActionDecided, Args: []byte(`"` + strings.Repeat("x", audit.MaxArgsLen) + `"`)},
		"huge event": {Type: audit.TypeActionDecided, Details: hugeDetails()},
		"long chain": {Type: audit.TypeActionDecided, Chain: make([]string, audit.MaxChainLen+1)},
		"many details": {Type: audit.TypeActionDecided, Details: func() map[string]string {
			d := map[string]string{}
			for i := range audit.MaxDetails + 1 {
				d[strconv.Itoa(i)] = "v"
			}
			return d
		}()},
	} {
		if err := e.ledger.Record(t.Context(), ev); !errors.Is(err, audit.ErrInvalid) {
			t.Errorf("Record(%s) = %v, want ErrInvalid even when failing open", name, err)
		}
	}
}

// hugeDetails are details within every field limit whose encoding is
// over MaxEventSize: control characters are written as six bytes each.
func hugeDetails() map[string]string {
	d := map[string]string{}
	for i := range audit.MaxDetails {
		d[strconv.Itoa(i)] = strings.Repeat("\x00", audit.MaxDetailValueLen)
	}
	return d
}

func TestGroupCommitConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{MaxBatch: 7})
	const writers, each = 32, 20
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				ev := event(i)
				ev.RequestID = fmt.Sprintf("w%d-%d", w, i)
				if err := e.ledger.Record(t.Context(), ev); err != nil {
					t.Errorf("Record() = %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	evs, err := e.ledger.Events(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != writers*each {
		t.Fatalf("Events() = %d, want %d", len(evs), writers*each)
	}
	seen := map[string]bool{}
	for i, ev := range evs {
		if ev.Seq != int64(i+1) || seen[ev.RequestID] {
			t.Fatalf("event %d: seq %d request %s (duplicate %v)", i, ev.Seq, ev.RequestID, seen[ev.RequestID])
		}
		seen[ev.RequestID] = true
	}
	rep, err := e.ledger.Verify(t.Context())
	if err != nil || !rep.OK() {
		t.Fatalf("Verify() after concurrent appends = %+v, %v", rep, err)
	}
}

func TestCheckpointFormat(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{Origin: "example.org/audit"})
	if _, err := e.ledger.Checkpoint(t.Context()); !errors.Is(err, audit.ErrNotFound) {
		t.Errorf("Checkpoint() of an empty ledger = %v, want ErrNotFound", err)
	}
	e.fill(t, 5)
	cp, err := e.ledger.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// C2SP tlog-checkpoint: origin, size, base64 root, then the signature.
	v, err := note.NewVerifier(e.ledger.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cp.Note, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open(checkpoint) = %v", err)
	}
	_, root, _ := e.ledger.Head(t.Context())
	if want := "example.org/audit\n5\n" + root.String() + "\n"; n.Text != want {
		t.Errorf("checkpoint text = %q, want %q", n.Text, want)
	}
	if !strings.HasPrefix(e.ledger.VerifierKey(), "example.org/audit+") {
		t.Errorf("VerifierKey() = %q, want the origin as the key name", e.ledger.VerifierKey())
	}
	// The same tree gives the same checkpoint; a grown tree a new one.
	again, _ := e.ledger.Checkpoint(t.Context())
	if !bytes.Equal(again.Note, cp.Note) {
		t.Error("Checkpoint() of an unchanged tree signed a new checkpoint")
	}
	e.fill(t, 1)
	if next, _ := e.ledger.Checkpoint(t.Context()); next.Size != 6 {
		t.Errorf("Checkpoint() after growth has size %d, want 6", next.Size)
	}
	// The key and the HMAC key survive a restart.
	l2, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: e.db, Sealer: sealtest.Keyring(), Origin: "ignored"})
	if err != nil {
		t.Fatal(err)
	}
	if l2.VerifierKey() != e.ledger.VerifierKey() {
		t.Errorf("after reopening, VerifierKey() = %q, want %q", l2.VerifierKey(), e.ledger.VerifierKey())
	}
	if a, b := l2.Redactor().HMAC([]byte("x")), e.ledger.Redactor().HMAC([]byte("x")); a != b {
		t.Errorf("after reopening, HMAC(x) = %s, want %s", a, b)
	}
	if err := l2.Record(t.Context(), event(0)); err != nil {
		t.Fatalf("Record() after reopening = %v", err)
	}
	if rep, err := l2.Verify(t.Context()); err != nil || !rep.OK() {
		t.Errorf("Verify() after reopening = %+v, %v", rep, err)
	}
}

func TestProofs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{})
	var cps []*audit.Checkpoint
	for _, n := range []int{1, 2, 5, 8, 13} {
		size, _, _ := e.ledger.Head(t.Context())
		e.fill(t, n-int(size))
		cp, err := e.ledger.Checkpoint(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		cps = append(cps, cp)
	}
	// Inclusion of every event in every checkpoint that contains it,
	// checked with tlog.CheckRecord.
	for _, cp := range cps {
		for seq := int64(1); seq <= cp.Size; seq++ {
			p, err := e.ledger.ProveInclusion(t.Context(), seq, cp.Size)
			if err != nil {
				t.Fatalf("ProveInclusion(%d, %d) = %v", seq, cp.Size, err)
			}
			if tlog.RecordHash(p.Event) != p.LeafHash {
				t.Errorf("proof of %d: event does not hash to the leaf", seq)
			}
			if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, seq-1, p.LeafHash); err != nil {
				t.Errorf("CheckRecord(seq %d, size %d) = %v", seq, cp.Size, err)
			}
			// A proof for the wrong leaf fails.
			if err := tlog.CheckRecord(p.Proof, cp.Size, cp.Root, seq-1, tlog.RecordHash([]byte("forged"))); err == nil {
				t.Errorf("CheckRecord(forged leaf %d) = nil", seq)
			}
		}
	}
	// Consistency between every pair, checked with tlog.CheckTree.
	for i, o := range cps {
		for _, n := range cps[i+1:] {
			p, err := e.ledger.ProveConsistency(t.Context(), o.Size, n.Size)
			if err != nil {
				t.Fatalf("ProveConsistency(%d, %d) = %v", o.Size, n.Size, err)
			}
			if err := tlog.CheckTree(p.Proof, n.Size, n.Root, o.Size, o.Root); err != nil {
				t.Errorf("CheckTree(%d → %d) = %v", o.Size, n.Size, err)
			}
			if err := tlog.CheckTree(p.Proof, n.Size, n.Root, o.Size, tlog.RecordHash([]byte("other"))); err == nil {
				t.Errorf("CheckTree(%d → %d) with a forged old root = nil", o.Size, n.Size)
			}
		}
	}
	// The latest checkpoint is the default.
	p, err := e.ledger.ProveInclusion(t.Context(), 3, 0)
	if err != nil || p.TreeSize != 13 || p.Checkpoint == "" {
		t.Errorf("ProveInclusion(3, latest) = %+v, %v, want a proof against checkpoint 13", p, err)
	}
	for _, bad := range [][2]int64{{0, 13}, {14, 13}, {3, 99}} {
		if _, err := e.ledger.ProveInclusion(t.Context(), bad[0], bad[1]); !errors.Is(err, audit.ErrInvalid) {
			t.Errorf("ProveInclusion(%d, %d) = %v, want ErrInvalid", bad[0], bad[1], err)
		}
	}
	if _, err := e.ledger.ProveConsistency(t.Context(), 9, 5); !errors.Is(err, audit.ErrInvalid) {
		t.Errorf("ProveConsistency(9, 5) = %v, want ErrInvalid", err)
	}
}

func TestRetentionKeepsProofs(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{})
	e.fill(t, 20)
	early, err := e.ledger.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Prune the events of the first 9 seconds (seqs 1-8).
	n, through, err := e.ledger.Prune(t.Context(), t0.Add(9*time.Second))
	if err != nil || n != 8 || through != 8 {
		t.Fatalf("Prune() = %d, %d, %v, want 8 through 8", n, through, err)
	}
	e.fill(t, 5)
	late, err := e.ledger.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	rep, err := e.ledger.Verify(t.Context())
	if err != nil || !rep.OK() || rep.PrunedThrough != 8 || rep.Events != 17 {
		t.Fatalf("Verify() after pruning = %+v, %v, want OK with 17 events after 8", rep, err)
	}
	// A pruned event is still provably in the tree (by its leaf hash).
	p, err := e.ledger.ProveInclusion(t.Context(), 3, late.Size)
	if err != nil {
		t.Fatal(err)
	}
	if p.Event != nil {
		t.Error("proof of a pruned event carries the event")
	}
	if err := p.Check(late.Root); err != nil {
		t.Errorf("inclusion of pruned event 3 = %v", err)
	}
	cp, err := e.ledger.ProveConsistency(t.Context(), early.Size, late.Size)
	if err != nil {
		t.Fatal(err)
	}
	if err := cp.Check(early.Root, late.Root); err != nil {
		t.Errorf("consistency across pruning = %v", err)
	}
	// The export starts with the prefix and verifies offline.
	var buf bytes.Buffer
	if _, err := e.ledger.Export(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte(`{"ledger_prefix":{"size":8,`)) {
		t.Errorf("export after pruning starts %q, want a ledger_prefix line", buf.String()[:40])
	}
	rep, err = audit.VerifyExport(&buf, [][]byte{late.Note, early.Note}, e.ledger.VerifierKey())
	if err != nil || !rep.OK() {
		t.Fatalf("VerifyExport() after pruning = %+v, %v", rep, err)
	}
}

// failingStore fails every append once armed: a narrow failing Store for
// fail-closed tests.
type failingStore struct {
	audit.Store
	mu   sync.Mutex
	fail bool
}

func (s *failingStore) AppendLedger(ctx context.Context, b *audit.Batch) error {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return errors.New("disk on fire")
	}
	return s.Store.AppendLedger(ctx, b)
}

func TestFailClosedAndFailOpen(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprint("fail_open=", failOpen), func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "m.db")
			db, err := sqlite.Open(t.Context(), path)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			fs := &failingStore{Store: db}
			var logs bytes.Buffer
			l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: fs, Sealer: sealtest.Keyring(), FailOpen: failOpen, Logger: newLogger(&logs)})
			if err != nil {
				t.Fatal(err)
			}
			if failOpen && !strings.Contains(logs.String(), "AUDIT FAIL-OPEN is configured") {
				t.Errorf("no warning at start when failing open; logs:\n%s", logs.String())
			}
			if err := l.Record(t.Context(), event(0)); err != nil {
				t.Fatal(err)
			}
			fs.mu.Lock()
			fs.fail = true
			fs.mu.Unlock()
			err = l.Record(t.Context(), event(1))
			switch {
			case failOpen && err != nil:
				t.Errorf("Record() failing open = %v, want nil", err)
			case failOpen && !strings.Contains(logs.String(), "AUDIT FAIL-OPEN: event NOT recorded"):
				t.Errorf("no error log for the unrecorded event; logs:\n%s", logs.String())
			case !failOpen && !errors.Is(err, audit.ErrUnavailable):
				t.Errorf("Record() failing closed = %v, want ErrUnavailable", err)
			}
			// Recovery: the ledger reloads its state and goes on.
			fs.mu.Lock()
			fs.fail = false
			fs.mu.Unlock()
			if err := l.Record(t.Context(), event(2)); err != nil {
				t.Fatalf("Record() after recovery = %v", err)
			}
			if rep, err := l.Verify(t.Context()); err != nil || !rep.OK() || rep.TreeSize != 2 {
				t.Errorf("Verify() after recovery = %+v, %v, want OK with 2 events", rep, err)
			}
		})
	}
	t.Run("closed database", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, audit.LedgerConfig{})
		e.fill(t, 1)
		e.db.Close()
		if err := e.ledger.Record(t.Context(), event(1)); !errors.Is(err, audit.ErrUnavailable) {
			t.Errorf("Record() on a closed database = %v, want ErrUnavailable", err)
		}
	})
}

// otherSigner returns a note signer for name with a fresh key.
func otherSigner(t *testing.T, name string) note.Signer {
	t.Helper()
	skey, _, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPruneKeepsNewerEventsWhenTimesAreOutOfOrder(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{})
	for _, d := range []time.Duration{1, 10, 2} { // seconds after t0, in seq order
		ev := event(0)
		ev.Time = t0.Add(d * time.Second)
		if err := e.ledger.Record(t.Context(), ev); err != nil {
			t.Fatal(err)
		}
	}
	n, through, err := e.ledger.Prune(t.Context(), t0.Add(5*time.Second))
	if err != nil || n != 1 || through != 1 {
		t.Errorf("Prune(t0+5s) = %d, %d, %v; want only seq 1 (seq 2 is newer than the cutoff)", n, through, err)
	}
	if n, _, err := e.ledger.Prune(t.Context(), t0.Add(5*time.Second)); err != nil || n != 0 {
		t.Errorf("Prune() again = %d, %v; want nothing more", n, err)
	}
	if rep, err := e.ledger.Verify(t.Context()); err != nil || !rep.OK() || rep.PrunedThrough != 1 {
		t.Errorf("Verify() = %+v, %v", rep, err)
	}
}

// TestTwoWritersOnOneStore: two ledgers (as two replicas would) append to
// one store; a batch that loses the race is rebuilt after the winner's.
func TestTwoWritersOnOneStore(t *testing.T) {
	t.Parallel()
	e := newEnv(t, audit.LedgerConfig{})
	other, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: e.db, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, l := range []*audit.Ledger{e.ledger, other} {
		for range 4 {
			wg.Go(func() {
				for i := range 25 {
					if err := l.Record(t.Context(), event(i)); err != nil {
						t.Errorf("Record() = %v", err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	for _, l := range []*audit.Ledger{e.ledger, other} {
		rep, err := l.Verify(t.Context())
		if err != nil || !rep.OK() || rep.TreeSize != 200 {
			t.Errorf("Verify() = %+v, %v; want OK with 200 events", rep, err)
		}
	}
}

// TestUnhurried: an event recorded under Unhurried rides along with the
// next commit another event starts, and is committed on its own once the
// wait is over; either way Record returns only once it is durable.
func TestUnhurried(t *testing.T) {
	t.Parallel()
	t.Run("rides along", func(t *testing.T) {
		e := newEnv(t, audit.LedgerConfig{UnhurriedWait: time.Minute})
		done := make(chan error, 1)
		go func() { done <- e.ledger.Record(audit.Unhurried(t.Context()), event(0)) }()
		select {
		case err := <-done:
			t.Fatalf("unhurried Record returned before any commit: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if err := e.ledger.Record(t.Context(), event(1)); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the unhurried event did not ride along with the next commit")
		}
		if evs, err := e.ledger.Events(t.Context(), audit.Query{}); err != nil || len(evs) != 2 {
			t.Fatalf("Events() = %d events, %v; want 2", len(evs), err)
		}
	})
	t.Run("commits alone after the wait", func(t *testing.T) {
		e := newEnv(t, audit.LedgerConfig{UnhurriedWait: 20 * time.Millisecond})
		if err := e.ledger.Record(audit.Unhurried(t.Context()), event(0)); err != nil {
			t.Fatal(err)
		}
		if evs, err := e.ledger.Events(t.Context(), audit.Query{}); err != nil || len(evs) != 1 {
			t.Fatalf("Events() = %d events, %v; want 1", len(evs), err)
		}
	})
}
