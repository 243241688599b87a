package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/store"
)

// seqs returns the sequence numbers of evs.
func seqs(evs []*audit.Event) []int64 {
	var s []int64
	for _, ev := range evs {
		s = append(s, ev.Seq)
	}
	return s
}

// ledger builds valid audit.Batches the way audit.Ledger does, keeping
// every stored hash in memory so that tests can check what the store
// returns.
type ledger struct {
	size   int64
	hashes []tlog.Hash // by stored-hash index
}

func (l *ledger) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		if x >= int64(len(l.hashes)) {
			return nil, fmt.Errorf("hash %d not yet stored", x)
		}
		out[i] = l.hashes[x]
	}
	return out, nil
}

// batch assigns evs the next seqs and returns the batch appending them.
// Call commit after the store accepted it.
func (l *ledger) batch(t *testing.T, evs []*audit.Event) *audit.Batch {
	t.Helper()
	b := &audit.Batch{HashStart: tlog.StoredHashCount(l.size), Size: l.size + int64(len(evs))}
	tmp := &ledger{size: l.size, hashes: append([]tlog.Hash(nil), l.hashes...)}
	for _, ev := range evs {
		if err := audit.Normalize(ev, t0); err != nil {
			t.Fatal(err)
		}
		ev.Seq = tmp.size + 1
		data, err := audit.Canonical(ev)
		if err != nil {
			t.Fatal(err)
		}
		hs, err := tlog.StoredHashes(tmp.size, data, tmp)
		if err != nil {
			t.Fatal(err)
		}
		tmp.hashes = append(tmp.hashes, hs...)
		tmp.size++
		b.Hashes = append(b.Hashes, hs...)
		b.Records = append(b.Records, audit.Record{Seq: ev.Seq, Time: ev.Time, Type: ev.Type, Agent: ev.Agent,
			Task: ev.Task, Decision: ev.Decision, Data: data})
	}
	return b
}

func (l *ledger) commit(b *audit.Batch) {
	l.hashes = append(l.hashes, b.Hashes...)
	l.size = b.Size
}

// appendAll appends each batch of events, failing the test on error.
func (l *ledger) appendAll(t *testing.T, s store.Backend, batches ...[]*audit.Event) []*audit.Event {
	t.Helper()
	var all []*audit.Event
	for i, evs := range batches {
		evs = cloneEvents(evs)
		if len(evs) == 0 {
			continue
		}
		b := l.batch(t, evs)
		if err := s.AppendLedger(t.Context(), b); err != nil {
			t.Fatalf("AppendLedger(batch %d) = %v", i, err)
		}
		l.commit(b)
		all = append(all, evs...)
	}
	return all
}

func testEvents(t *testing.T, open OpenFunc) {
	const (
		agentA = "spiffe://example.org/agent/a"
		agentB = "spiffe://example.org/agent/b"
	)
	full := &audit.Event{
		Time:       at(time.Second).In(time.FixedZone("IST", 5*3600+1800)),
		Type:       audit.TypeActionDecided,
		Actor:      agentA,
		Agent:      agentB,
		Chain:      []string{agentA, agentB},
		OnBehalfOf: "user:alice",
		Task:       "tsk_1",
		Action:     "tool.call",
		Resource:   "tool:github/create_issue",
		Decision:   audit.DecisionAllow,
		Reason:     "delegated",
		Reasons:    []audit.PolicyReason{{Policy: "p1", Message: "owner may"}},
		ApprovalID: "apr_1",
		Outcome:    &audit.Outcome{Status: "ok", Bytes: 42, Duration: 3 * time.Millisecond},
		ArgsDigest: "hmac-sha256:00",
		Args:       []byte(`{"b": 1, "a": "x"}`),
		Details:    map[string]string{"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "jti": "j1"},
		RequestID:  "req-1",
		Point:      "mcp",
	}
	// The log: six events in three batches.
	batches := [][]*audit.Event{
		{
			{Time: t0, Type: audit.TypeAgentRegistered, Actor: "admin:local", Agent: agentA},
			full,
			{Time: at(2 * time.Second), Type: audit.TypeTaskStarted, Agent: agentA, Task: "tsk_1"},
		},
		{{Time: at(3 * time.Second), Type: audit.TypeTokenRefused, Agent: agentB, Decision: audit.DecisionDeny, Reason: "replayed jti"}},
		{
			{Time: at(4 * time.Second), Type: audit.TypeTaskRevoked, Actor: "admin:local", Agent: agentA, Task: "tsk_1"},
			{Time: at(4 * time.Second), Type: audit.TypeTokenIssued, Agent: agentA, Task: "tsk_2"},
		},
	}

	t.Run("AppendList", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		all := l.appendAll(t, s, batches...)
		got, err := s.ListEvents(t.Context(), audit.Query{})
		if err != nil {
			t.Fatalf("ListEvents() = %v", err)
		}
		if diff := cmp.Diff(all, got, cmpOpts); diff != "" {
			t.Errorf("ListEvents() mismatch (-want +got):\n%s", diff)
		}
		for _, ev := range got {
			checkUTC(t, "ListEvents", ev.Time)
		}
		st, err := s.LedgerState(t.Context())
		if err != nil || st != (audit.State{Size: 6}) {
			t.Errorf("LedgerState() = %+v, %v, want size 6", st, err)
		}
		recs, err := s.ScanRecords(t.Context(), 0, 100)
		if err != nil {
			t.Fatalf("ScanRecords() = %v", err)
		}
		if len(recs) != len(all) {
			t.Fatalf("ScanRecords() returned %d records, want %d", len(recs), len(all))
		}
		for i, r := range recs {
			want, _ := audit.Canonical(all[i])
			if r.Seq != int64(i+1) || !bytes.Equal(r.Data, want) || r.Type != all[i].Type || r.Agent != all[i].Agent ||
				r.Task != all[i].Task || r.Decision != all[i].Decision || !r.Time.Equal(all[i].Time) {
				t.Errorf("ScanRecords()[%d] = %+v, want the stored form of %+v", i, r, all[i])
			}
		}
		if recs, err := s.ScanRecords(t.Context(), 4, 1); err != nil || len(recs) != 1 || recs[0].Seq != 5 {
			t.Errorf("ScanRecords(after 4, limit 1) = %v, %v, want seq 5", recs, err)
		}
	})

	t.Run("BatchSizes", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		// Batches of 1 to 70 events and one of 300, so that a backend
		// splitting batches into statements is tested on every split.
		var sizes []int
		for n := range 70 {
			sizes = append(sizes, n+1)
		}
		var all []*audit.Event
		for n, size := range append(sizes, 300) {
			evs := make([]*audit.Event, size)
			for i := range evs {
				evs[i] = &audit.Event{Time: at(time.Duration(n) * time.Second), Type: audit.TypeActionDecided,
					Agent: agentA, Task: fmt.Sprintf("tsk_%d", n), RequestID: fmt.Sprint(i)}
			}
			all = append(all, l.appendAll(t, s, evs)...)
		}
		recs, err := s.ScanRecords(t.Context(), 0, len(all)+1)
		if err != nil {
			t.Fatalf("ScanRecords() = %v", err)
		}
		if len(recs) != len(all) {
			t.Fatalf("ScanRecords() returned %d records, want %d", len(recs), len(all))
		}
		for i, r := range recs {
			want, _ := audit.Canonical(all[i])
			if r.Seq != int64(i+1) || !bytes.Equal(r.Data, want) || r.Task != all[i].Task || !r.Time.Equal(all[i].Time) {
				t.Fatalf("ScanRecords()[%d] = %+v, want the stored form of %+v", i, r, all[i])
			}
		}
		got, err := s.ReadHashes(t.Context(), 0, int64(len(l.hashes)))
		if err != nil {
			t.Fatalf("ReadHashes(all) = %v", err)
		}
		if !slices.Equal(got, l.hashes) {
			t.Errorf("ReadHashes(all) differs from the hashes appended")
		}
		if st, err := s.LedgerState(t.Context()); err != nil || st.Size != int64(len(all)) {
			t.Errorf("LedgerState() = %+v, %v, want size %d", st, err, len(all))
		}
	})

	t.Run("Hashes", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		l.appendAll(t, s, batches...)
		n := int64(len(l.hashes))
		for start := int64(0); start <= n; start++ {
			for end := start; end <= n; end++ {
				got, err := s.ReadHashes(t.Context(), start, end)
				if err != nil {
					t.Fatalf("ReadHashes(%d, %d) = %v", start, end, err)
				}
				if diff := cmp.Diff(l.hashes[start:end], got, cmp.Comparer(func(a, b tlog.Hash) bool { return a == b })); end > start && diff != "" {
					t.Errorf("ReadHashes(%d, %d) mismatch (-want +got):\n%s", start, end, diff)
				}
			}
		}
		if _, err := s.ReadHashes(t.Context(), n-1, n+1); !errors.Is(err, audit.ErrNotFound) {
			t.Errorf("ReadHashes past the end = %v, want ErrNotFound", err)
		}
	})

	t.Run("Conflict", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		l.appendAll(t, s, batches[0])
		// A batch built from a stale view (size 0) must be refused whole.
		var stale ledger
		b := stale.batch(t, cloneEvents(batches[1]))
		if err := s.AppendLedger(t.Context(), b); !errors.Is(err, audit.ErrConflict) {
			t.Errorf("AppendLedger(stale batch) = %v, want ErrConflict", err)
		}
		if st, _ := s.LedgerState(t.Context()); st.Size != 3 {
			t.Errorf("after a refused batch, size = %d, want 3", st.Size)
		}
		// A batch that skips ahead is refused too.
		ahead := &ledger{size: 5, hashes: make([]tlog.Hash, tlog.StoredHashCount(5))}
		if err := s.AppendLedger(t.Context(), ahead.batch(t, cloneEvents(batches[1]))); !errors.Is(err, audit.ErrConflict) {
			t.Errorf("AppendLedger(batch after a gap) = %v, want ErrConflict", err)
		}
		l.appendAll(t, s, batches[1])
	})

	t.Run("Canceled", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		l.appendAll(t, s, batches[0])
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		if err := s.AppendLedger(ctx, l.batch(t, cloneEvents(batches[1]))); !errors.Is(err, context.Canceled) {
			t.Errorf("AppendLedger(canceled context) = %v, want context.Canceled", err)
		}
		if st, _ := s.LedgerState(t.Context()); st.Size != 3 {
			t.Errorf("after a canceled append, size = %d, want 3", st.Size)
		}
		l.appendAll(t, s, batches[1])
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		l.appendAll(t, s, batches[0])
		// Eight writers race to append at the same size: exactly one wins.
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for g := range errs {
			b := l.batch(t, []*audit.Event{{Time: t0, Type: audit.TypeTokenIssued, RequestID: fmt.Sprint(g)}})
			wg.Go(func() { errs[g] = s.AppendLedger(t.Context(), b) })
		}
		wg.Wait()
		wins := 0
		for _, err := range errs {
			switch {
			case err == nil:
				wins++
			case !errors.Is(err, audit.ErrConflict):
				t.Errorf("AppendLedger() = %v, want nil or ErrConflict", err)
			}
		}
		if wins != 1 {
			t.Errorf("%d concurrent appends at the same size succeeded, want 1", wins)
		}
	})

	t.Run("Filters", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		all := l.appendAll(t, s, batches...)
		pick := func(idx ...int) []int64 {
			var out []int64
			for _, i := range idx {
				out = append(out, all[i].Seq)
			}
			return out
		}
		for _, tc := range []struct {
			name  string
			query audit.Query
			want  []int64
		}{
			{"all", audit.Query{}, pick(0, 1, 2, 3, 4, 5)},
			{"type", audit.Query{Type: audit.TypeTokenIssued}, pick(5)},
			{"agent", audit.Query{Agent: agentB}, pick(1, 3)},
			{"task", audit.Query{Task: "tsk_1"}, pick(1, 2, 4)},
			{"decision", audit.Query{Decision: audit.DecisionDeny}, pick(3)},
			{"after seq", audit.Query{AfterSeq: all[2].Seq}, pick(3, 4, 5)},
			{"after the last seq", audit.Query{AfterSeq: all[5].Seq}, nil},
			{"since is inclusive", audit.Query{Since: at(2 * time.Second)}, pick(2, 3, 4, 5)},
			{"until is exclusive", audit.Query{Until: at(2 * time.Second)}, pick(0, 1)},
			{"since and until", audit.Query{Since: at(time.Second), Until: at(4 * time.Second)}, pick(1, 2, 3)},
			{"limit", audit.Query{Limit: 2}, pick(0, 1)},
			{"last", audit.Query{Limit: 2, Last: true}, pick(4, 5)},
			{"last with a filter", audit.Query{Agent: agentA, Limit: 2, Last: true}, pick(4, 5)},
			{"page after seq with limit", audit.Query{AfterSeq: all[1].Seq, Limit: 2}, pick(2, 3)},
			{"agent and type", audit.Query{Agent: agentA, Type: audit.TypeTokenIssued}, pick(5)},
			{"no match", audit.Query{Type: audit.TypeSigningKeyRotated}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got, err := s.ListEvents(t.Context(), tc.query)
				if err != nil {
					t.Fatalf("ListEvents(%+v) = %v", tc.query, err)
				}
				if diff := cmp.Diff(tc.want, seqs(got)); diff != "" {
					t.Errorf("ListEvents(%+v) seqs mismatch (-want +got):\n%s", tc.query, diff)
				}
			})
		}
	})

	t.Run("Checkpoints", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if cps, err := s.Checkpoints(t.Context(), 0); err != nil || len(cps) != 0 {
			t.Errorf("Checkpoints() on an empty store = %v, %v, want none", cps, err)
		}
		for _, c := range []audit.StoredCheckpoint{
			{Size: 3, Time: at(time.Second), Note: []byte("three")},
			{Size: 1, Time: t0, Note: []byte("one")},
			{Size: 6, Time: at(2 * time.Second), Note: []byte("six")},
			{Size: 3, Time: at(time.Hour), Note: []byte("another three")},
		} {
			if err := s.AddCheckpoint(t.Context(), c); err != nil {
				t.Fatalf("AddCheckpoint(%d) = %v", c.Size, err)
			}
		}
		got, err := s.Checkpoints(t.Context(), 0)
		if err != nil {
			t.Fatal(err)
		}
		want := []audit.StoredCheckpoint{
			{Size: 1, Time: t0, Note: []byte("one")},
			{Size: 3, Time: at(time.Second), Note: []byte("three")},
			{Size: 6, Time: at(2 * time.Second), Note: []byte("six")},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("Checkpoints() mismatch (-want +got):\n%s", diff)
		}
		if got, _ := s.Checkpoints(t.Context(), 2); cmp.Diff(want[1:], got) != "" {
			t.Errorf("Checkpoints(2) = %v, want the latest two", got)
		}
	})

	t.Run("Prune", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var l ledger
		all := l.appendAll(t, s, batches...)
		n, err := s.PruneEvents(t.Context(), 4)
		if err != nil || n != 4 {
			t.Fatalf("PruneEvents(4) = %d, %v, want 4", n, err)
		}
		got, _ := s.ListEvents(t.Context(), audit.Query{})
		if diff := cmp.Diff(pickSeqs(all, 4, 5), seqs(got)); diff != "" {
			t.Errorf("after pruning, ListEvents() seqs (-want +got):\n%s", diff)
		}
		if st, _ := s.LedgerState(t.Context()); st != (audit.State{Size: 6, PrunedThrough: 4}) {
			t.Errorf("after pruning, LedgerState() = %+v, want size 6 pruned through 4", st)
		}
		// The tree hashes stay.
		if hs, err := s.ReadHashes(t.Context(), 0, int64(len(l.hashes))); err != nil || len(hs) != len(l.hashes) {
			t.Errorf("after pruning, ReadHashes(all) = %d hashes, %v, want %d", len(hs), err, len(l.hashes))
		}
		// Pruning less than before does not move the watermark back.
		if _, err := s.PruneEvents(t.Context(), 2); err != nil {
			t.Fatal(err)
		}
		if st, _ := s.LedgerState(t.Context()); st.PrunedThrough != 4 {
			t.Errorf("PrunedThrough = %d after pruning through 2, want 4", st.PrunedThrough)
		}
		l.appendAll(t, s, batches[1])
	})

	t.Run("Keys", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var wg sync.WaitGroup
		keys := make([][]byte, 8)
		errs := make([]error, 8)
		for i := range keys {
			wg.Go(func() {
				keys[i], errs[i] = s.LedgerKey(t.Context(), "k", func() ([]byte, error) { return []byte(fmt.Sprint("key", i)), nil })
			})
		}
		wg.Wait()
		for i := range keys {
			if errs[i] != nil || !bytes.Equal(keys[i], keys[0]) {
				t.Errorf("LedgerKey() #%d = %q, %v, want %q like the first", i, keys[i], errs[i], keys[0])
			}
		}
		other, err := s.LedgerKey(t.Context(), "other", func() ([]byte, error) { return []byte("o"), nil })
		if err != nil || string(other) != "o" {
			t.Errorf("LedgerKey(other) = %q, %v, want o", other, err)
		}
		boom := errors.New("no entropy")
		if _, err := s.LedgerKey(t.Context(), "failing", func() ([]byte, error) { return nil, boom }); !errors.Is(err, boom) {
			t.Errorf("LedgerKey(generate fails) = %v, want %v", err, boom)
		}
	})
}

func pickSeqs(evs []*audit.Event, idx ...int) []int64 {
	var out []int64
	for _, i := range idx {
		out = append(out, evs[i].Seq)
	}
	return out
}

// cloneEvents deep-copies evs, so that parallel subtests can each have
// their own sequence numbers assigned.
func cloneEvents(evs []*audit.Event) []*audit.Event {
	out := make([]*audit.Event, len(evs))
	for i, ev := range evs {
		c := *ev
		out[i] = &c
	}
	return out
}
