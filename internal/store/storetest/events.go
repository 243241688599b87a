package storetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/audit"
)

// seqs returns the sequence numbers of evs.
func seqs(evs []*audit.Event) []int64 {
	s := make([]int64, len(evs))
	for i, ev := range evs {
		s[i] = ev.Seq
	}
	return s
}

func testEvents(t *testing.T, open OpenFunc) {
	const (
		agentA = "spiffe://example.org/agent/a"
		agentB = "spiffe://example.org/agent/b"
	)
	full := &audit.Event{
		Time:       at(time.Second).In(time.FixedZone("IST", 5*3600+1800)),
		Type:       audit.TypeTokenIssued,
		Actor:      agentA,
		Agent:      agentB,
		Chain:      []string{agentA, agentB},
		OnBehalfOf: "user:alice",
		Task:       "tsk_1",
		Action:     "token.exchange",
		Resource:   "https://mandate.example/token",
		Decision:   audit.DecisionAllow,
		Reason:     "delegated",
		Details:    map[string]string{"grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "jti": "j1"},
		RequestID:  "req-1",
		Point:      "token_endpoint",
	}
	// The log: six events in two batches and two single appends.
	batches := [][]*audit.Event{
		{
			{Time: t0, Type: audit.TypeAgentRegistered, Actor: "admin:local", Agent: agentA},
			full,
			{Time: at(2 * time.Second), Type: audit.TypeTaskStarted, Agent: agentA, Task: "tsk_1"},
		},
		{{Time: at(3 * time.Second), Type: audit.TypeTokenRefused, Agent: agentB, Decision: audit.DecisionDeny, Reason: "replayed jti"}},
		{},
		{
			{Time: at(4 * time.Second), Type: audit.TypeTaskRevoked, Actor: "admin:local", Agent: agentA, Task: "tsk_1"},
			{Time: at(4 * time.Second), Type: audit.TypeTokenIssued, Agent: agentA, Task: "tsk_2"},
		},
	}

	t.Run("AppendList", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var all []*audit.Event
		var last int64
		for i, b := range batches {
			b = cloneEvents(b)
			if err := s.AppendEvents(t.Context(), b); err != nil {
				t.Fatalf("AppendEvents(batch %d) = %v", i, err)
			}
			for _, ev := range b {
				if ev.Seq <= last {
					t.Errorf("AppendEvents(batch %d) assigned seq %d after %d, want increasing", i, ev.Seq, last)
				}
				last = ev.Seq
			}
			all = append(all, b...)
		}
		got, err := s.ListEvents(t.Context(), audit.Query{})
		if err != nil {
			t.Fatalf("ListEvents() = %v", err)
		}
		if diff := cmp.Diff(all, got, cmpOpts); diff != "" {
			t.Errorf("ListEvents() mismatch (-want +got):\n%s", diff)
		}
		for _, ev := range got {
			checkUTC(t, fmt.Sprintf("event %d", ev.Seq), ev.Time)
		}
		if err := s.AppendEvents(t.Context(), nil); err != nil {
			t.Errorf("AppendEvents(nil) = %v, want nil", err)
		}
	})

	t.Run("Query", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		var all []*audit.Event
		for _, b := range batches {
			b = cloneEvents(b)
			if err := s.AppendEvents(t.Context(), b); err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		pick := func(idx ...int) []int64 {
			var s []int64
			for _, i := range idx {
				s = append(s, all[i].Seq)
			}
			return s
		}
		for _, tc := range []struct {
			name  string
			query audit.Query
			want  []int64
		}{
			{"all", audit.Query{}, pick(0, 1, 2, 3, 4, 5)},
			{"type", audit.Query{Type: audit.TypeTokenIssued}, pick(1, 5)},
			{"agent", audit.Query{Agent: agentB}, pick(1, 3)},
			{"task", audit.Query{Task: "tsk_1"}, pick(1, 2, 4)},
			{"after seq", audit.Query{AfterSeq: all[2].Seq}, pick(3, 4, 5)},
			{"after the last seq", audit.Query{AfterSeq: all[5].Seq}, nil},
			{"since is inclusive", audit.Query{Since: at(2 * time.Second)}, pick(2, 3, 4, 5)},
			{"until is exclusive", audit.Query{Until: at(2 * time.Second)}, pick(0, 1)},
			{"since and until", audit.Query{Since: at(time.Second), Until: at(4 * time.Second)}, pick(1, 2, 3)},
			{"limit", audit.Query{Limit: 2}, pick(0, 1)},
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
				if diff := cmp.Diff(tc.want, seqs(got), cmpOpts); diff != "" {
					t.Errorf("ListEvents(%+v) seqs mismatch (-want +got):\n%s", tc.query, diff)
				}
			})
		}
	})

	t.Run("ConcurrentAppends", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		const goroutines, batchesEach, batchSize = 8, 10, 3
		var wg sync.WaitGroup
		appended := make([][]*audit.Event, goroutines)
		errs := make([]error, goroutines)
		for g := range goroutines {
			wg.Go(func() {
				for b := range batchesEach {
					batch := make([]*audit.Event, batchSize)
					for i := range batch {
						batch[i] = &audit.Event{Time: t0, Type: audit.TypeTokenIssued, RequestID: fmt.Sprintf("g%d-b%d-e%d", g, b, i)}
					}
					if err := s.AppendEvents(t.Context(), batch); err != nil {
						errs[g] = err
						return
					}
					appended[g] = append(appended[g], batch...)
				}
			})
		}
		wg.Wait()
		for g, err := range errs {
			if err != nil {
				t.Fatalf("goroutine %d: AppendEvents() = %v", g, err)
			}
		}
		got, err := s.ListEvents(t.Context(), audit.Query{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != goroutines*batchesEach*batchSize {
			t.Fatalf("ListEvents() returned %d events, want %d", len(got), goroutines*batchesEach*batchSize)
		}
		if !slices.IsSorted(seqs(got)) {
			t.Errorf("ListEvents() seqs not in order: %v", seqs(got))
		}
		bySeq := make(map[int64]string, len(got))
		for _, ev := range got {
			if _, dup := bySeq[ev.Seq]; dup {
				t.Errorf("seq %d listed twice", ev.Seq)
			}
			bySeq[ev.Seq] = ev.RequestID
		}
		for _, evs := range appended {
			for i, ev := range evs {
				if bySeq[ev.Seq] != ev.RequestID {
					t.Errorf("event %s was assigned seq %d, but the store has %q there", ev.RequestID, ev.Seq, bySeq[ev.Seq])
				}
				// Each goroutine appended in order, so its seqs increase.
				if i > 0 && ev.Seq <= evs[i-1].Seq {
					t.Errorf("event %s has seq %d, not after the previous %d", ev.RequestID, ev.Seq, evs[i-1].Seq)
				}
			}
		}
	})
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
