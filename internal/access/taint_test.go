package access_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

// vault classifies /vault/** as restricted.
var vault = policy.ClassifierConfig{Resources: []policy.ResourceRule{{Match: "file.*:/vault/**", Sensitivity: "restricted"}}}

var (
	readVault = access.Action{Kind: "file.read", Resource: "/vault/key"}
	send      = access.Action{Kind: "http.request", Resource: "paste.example.com",
		Destination: policy.Destination{Host: "paste.example.com", Method: "POST", Path: "/"}}
)

// clock is a settable clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// restart returns a new pipeline over the fixture's store — what a
// restarted server has — classifying with vault, on clock c if not nil.
func (f *fixture) restart(t testing.TB, c *clock, tasks store.Backend) *access.Pipeline {
	t.Helper()
	if tasks == nil {
		tasks = f.backend
	}
	cfg := access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: tasks, Agents: f.backend,
		Engine: f.engine, Classifier: mustClassifier(t, vault), Recorder: f.rec,
	}
	if c != nil {
		cfg.Now = c.Now
	}
	p, err := access.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// taskAt stores a task of agent started at start (children: of parent).
func (f *fixture) taskAt(t testing.TB, agent identity.ID, parent *task.Task, start time.Time) *task.Task {
	t.Helper()
	saved := f.now
	f.now = start
	defer func() { f.now = saved }()
	return f.task(t, agent, taskOpts{scope: "*", sens: task.SensitivityRestricted, parent: parent, ttl: 24 * time.Hour})
}

func reasonIDs(d access.Decision) []string {
	var ids []string
	for _, r := range d.Reasons {
		ids = append(ids, r.Policy)
	}
	return ids
}

// expect decides act for tk as an enforcement point would, and checks
// the effect and, for a deny, that taint-no-exfiltration is among the
// reasons. It returns the decision event's details.
func (f *fixture) expect(t testing.TB, p *access.Pipeline, what string, tk *task.Task, act access.Action, want policy.Effect) map[string]string {
	t.Helper()
	d, err := p.DecideFor(context.Background(), tk.ID, tk.Agent.String(), act)
	if d.Effect != want {
		t.Errorf("%s: DecideFor(%s) = %s %v, %v; want %s", what, act.Kind, d.Effect, reasonIDs(d), err, want)
	}
	if want == policy.Deny && act.Kind == send.Kind && !slices.Contains(reasonIDs(d), "taint-no-exfiltration") {
		t.Errorf("%s: DecideFor(send) reasons %v, want taint-no-exfiltration", what, reasonIDs(d))
	}
	ev := f.rec.last(t)
	if ev.Task != string(tk.ID) || ev.Decision != string(want) {
		t.Errorf("%s: last event = %+v, want the decision", what, ev)
	}
	return ev.Details
}

// TestTaintSurvivesRestart: the defect of issue 11 — after a restart the
// tainted task sent. Now its taint is stored before the read is allowed,
// and a new pipeline over the same store (a restarted server) still
// denies its external send.
func TestTaintSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	c := &clock{now: f.now}
	tk := f.taskAt(t, f.agent(t, "a", identity.TierAutonomous), nil, f.now)
	before := f.restart(t, c, nil)
	f.expect(t, before, "clean send", tk, send, policy.Allow)
	f.expect(t, before, "restricted read", tk, readVault, policy.Allow)
	if stored, err := f.backend.GetTask(t.Context(), tk.ID); err != nil || stored.Taint != task.SensitivityRestricted {
		t.Fatalf("stored task after the read: taint %q, %v; want restricted", stored.Taint, err)
	}
	f.expect(t, before, "send after the read", tk, send, policy.Deny)

	after := f.restart(t, c, nil)
	details := f.expect(t, after, "send after a restart", tk, send, policy.Deny)
	if details["taint"] != "restricted" || details["agent_taint"] != "restricted" {
		t.Errorf("event details after restart = %v, want taint and agent_taint restricted", details)
	}
	// Local work goes on: taint stops only what leaves.
	f.expect(t, after, "local write after restart", tk, access.Action{Kind: "file.write", Resource: "/repo/a"}, policy.Allow)
}

// TestAgentTaintWindow: the other half of the defect — the same agent
// started a fresh task and sent. Within the window its fresh tasks start
// tainted, and its tasks started before the read are stopped by
// context.agent_taint; after the window both send again.
func TestAgentTaintWindow(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	c := &clock{now: f.now}
	a := f.agent(t, "a", identity.TierAutonomous)
	other := f.agent(t, "other", identity.TierAutonomous)
	p := f.restart(t, c, nil)
	earlier := f.taskAt(t, a, nil, c.Now())
	bystander := f.taskAt(t, other, nil, c.Now())
	f.expect(t, p, "earlier task's clean send", earlier, send, policy.Allow) // caches the agent record

	reader := f.taskAt(t, a, nil, c.Now())
	f.expect(t, p, "restricted read", reader, readVault, policy.Allow)
	details := f.expect(t, p, "the agent's earlier task", earlier, send, policy.Deny)
	if details["agent_taint"] != "restricted" || details["taint"] != "" {
		t.Errorf("earlier task's event details = %v, want agent_taint restricted and no task taint", details)
	}
	f.expect(t, p, "another agent", bystander, send, policy.Allow)

	// Half an hour later, on a restarted server, a fresh task of the agent.
	c.Advance(30 * time.Minute)
	restarted := f.restart(t, c, nil)
	fresh := f.taskAt(t, a, nil, c.Now())
	if fresh.Taint != task.SensitivityRestricted {
		t.Errorf("fresh task within the window starts with taint %q, want restricted", fresh.Taint)
	}
	details = f.expect(t, restarted, "fresh task within the window", fresh, send, policy.Deny)
	if details["taint"] != "restricted" || details["agent_taint"] != "restricted" {
		t.Errorf("fresh task's event details = %v, want taint and agent_taint restricted", details)
	}
	f.expect(t, restarted, "earlier task within the window", earlier, send, policy.Deny)

	// After the window (an hour after the read, plus the renewal slack).
	c.Advance(31*time.Minute + time.Second)
	restarted = f.restart(t, c, nil)
	later := f.taskAt(t, a, nil, c.Now())
	if later.Taint != "" {
		t.Errorf("task started after the window: taint %q, want none", later.Taint)
	}
	details = f.expect(t, restarted, "fresh task after the window", later, send, policy.Allow)
	if details["taint"] != "" || details["agent_taint"] != "" {
		t.Errorf("event details after the window = %v, want no taint", details)
	}
	f.expect(t, restarted, "earlier task after the window", earlier, send, policy.Allow)
	// What was tainted stays tainted: the reader and the fresh task.
	f.expect(t, restarted, "the reader after the window", reader, send, policy.Deny)
	f.expect(t, restarted, "the fresh task after the window", fresh, send, policy.Deny)
}

// TestAgentTaintWindowRenews: an agent that keeps reading stays tainted
// for the window after its last read, not its first.
func TestAgentTaintWindowRenews(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	c := &clock{now: f.now}
	a := f.agent(t, "a", identity.TierAutonomous)
	p := f.restart(t, c, nil)
	reader := f.taskAt(t, a, nil, c.Now())
	for range 3 {
		f.expect(t, p, "restricted read", reader, readVault, policy.Allow)
		c.Advance(50 * time.Minute)
	}
	// 50 minutes after the last read: a fresh task is still tainted.
	restarted := f.restart(t, c, nil)
	f.expect(t, restarted, "fresh task 50m after the last read", f.taskAt(t, a, nil, c.Now()), send, policy.Deny)
}

// TestDelegatedTaint: a delegated task starts with its parent's taint; a
// delegate created earlier sees its parent's later taint; and a delegate's
// read taints the tasks above it — all across a restart.
func TestDelegatedTaint(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	c := &clock{now: f.now}
	a, b := f.agent(t, "a", identity.TierAutonomous), f.agent(t, "b", identity.TierAutonomous)
	p := f.restart(t, c, nil)

	// The parent reads; a child delegated afterwards starts tainted, one
	// delegated before sees it through its parent.
	parent := f.taskAt(t, a, nil, c.Now())
	before := f.taskAt(t, b, parent, c.Now())
	f.expect(t, p, "parent's restricted read", parent, readVault, policy.Allow)
	afterRead := f.taskAt(t, b, parent, c.Now())
	if afterRead.Taint != task.SensitivityRestricted {
		t.Errorf("child delegated after the read starts with taint %q, want restricted", afterRead.Taint)
	}
	restarted := f.restart(t, c, nil)
	f.expect(t, restarted, "child delegated after the read", afterRead, send, policy.Deny)
	f.expect(t, restarted, "child delegated before the read", before, send, policy.Deny)

	// A delegate's read taints its parent, durably; not a sibling tree.
	root := f.taskAt(t, b, nil, c.Now())
	child := f.taskAt(t, a, root, c.Now())
	unrelated := f.taskAt(t, f.agent(t, "c", identity.TierAutonomous), nil, c.Now())
	f.expect(t, restarted, "delegate's restricted read", child, readVault, policy.Allow)
	if stored, err := f.backend.GetTask(t.Context(), root.ID); err != nil || stored.Taint != task.SensitivityRestricted {
		t.Errorf("delegator after its delegate's read: taint %q, %v; want restricted", stored.Taint, err)
	}
	again := f.restart(t, c, nil)
	f.expect(t, again, "the delegator after a restart", root, send, policy.Deny)
	f.expect(t, again, "an unrelated task", unrelated, send, policy.Allow)
}

// failingTaints is the real store with RaiseTaint broken.
type failingTaints struct {
	store.Backend
	mu   sync.Mutex
	fail bool
}

var _ store.Backend = (*failingTaints)(nil)

var errTaintStore = errors.New("taint store down")

func (s *failingTaints) RaiseTaint(ctx context.Context, id task.ID, level task.Sensitivity, at, until time.Time) error {
	s.mu.Lock()
	fail := s.fail
	s.mu.Unlock()
	if fail {
		return errTaintStore
	}
	return s.Backend.RaiseTaint(ctx, id, level, at, until)
}

// TestTaintNotStoredRefusesRead: fail closed — a read whose taint cannot
// be stored is refused (and recorded), so no restart can forget it.
func TestTaintNotStoredRefusesRead(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	c := &clock{now: f.now}
	broken := &failingTaints{Backend: f.backend, fail: true}
	p := f.restart(t, c, broken)
	tk := f.taskAt(t, f.agent(t, "a", identity.TierAutonomous), nil, c.Now())

	d, err := p.DecideFor(t.Context(), tk.ID, tk.Agent.String(), readVault)
	if d.Effect != policy.Deny || !errors.Is(err, errTaintStore) {
		t.Errorf("restricted read with the taint store down = %s, %v; want deny, the store's error", d.Effect, err)
	}
	if ev := f.rec.last(t); ev.Decision != "deny" || ev.Action != "file.read" || ev.Reason == "" {
		t.Errorf("refused read event = %+v, want a recorded deny with the cause", ev)
	}
	// Reads of unclassified data need no taint and go on.
	f.expect(t, p, "plain read with the taint store down", tk, access.Action{Kind: "file.read", Resource: "/repo/a"}, policy.Allow)
	// The refused read did not happen: nothing to keep in.
	f.expect(t, p, "send after the refused read", tk, send, policy.Allow)

	broken.mu.Lock()
	broken.fail = false
	broken.mu.Unlock()
	f.expect(t, p, "restricted read with the store back", tk, readVault, policy.Allow)
	f.expect(t, p, "send after the read", tk, send, policy.Deny)
}
