package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

// taintOf returns the stored taint of a task.
func taintOf(t *testing.T, s store.Backend, id task.ID) task.Sensitivity {
	t.Helper()
	got, err := s.GetTask(t.Context(), id)
	if err != nil {
		t.Fatalf("GetTask(%s) = %v", id, err)
	}
	return got.Taint
}

// agentTaint returns the stored taint of an agent and its end.
func agentTaint(t *testing.T, s store.Backend, id identity.ID) (string, time.Time) {
	t.Helper()
	got, err := s.GetAgent(t.Context(), id)
	if err != nil {
		t.Fatalf("GetAgent(%s) = %v", id, err)
	}
	return got.Taint, got.TaintUntil
}

func testTaint(t *testing.T, open OpenFunc) {
	alice, bob, carol := newAgent("alice-bot"), newAgent("bob-bot"), newAgent("carol-bot")
	window := time.Hour

	// A task's taint only rises, and rises its delegators' with it.
	t.Run("RaiseMonotonic", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob, carol)
		root := newTask(alice.ID, nil)
		child := newTask(bob.ID, root)
		grandchild := newTask(carol.ID, child)
		grandchild.CreatedAt = child.CreatedAt.Add(time.Second)
		sibling := newTask(bob.ID, root)
		other := newTask(alice.ID, nil)
		mustCreateTasks(t, s, root, child, grandchild, sibling, other)
		for _, tc := range []struct {
			name  string
			id    task.ID
			level task.Sensitivity
			want  map[*task.Task]task.Sensitivity
		}{
			{"child reads internal", child.ID, task.SensitivityInternal,
				map[*task.Task]task.Sensitivity{root: "internal", child: "internal", grandchild: "", sibling: "", other: ""}},
			{"grandchild reads restricted", grandchild.ID, task.SensitivityRestricted,
				map[*task.Task]task.Sensitivity{root: "restricted", child: "restricted", grandchild: "restricted", sibling: "", other: ""}},
			{"a lower level lowers nothing", grandchild.ID, task.SensitivityPublic,
				map[*task.Task]task.Sensitivity{root: "restricted", child: "restricted", grandchild: "restricted", sibling: "", other: ""}},
			{"sibling reads confidential", sibling.ID, task.SensitivityConfidential,
				map[*task.Task]task.Sensitivity{root: "restricted", child: "restricted", grandchild: "restricted", sibling: "confidential", other: ""}},
		} {
			if err := s.RaiseTaint(t.Context(), tc.id, tc.level, at(time.Minute), at(time.Minute+window)); err != nil {
				t.Fatalf("%s: RaiseTaint(%s) = %v", tc.name, tc.level, err)
			}
			for tk, want := range tc.want {
				if got := taintOf(t, s, tk.ID); got != want {
					t.Errorf("%s: GetTask(%s).Taint = %q, want %q", tc.name, tk.ID, got, want)
				}
			}
		}
		// A finished task is raised too: what it read was read.
		if _, err := s.FinishTask(t.Context(), other.ID, task.StatusEnded, "done", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := s.RaiseTaint(t.Context(), other.ID, task.SensitivityConfidential, at(2*time.Minute), at(2*time.Minute+window)); err != nil {
			t.Fatalf("RaiseTaint(finished) = %v", err)
		}
		if got := taintOf(t, s, other.ID); got != task.SensitivityConfidential {
			t.Errorf("finished task taint = %q, want confidential", got)
		}
	})

	t.Run("RaiseRefused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice)
		tk := newTask(alice.ID, nil)
		mustCreateTasks(t, s, tk)
		for _, tc := range []struct {
			name      string
			id        task.ID
			level     task.Sensitivity
			at, until time.Time
			wantErr   error
		}{
			{"unknown task", task.NewID(), task.SensitivityRestricted, t0, at(window), task.ErrNotFound},
			{"unknown level", tk.ID, "secret", t0, at(window), task.ErrInvalid},
			{"empty level", tk.ID, "", t0, at(window), task.ErrInvalid},
			{"window ends before it starts", tk.ID, task.SensitivityRestricted, t0, at(-time.Second), task.ErrInvalid},
			{"empty window", tk.ID, task.SensitivityRestricted, t0, t0, task.ErrInvalid},
		} {
			if err := s.RaiseTaint(t.Context(), tc.id, tc.level, tc.at, tc.until); !errors.Is(err, tc.wantErr) {
				t.Errorf("%s: RaiseTaint() = %v, want %v", tc.name, err, tc.wantErr)
			}
		}
		if got := taintOf(t, s, tk.ID); got != "" {
			t.Errorf("taint after refused raises = %q, want none", got)
		}
		bad := newTask(alice.ID, nil)
		bad.Taint = "secret"
		if err := s.CreateTask(t.Context(), bad); !errors.Is(err, task.ErrInvalid) {
			t.Errorf("CreateTask(taint %q) = %v, want ErrInvalid", bad.Taint, err)
		}
	})

	// A delegated task starts with its parent's taint; a task given a
	// higher taint keeps it.
	t.Run("ChildInherits", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		root := newTask(alice.ID, nil)
		mustCreateTasks(t, s, root)
		if err := s.RaiseTaint(t.Context(), root.ID, task.SensitivityConfidential, t0, at(window)); err != nil {
			t.Fatal(err)
		}
		// bob's own taint must not mask the inheritance: he has none.
		child := newTask(bob.ID, root)
		child.CreatedAt = at(2 * window)
		higher := newTask(bob.ID, root)
		higher.CreatedAt = at(2 * window)
		higher.Taint = task.SensitivityRestricted
		mustCreateTasks(t, s, child, higher)
		for tk, want := range map[*task.Task]task.Sensitivity{child: "confidential", higher: "restricted"} {
			if tk.Taint != want {
				t.Errorf("CreateTask set Taint %q, want %q", tk.Taint, want)
			}
			if got := taintOf(t, s, tk.ID); got != want {
				t.Errorf("stored child taint = %q, want %q", got, want)
			}
		}
	})

	// An agent's taint holds for its window: its new tasks start tainted
	// until the window ends.
	t.Run("AgentWindow", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		root := newTask(alice.ID, nil)
		child := newTask(bob.ID, root)
		bystander := newTask(bob.ID, nil)
		mustCreateTasks(t, s, root, child, bystander)
		if a, err := s.GetAgent(t.Context(), alice.ID); err != nil || a.Taint != "" || !a.TaintUntil.IsZero() {
			t.Fatalf("new agent: taint %q until %v, %v; want none", a.Taint, a.TaintUntil, err)
		}

		// bob's delegated task reads restricted data at t0+1m: bob and
		// alice (who delegated to him) are tainted until t0+1m+window.
		readAt := at(time.Minute)
		if err := s.RaiseTaint(t.Context(), child.ID, task.SensitivityRestricted, readAt, readAt.Add(window)); err != nil {
			t.Fatal(err)
		}
		for _, id := range []identity.ID{alice.ID, bob.ID} {
			if lvl, until := agentTaint(t, s, id); lvl != "restricted" || !until.Equal(readAt.Add(window)) {
				t.Errorf("agent %s: taint %q until %v; want restricted until %v", id, lvl, until, readAt.Add(window))
			}
		}
		// The bystander task (bob's, started before) keeps its own taint:
		// policies see the agent's taint beside it.
		if got := taintOf(t, s, bystander.ID); got != "" {
			t.Errorf("bob's earlier task taint = %q, want none", got)
		}

		// A lower read within the window keeps restricted and extends it.
		later := at(30 * time.Minute)
		if err := s.RaiseTaint(t.Context(), bystander.ID, task.SensitivityInternal, later, later.Add(window)); err != nil {
			t.Fatal(err)
		}
		if lvl, until := agentTaint(t, s, bob.ID); lvl != "restricted" || !until.Equal(later.Add(window)) {
			t.Errorf("after a lower read in the window: taint %q until %v; want restricted until %v", lvl, until, later.Add(window))
		}
		// An earlier window never shortens it.
		if err := s.RaiseTaint(t.Context(), bystander.ID, task.SensitivityRestricted, at(2*time.Minute), at(2*time.Minute+window)); err != nil {
			t.Fatal(err)
		}
		if _, until := agentTaint(t, s, bob.ID); !until.Equal(later.Add(window)) {
			t.Errorf("window shortened to %v, want %v", until, later.Add(window))
		}

		// New tasks: tainted within the window, clean after it.
		end := later.Add(window)
		inside := newTask(bob.ID, nil)
		inside.CreatedAt = end.Add(-time.Microsecond)
		after := newTask(bob.ID, nil)
		after.CreatedAt = end
		mustCreateTasks(t, s, inside, after)
		if got := taintOf(t, s, inside.ID); got != "restricted" {
			t.Errorf("task started inside the window: taint %q, want restricted", got)
		}
		if got := taintOf(t, s, after.ID); got != "" {
			t.Errorf("task started at the window's end: taint %q, want none", got)
		}

		// After the window, a lower read replaces the old level.
		past := end.Add(time.Minute)
		if err := s.RaiseTaint(t.Context(), after.ID, task.SensitivityInternal, past, past.Add(window)); err != nil {
			t.Fatal(err)
		}
		if lvl, until := agentTaint(t, s, bob.ID); lvl != "internal" || !until.Equal(past.Add(window)) {
			t.Errorf("after the window: taint %q until %v; want internal until %v", lvl, until, past.Add(window))
		}

		// CreateAgent ignores a taint given to it: only RaiseTaint sets it.
		carolTainted := newAgent("carol-bot")
		carolTainted.Taint, carolTainted.TaintUntil = "restricted", at(window)
		mustCreateAgents(t, s, carolTainted)
		if lvl, until := agentTaint(t, s, carolTainted.ID); lvl != "" || !until.IsZero() {
			t.Errorf("CreateAgent stored taint %q until %v, want none", lvl, until)
		}
	})

	// Concurrent raises of different levels end at the highest: none
	// lowers what another raised, on the task, its parent or the agent.
	t.Run("ConcurrentRaises", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		levels := []task.Sensitivity{task.SensitivityPublic, task.SensitivityInternal, task.SensitivityConfidential, task.SensitivityRestricted}
		for round := range 4 {
			root := newTask(alice.ID, nil)
			child := newTask(bob.ID, root)
			mustCreateTasks(t, s, root, child)
			var wg sync.WaitGroup
			errs := make(chan error, 64)
			for i := range 16 {
				// The restricted raise is one of the first in some rounds,
				// one of the last in others.
				lvl := levels[(i+round)%len(levels)]
				id := child.ID
				if i%3 == 0 {
					id = root.ID
				}
				wg.Go(func() {
					when := at(time.Duration(round) * time.Minute)
					if err := s.RaiseTaint(t.Context(), id, lvl, when, when.Add(window)); err != nil {
						errs <- fmt.Errorf("RaiseTaint(%s) = %w", lvl, err)
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Errorf("round %d: %v", round, err)
			}
			for _, tk := range []*task.Task{root, child} {
				if got := taintOf(t, s, tk.ID); got != task.SensitivityRestricted {
					t.Errorf("round %d: %s taint = %q, want restricted", round, tk.ID, got)
				}
			}
			if lvl, _ := agentTaint(t, s, alice.ID); lvl != "restricted" {
				t.Errorf("round %d: alice's taint = %q, want restricted", round, lvl)
			}
		}
	})
}
