package lifecycle_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
)

// recorder records events; while down it refuses them as the ledger does.
type recorder struct {
	down atomic.Bool
	mu   sync.Mutex
	evs  []audit.Event
}

func (r *recorder) Record(_ context.Context, ev audit.Event) error {
	if r.down.Load() {
		return audit.ErrUnavailable
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *recorder) tasks(typ audit.Type) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		if ev.Type == typ {
			out = append(out, ev.Task)
		}
	}
	return out
}

// revoker is the live revocation state's part the service uses.
type revoker struct {
	mu  sync.Mutex
	ids []task.ID
}

func (r *revoker) RevokeTasks(ids ...task.ID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ids = append(r.ids, ids...)
}

func (r *revoker) has(id task.ID) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Contains(r.ids, id)
}

// flakyStore is the real SQLite task store whose FinishTask is
// unavailable while down.
type flakyStore struct {
	*sqlite.DB
	down atomic.Bool
}

func (f *flakyStore) FinishTask(ctx context.Context, id task.ID, st task.Status, reason string, at time.Time) ([]task.ID, error) {
	if f.down.Load() {
		return nil, fault.ErrUnavailable
	}
	return f.DB.FinishTask(ctx, id, st, reason, at)
}

type fixture struct {
	db  *flakyStore
	rec *recorder
	rev *revoker
	svc *lifecycle.Service
	now time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "mandate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	f := &fixture{db: &flakyStore{DB: db}, rec: &recorder{}, rev: &revoker{}, now: time.Now()}
	if f.svc, err = lifecycle.New(lifecycle.Config{Tasks: f.db, Recorder: f.rec, Revoker: f.rev}); err != nil {
		t.Fatal(err)
	}
	a := &identity.Agent{ID: agentID, Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: identity.TierAutonomous,
		Status: identity.StatusActive, CreatedAt: f.now, UpdatedAt: f.now}
	if err := db.CreateAgent(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return f
}

var agentID = identity.MustParseID("spiffe://example.org/agent/a")

func (f *fixture) newTask(t *testing.T, parent *task.Task) *task.Task {
	t.Helper()
	sc, _ := task.ParseScope("file.read:/repo/**")
	tk := &task.Task{ID: task.NewID(), Agent: agentID, OnBehalfOf: "alice@example.org", Principal: "alice@example.org",
		Purpose: "p", Scope: sc, Sensitivity: task.SensitivityInternal, Status: task.StatusActive,
		Actors: []identity.ID{agentID}, CreatedAt: f.now, ExpiresAt: f.now.Add(time.Hour)}
	if parent != nil {
		tk.Parent, tk.Depth, tk.OnBehalfOf = parent.ID, parent.Depth+1, "task:"+string(parent.ID)
		tk.Actors = []identity.ID{agentID, agentID}
	}
	return tk
}

// family starts a task and a child delegated from it.
func (f *fixture) family(t *testing.T) (parent, child *task.Task) {
	t.Helper()
	parent = f.newTask(t, nil)
	child = f.newTask(t, parent)
	for _, tk := range []*task.Task{parent, child} {
		if err := f.svc.Start(context.Background(), tk, started); err != nil {
			t.Fatal(err)
		}
	}
	return parent, child
}

func started(tk *task.Task) audit.Event {
	return audit.Event{Type: audit.TypeTaskStarted, Agent: tk.Agent.String(), Task: string(tk.ID)}
}

func (f *fixture) revoke(id task.ID) lifecycle.Stop {
	return lifecycle.Stop{
		Known: []task.ID{id},
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) {
			return f.db.FinishTask(ctx, id, task.StatusRevoked, "test", at)
		},
		Event: func(id task.ID) audit.Event { return audit.Event{Type: audit.TypeTaskRevoked, Task: string(id)} },
	}
}

// A task whose start cannot be recorded is revoked at once, and the
// revocation is recorded once the ledger is back.
func TestUnrecordedStartNeverActs(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	tk := f.newTask(t, nil)
	f.rec.down.Store(true)
	if err := f.svc.Start(ctx, tk, started); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Start with the ledger down = %v, want audit.ErrUnavailable", err)
	}
	if !f.rev.has(tk.ID) {
		t.Error("the unrecorded task is not refused")
	}
	if got, err := f.db.GetTask(ctx, tk.ID); err != nil || got.Status != task.StatusRevoked {
		t.Errorf("stored task = %+v, %v; want revoked", got, err)
	}
	f.rec.down.Store(false)
	if n := f.svc.Retry(ctx); n != 0 {
		t.Fatalf("%d stops still pending with the ledger back", n)
	}
	if got := f.rec.tasks(audit.TypeTaskRevoked); !slices.Equal(got, []string{string(tk.ID)}) {
		t.Errorf("revocations recorded = %v, want the unrecorded task's", got)
	}
	if got := f.rec.tasks(audit.TypeTaskStarted); len(got) != 0 {
		t.Errorf("starts recorded = %v, want none", got)
	}
}

// A revocation the store cannot take now is enforced at once and stored
// (with the descendants) and recorded when the store is back.
func TestStopEnforcedWhileTheStoreIsDown(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	parent, child := f.family(t)
	f.db.down.Store(true)
	if _, err := f.svc.Stop(ctx, f.revoke(parent.ID)); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("Stop with the store down = %v, want fault.ErrUnavailable", err)
	}
	if !f.rev.has(parent.ID) {
		t.Error("the revocation is not enforced while the store is down")
	}
	if n := f.svc.Retry(ctx); n != 1 {
		t.Fatalf("pending after a retry with the store still down = %d, want 1", n)
	}
	f.db.down.Store(false)
	if n := f.svc.Retry(ctx); n != 0 {
		t.Fatalf("pending with the store back = %d, want 0", n)
	}
	for _, tk := range []*task.Task{parent, child} {
		if got, _ := f.db.GetTask(ctx, tk.ID); got.Status != task.StatusRevoked || !f.rev.has(tk.ID) {
			t.Errorf("task %s: status %s, refused %v; want revoked and refused", tk.ID, got.Status, f.rev.has(tk.ID))
		}
	}
	if got := f.rec.tasks(audit.TypeTaskRevoked); !slices.Equal(got, []string{string(parent.ID), string(child.ID)}) {
		t.Errorf("revocations recorded = %v, want parent then child, once each", got)
	}
}

// A revocation the ledger cannot take now has happened: Stop succeeds, and
// each event is recorded exactly once when the ledger is back.
func TestStopRecordedWhenTheLedgerIsBack(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	parent, child := f.family(t)
	f.rec.down.Store(true)
	ids, err := f.svc.Stop(ctx, f.revoke(parent.ID))
	if err != nil || !slices.Equal(ids, []task.ID{parent.ID, child.ID}) {
		t.Fatalf("Stop with the ledger down = %v, %v; want both tasks stopped", ids, err)
	}
	if !f.rev.has(child.ID) || f.svc.Pending() != 1 {
		t.Fatalf("child refused %v, pending %d", f.rev.has(child.ID), f.svc.Pending())
	}
	f.rec.down.Store(false)
	f.svc.Retry(ctx)
	f.svc.Retry(ctx)
	if got := f.rec.tasks(audit.TypeTaskRevoked); !slices.Equal(got, []string{string(parent.ID), string(child.ID)}) {
		t.Errorf("revocations recorded = %v, want parent then child, once each", got)
	}
}

// Stopping a task that has stopped already is refused and leaves nothing
// to retry.
func TestStopTwice(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f := newFixture(t)
	tk := f.newTask(t, nil)
	if err := f.svc.Start(ctx, tk, started); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Stop(ctx, f.revoke(tk.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.Stop(ctx, f.revoke(tk.ID)); !errors.Is(err, task.ErrNotActive) {
		t.Errorf("second Stop = %v, want task.ErrNotActive", err)
	}
	if _, err := f.svc.Stop(ctx, f.revoke(task.NewID())); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Stop of an unknown task = %v, want task.ErrNotFound", err)
	}
	if n := f.svc.Pending(); n != 0 {
		t.Errorf("pending = %d, want 0", n)
	}
	if got := f.rec.tasks(audit.TypeTaskRevoked); len(got) != 1 {
		t.Errorf("revocations recorded = %v, want one", got)
	}
}
