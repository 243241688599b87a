package storetest

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

// taskIDs returns the IDs of tasks, in order.
func taskIDs(tasks ...*task.Task) []task.ID {
	ids := make([]task.ID, len(tasks))
	for i, tk := range tasks {
		ids[i] = tk.ID
	}
	return ids
}

// checkStatuses checks the stored status of each task.
func checkStatuses(t *testing.T, s store.Backend, want map[*task.Task]task.Status) {
	t.Helper()
	for tk, st := range want {
		got, err := s.GetTask(t.Context(), tk.ID)
		if err != nil {
			t.Fatalf("GetTask(%s) = %v", tk.ID, err)
		}
		if got.Status != st {
			t.Errorf("GetTask(%s [%s]).Status = %s, want %s", tk.ID, tk.Purpose, got.Status, st)
		}
	}
}

func testTasks(t *testing.T, open OpenFunc) {
	alice, bob, carol := newAgent("alice-bot"), newAgent("bob-bot"), newAgent("carol-bot")

	t.Run("CreateGet", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		root := newTask(alice.ID, nil)
		root.Used = task.Usage{Actions: 3, Writes: 1}
		root.Sensitivity = task.SensitivityConfidential
		root.Taint = task.SensitivityConfidential
		root.CreatedAt = t0.In(time.FixedZone("PST", -8*3600))
		child := newTask(bob.ID, root)
		child.Budget = task.Budget{}
		ended := newTask(alice.ID, nil)
		ended.Status, ended.StatusReason, ended.EndedAt = task.StatusEnded, "done", at(time.Minute)
		for _, tc := range []struct {
			name string
			task *task.Task
		}{
			{"root", root},
			{"delegated child", child},
			{"already ended", ended},
		} {
			if err := s.CreateTask(t.Context(), tc.task); err != nil {
				t.Fatalf("%s: CreateTask() = %v, want nil", tc.name, err)
			}
			got, err := s.GetTask(t.Context(), tc.task.ID)
			if err != nil {
				t.Fatalf("%s: GetTask() = %v, want nil", tc.name, err)
			}
			if diff := cmp.Diff(tc.task, got, cmpOpts); diff != "" {
				t.Errorf("%s: GetTask(%s) mismatch (-want +got):\n%s", tc.name, tc.task.ID, diff)
			}
			checkUTC(t, tc.name, got.CreatedAt, got.ExpiresAt, got.EndedAt)
		}
	})

	t.Run("CreateRefused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		active := newTask(alice.ID, nil)
		revoked := newTask(alice.ID, nil)
		mustCreateTasks(t, s, active, revoked)
		if _, err := s.FinishTask(t.Context(), revoked.ID, task.StatusRevoked, "test", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		dup := newTask(bob.ID, nil)
		dup.ID = active.ID
		unknownParent := newTask(bob.ID, active)
		unknownParent.Parent = task.NewID()
		for _, tc := range []struct {
			name    string
			task    *task.Task
			wantErr error
		}{
			{"duplicate ID", dup, task.ErrExists},
			{"child of revoked parent", newTask(bob.ID, revoked), task.ErrNotActive},
			{"child of unknown parent", unknownParent, task.ErrNotFound},
			{"unregistered agent", newTask(agentID("ghost"), nil), identity.ErrNotFound},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				err := s.CreateTask(t.Context(), tc.task)
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("CreateTask() = %v, want %v", err, tc.wantErr)
				}
				if tc.task.ID == active.ID {
					return
				}
				if got, err := s.GetTask(t.Context(), tc.task.ID); !errors.Is(err, task.ErrNotFound) {
					t.Errorf("GetTask(%s) after refused create = %v, %v; want ErrNotFound", tc.task.ID, got, err)
				}
			})
		}
	})

	t.Run("GetNotFound", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		if got, err := s.GetTask(t.Context(), task.NewID()); !errors.Is(err, task.ErrNotFound) {
			t.Errorf("GetTask(unknown) = %v, %v; want ErrNotFound", got, err)
		}
	})

	t.Run("List", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		r1 := newTask(alice.ID, nil)
		r2 := newTask(alice.ID, nil)
		r2.CreatedAt = at(10 * time.Second)
		c1 := newTask(bob.ID, r1) // created at t0+1s
		c2 := newTask(bob.ID, r1)
		c2.CreatedAt = at(5 * time.Second)
		r3 := newTask(bob.ID, nil)
		r3.CreatedAt = at(20 * time.Second)
		mustCreateTasks(t, s, r1, r2, c1, c2, r3)
		if _, err := s.FinishTask(t.Context(), c2.ID, task.StatusEnded, "done", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if _, err := s.FinishTask(t.Context(), r2.ID, task.StatusRevoked, "stop", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name   string
			filter task.Filter
			want   []task.ID // newest first
		}{
			{"all", task.Filter{}, taskIDs(r3, r2, c2, c1, r1)},
			{"agent", task.Filter{Agent: alice.ID}, taskIDs(r2, r1)},
			{"status active", task.Filter{Status: task.StatusActive}, taskIDs(r3, c1, r1)},
			{"status ended", task.Filter{Status: task.StatusEnded}, taskIDs(c2)},
			{"parent", task.Filter{Parent: r1.ID}, taskIDs(c2, c1)},
			{"agent and status", task.Filter{Agent: bob.ID, Status: task.StatusActive}, taskIDs(r3, c1)},
			{"limit", task.Filter{Limit: 2}, taskIDs(r3, r2)},
			{"no match", task.Filter{Agent: carol.ID}, nil},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				got, err := s.ListTasks(t.Context(), tc.filter)
				if err != nil {
					t.Fatalf("ListTasks(%+v) = %v", tc.filter, err)
				}
				if diff := cmp.Diff(tc.want, taskIDs(got...), cmpOpts); diff != "" {
					t.Errorf("ListTasks(%+v) IDs mismatch (-want +got):\n%s", tc.filter, diff)
				}
			})
		}
		// Listed tasks are complete records.
		got, err := s.ListTasks(t.Context(), task.Filter{Parent: r1.ID, Status: task.StatusActive})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]*task.Task{c1}, got, cmpOpts); diff != "" {
			t.Errorf("ListTasks(parent, active) mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("FinishCascade", func(t *testing.T) {
		t.Parallel()
		// root (alice) ─┬─ child (bob) ─── grandchild (carol)
		//               └─ done (bob, already ended)
		// other (alice) is unrelated.
		type tree struct {
			root, child, grandchild, done, other *task.Task
		}
		setup := func(t *testing.T) (store.Backend, tree) {
			s := open(t)
			mustCreateAgents(t, s, alice, bob, carol)
			var tr tree
			tr.root = newTask(alice.ID, nil)
			tr.child = newTask(bob.ID, tr.root)
			tr.grandchild = newTask(carol.ID, tr.child)
			tr.grandchild.CreatedAt = tr.child.CreatedAt.Add(time.Second)
			tr.done = newTask(bob.ID, tr.root)
			tr.other = newTask(alice.ID, nil)
			mustCreateTasks(t, s, tr.root, tr.child, tr.grandchild, tr.done, tr.other)
			if _, err := s.FinishTask(t.Context(), tr.done.ID, task.StatusEnded, "finished", at(time.Minute)); err != nil {
				t.Fatal(err)
			}
			return s, tr
		}
		for _, tc := range []struct {
			name      string
			finish    func(tr tree) *task.Task
			status    task.Status
			want      func(tr tree) []*task.Task // changed, the finished task first
			unchanged func(tr tree) []*task.Task
		}{
			{
				name:      "revoke root",
				finish:    func(tr tree) *task.Task { return tr.root },
				status:    task.StatusRevoked,
				want:      func(tr tree) []*task.Task { return []*task.Task{tr.root, tr.child, tr.grandchild} },
				unchanged: func(tr tree) []*task.Task { return []*task.Task{tr.done, tr.other} },
			},
			{
				name:      "end middle",
				finish:    func(tr tree) *task.Task { return tr.child },
				status:    task.StatusEnded,
				want:      func(tr tree) []*task.Task { return []*task.Task{tr.child, tr.grandchild} },
				unchanged: func(tr tree) []*task.Task { return []*task.Task{tr.root, tr.done, tr.other} },
			},
			{
				name:      "expire leaf",
				finish:    func(tr tree) *task.Task { return tr.grandchild },
				status:    task.StatusExpired,
				want:      func(tr tree) []*task.Task { return []*task.Task{tr.grandchild} },
				unchanged: func(tr tree) []*task.Task { return []*task.Task{tr.root, tr.child, tr.done, tr.other} },
			},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				s, tr := setup(t)
				target := tc.finish(tr)
				when := at(2 * time.Minute)
				got, err := s.FinishTask(t.Context(), target.ID, tc.status, "because "+tc.name, when)
				if err != nil {
					t.Fatalf("FinishTask(%s) = %v", target.ID, err)
				}
				want := tc.want(tr)
				if len(got) == 0 || got[0] != target.ID {
					t.Errorf("FinishTask(%s) = %v, want the finished task first", target.ID, got)
				}
				if diff := cmp.Diff(taskIDs(want...), got, sortIDs); diff != "" {
					t.Errorf("FinishTask(%s) IDs mismatch (-want +got):\n%s", target.ID, diff)
				}
				for _, tk := range want {
					stored, err := s.GetTask(t.Context(), tk.ID)
					if err != nil {
						t.Fatal(err)
					}
					w := *tk
					w.Status, w.StatusReason, w.EndedAt = tc.status, "because "+tc.name, when
					if diff := cmp.Diff(&w, stored, cmpOpts); diff != "" {
						t.Errorf("GetTask(%s) after FinishTask mismatch (-want +got):\n%s", tk.ID, diff)
					}
				}
				for _, tk := range tc.unchanged(tr) {
					stored, err := s.GetTask(t.Context(), tk.ID)
					if err != nil {
						t.Fatal(err)
					}
					if tk == tr.done {
						if stored.Status != task.StatusEnded || stored.StatusReason != "finished" || !stored.EndedAt.Equal(at(time.Minute)) {
							t.Errorf("already finished task changed: status %s, reason %q, ended %v", stored.Status, stored.StatusReason, stored.EndedAt)
						}
						continue
					}
					if diff := cmp.Diff(tk, stored, cmpOpts); diff != "" {
						t.Errorf("unrelated task %s changed (-want +got):\n%s", tk.ID, diff)
					}
				}
				// Finishing again is refused, as is a child of a finished task.
				if ids, err := s.FinishTask(t.Context(), target.ID, task.StatusRevoked, "again", when); !errors.Is(err, task.ErrNotActive) {
					t.Errorf("FinishTask(%s) again = %v, %v; want ErrNotActive", target.ID, ids, err)
				}
				if err := s.CreateTask(t.Context(), newTask(bob.ID, target)); !errors.Is(err, task.ErrNotActive) {
					t.Errorf("CreateTask(child of finished %s) = %v, want ErrNotActive", target.ID, err)
				}
			})
		}
	})

	t.Run("FinishRefused", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice)
		active := newTask(alice.ID, nil)
		ended := newTask(alice.ID, nil)
		mustCreateTasks(t, s, active, ended)
		if _, err := s.FinishTask(t.Context(), ended.ID, task.StatusEnded, "done", t0); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name    string
			id      task.ID
			status  task.Status
			wantErr error
		}{
			{"unknown task", task.NewID(), task.StatusRevoked, task.ErrNotFound},
			{"already ended", ended.ID, task.StatusRevoked, task.ErrNotActive},
			{"already ended, same status", ended.ID, task.StatusEnded, task.ErrNotActive},
			{"active is not a final status", active.ID, task.StatusActive, task.ErrInvalid},
		} {
			t.Run(tc.name, func(t *testing.T) {
				t.Parallel()
				ids, err := s.FinishTask(t.Context(), tc.id, tc.status, "x", t0)
				if !errors.Is(err, tc.wantErr) {
					t.Errorf("FinishTask(%s, %s) = %v, %v; want %v", tc.id, tc.status, ids, err, tc.wantErr)
				}
			})
		}
		checkStatuses(t, s, map[*task.Task]task.Status{active: task.StatusActive, ended: task.StatusEnded})
	})

	t.Run("FinishAgentTasks", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob, carol)
		// alice's root delegates to bob; bob's task delegates to carol.
		// bob also has a root task of his own and an ended one.
		aliceRoot := newTask(alice.ID, nil)
		bobUnderAlice := newTask(bob.ID, aliceRoot)
		carolUnderBob := newTask(carol.ID, bobUnderAlice)
		carolUnderBob.CreatedAt = bobUnderAlice.CreatedAt.Add(time.Second)
		bobRoot := newTask(bob.ID, nil)
		bobRoot.CreatedAt = at(30 * time.Second)
		carolUnderBobRoot := newTask(carol.ID, bobRoot)
		bobEnded := newTask(bob.ID, nil)
		carolRoot := newTask(carol.ID, nil)
		mustCreateTasks(t, s, aliceRoot, bobUnderAlice, carolUnderBob, bobRoot, carolUnderBobRoot, bobEnded, carolRoot)
		if _, err := s.FinishTask(t.Context(), bobEnded.ID, task.StatusEnded, "done", t0); err != nil {
			t.Fatal(err)
		}

		got, err := s.FinishAgentTasks(t.Context(), bob.ID, task.StatusRevoked, "agent suspended", at(time.Minute))
		if err != nil {
			t.Fatalf("FinishAgentTasks(bob) = %v", err)
		}
		want := taskIDs(bobUnderAlice, bobRoot, carolUnderBob, carolUnderBobRoot)
		if diff := cmp.Diff(want, got, sortIDs); diff != "" {
			t.Errorf("FinishAgentTasks(bob) IDs mismatch (-want +got):\n%s", diff)
		}
		checkStatuses(t, s, map[*task.Task]task.Status{
			aliceRoot:         task.StatusActive,
			bobUnderAlice:     task.StatusRevoked,
			carolUnderBob:     task.StatusRevoked,
			bobRoot:           task.StatusRevoked,
			carolUnderBobRoot: task.StatusRevoked,
			bobEnded:          task.StatusEnded,
			carolRoot:         task.StatusActive,
		})
		stored, err := s.GetTask(t.Context(), carolUnderBob.ID)
		if err != nil {
			t.Fatal(err)
		}
		if stored.StatusReason != "agent suspended" || !stored.EndedAt.Equal(at(time.Minute)) {
			t.Errorf("descendant of bob's task: reason %q, ended %v; want %q, %v", stored.StatusReason, stored.EndedAt, "agent suspended", at(time.Minute))
		}

		// Nothing left to finish: no IDs, no error.
		if got, err := s.FinishAgentTasks(t.Context(), bob.ID, task.StatusRevoked, "again", at(time.Minute)); err != nil || len(got) != 0 {
			t.Errorf("FinishAgentTasks(bob) again = %v, %v; want none, nil", got, err)
		}
		if got, err := s.FinishAgentTasks(t.Context(), agentID("ghost"), task.StatusRevoked, "x", at(time.Minute)); err != nil || len(got) != 0 {
			t.Errorf("FinishAgentTasks(unknown agent) = %v, %v; want none, nil", got, err)
		}
	})

	t.Run("CreateChildRace", func(t *testing.T) {
		t.Parallel()
		testCreateChildRace(t, open)
	})

	t.Run("AddUsage", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice)
		a, b := newTask(alice.ID, nil), newTask(alice.ID, nil)
		a.Used = task.Usage{Actions: 2, Writes: 1}
		mustCreateTasks(t, s, a, b)
		if _, err := s.FinishTask(t.Context(), b.ID, task.StatusEnded, "done", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		for i := 0; i < 2; i++ {
			err := s.AddUsage(t.Context(), map[task.ID]task.Usage{
				a.ID: {Actions: 3, Writes: 2}, b.ID: {Actions: 1}, task.NewID(): {Actions: 9},
			})
			if err != nil {
				t.Fatalf("AddUsage() = %v, want nil (unknown IDs are ignored)", err)
			}
		}
		for tk, want := range map[*task.Task]task.Usage{a: {Actions: 8, Writes: 5}, b: {Actions: 2}} {
			got, err := s.GetTask(t.Context(), tk.ID)
			if err != nil {
				t.Fatal(err)
			}
			if got.Used != want {
				t.Errorf("GetTask(%s).Used = %+v, want %+v", tk.ID, got.Used, want)
			}
		}
		if err := s.AddUsage(t.Context(), map[task.ID]task.Usage{a.ID: {Actions: -1}}); !errors.Is(err, task.ErrInvalid) {
			t.Errorf("AddUsage(negative) = %v, want ErrInvalid", err)
		}
		if err := s.AddUsage(t.Context(), nil); err != nil {
			t.Errorf("AddUsage(nil) = %v, want nil", err)
		}
	})

	t.Run("Expire", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		mustCreateAgents(t, s, alice, bob)
		mk := func(expiresIn time.Duration) *task.Task {
			tk := newTask(alice.ID, nil)
			tk.ExpiresAt = at(expiresIn)
			return tk
		}
		early, onTheDot, late := mk(time.Minute), mk(2*time.Minute), mk(time.Hour)
		earlyChild := newTask(bob.ID, early)
		endedEarly := mk(time.Minute)
		mustCreateTasks(t, s, early, earlyChild, onTheDot, late, endedEarly)
		if _, err := s.FinishTask(t.Context(), endedEarly.ID, task.StatusEnded, "done", at(30*time.Second)); err != nil {
			t.Fatal(err)
		}
		now := at(2 * time.Minute)

		// Before expiry: the ended task's tokens may still be live.
		inactive, err := s.InactiveTaskIDs(t.Context(), at(30*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(taskIDs(endedEarly), inactive, sortIDs); diff != "" {
			t.Errorf("InactiveTaskIDs(t0+30s) mismatch (-want +got):\n%s", diff)
		}

		got, err := s.ExpireTasks(t.Context(), now)
		if err != nil {
			t.Fatalf("ExpireTasks(%v) = %v", now, err)
		}
		if diff := cmp.Diff(taskIDs(early, earlyChild, onTheDot), got, sortIDs); diff != "" {
			t.Errorf("ExpireTasks(%v) mismatch (-want +got):\n%s", now, diff)
		}
		checkStatuses(t, s, map[*task.Task]task.Status{
			early: task.StatusExpired, earlyChild: task.StatusExpired, onTheDot: task.StatusExpired,
			late: task.StatusActive, endedEarly: task.StatusEnded,
		})
		stored, err := s.GetTask(t.Context(), onTheDot.ID)
		if err != nil {
			t.Fatal(err)
		}
		if !stored.EndedAt.Equal(now) {
			t.Errorf("expired task EndedAt = %v, want %v", stored.EndedAt, now)
		}
		if got, err := s.ExpireTasks(t.Context(), now); err != nil || len(got) != 0 {
			t.Errorf("ExpireTasks(%v) again = %v, %v; want none, nil", now, got, err)
		}

		// InactiveTaskIDs lists finished tasks whose expiry is after now.
		if _, err := s.FinishTask(t.Context(), late.ID, task.StatusRevoked, "stop", now); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			now  time.Time
			want []task.ID
		}{
			{"now", now, taskIDs(late)},
			{"just before the revoked task's expiry", at(time.Hour - time.Microsecond), taskIDs(late)},
			{"at the revoked task's expiry", at(time.Hour), nil},
		} {
			got, err := s.InactiveTaskIDs(t.Context(), tc.now)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, sortIDs); diff != "" {
				t.Errorf("%s: InactiveTaskIDs(%v) mismatch (-want +got):\n%s", tc.name, tc.now, diff)
			}
		}
	})
}

// sortIDs compares ID lists as sets, nil like empty. Use it on its own:
// it conflicts with cmpopts.EquateEmpty.
var sortIDs = cmp.Transformer("sortIDs", func(ids []task.ID) []task.ID {
	if len(ids) == 0 {
		return nil
	}
	s := slices.Clone(ids)
	slices.Sort(s)
	return s
})

// testCreateChildRace checks that a child created while its parent is
// being revoked is either refused or revoked with it: never a live orphan.
func testCreateChildRace(t *testing.T, open OpenFunc) {
	s := open(t)
	alice, bob := newAgent("alice-bot"), newAgent("bob-bot")
	mustCreateAgents(t, s, alice, bob)
	for round := range 5 {
		root := newTask(alice.ID, nil)
		mustCreateTasks(t, s, root)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 8 {
			wg.Go(func() {
				for range 4 {
					err := s.CreateTask(t.Context(), newTask(bob.ID, root))
					if err != nil && !errors.Is(err, task.ErrNotActive) {
						errs <- err
					}
				}
			})
		}
		wg.Go(func() {
			if _, err := s.FinishTask(t.Context(), root.ID, task.StatusRevoked, "race", t0); err != nil {
				errs <- err
			}
		})
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Errorf("round %d: %v", round, err)
		}
		live, err := s.ListTasks(t.Context(), task.Filter{Parent: root.ID, Status: task.StatusActive})
		if err != nil {
			t.Fatal(err)
		}
		if len(live) != 0 {
			t.Errorf("round %d: %d children of the revoked parent are still active", round, len(live))
		}
	}
}
