package approval_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

type memRecorder struct {
	mu  sync.Mutex
	evs []audit.Event
}

func (m *memRecorder) Record(_ context.Context, ev audit.Event) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.evs = append(m.evs, ev)
	return nil
}

func (m *memRecorder) count(typ audit.Type) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, e := range m.evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type fixture struct {
	svc     *approval.Service
	rec     *memRecorder
	clock   *clock
	version string
	mu      sync.Mutex
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	backend, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "mandate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })
	f := &fixture{rec: &memRecorder{}, clock: &clock{t: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}, version: "v1"}
	f.svc, err = approval.New(context.Background(), approval.Config{
		Store: backend, Digester: audit.NewRedactor([]byte("k"), nil), Recorder: f.rec, Sealer: sealtest.Keyring(),
		PolicyVersion: func(names []string) string { f.mu.Lock(); defer f.mu.Unlock(); return f.version + joined(names) },
		ExpireAfter:   10 * time.Minute, Now: f.clock.now,
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func joined(ns []string) string {
	out := ""
	for _, n := range ns {
		out += "," + n
	}
	return out
}

func deploy(env string) approval.OpenRequest {
	return approval.OpenRequest{
		Agent: "spiffe://example.org/agent/deployer", AgentTier: "autonomous", AgentOwner: "alice@example.org",
		Task: "tsk_1", Principal: "bob@example.org", OnBehalfOf: "bob@example.org",
		Action: "tool.call", Resource: "ci/deploy", Arguments: json.RawMessage(`{"env":"` + env + `"}`),
		Approvals: []string{"step-up"}, Reasons: []string{"autonomous-step-up: needs step-up"},
	}
}

func allow(context.Context, *approval.Request) error { return nil }

func (f *fixture) approve(t testing.TB, id approval.ID, reach approval.Reach) {
	t.Helper()
	if _, err := f.svc.Decide(context.Background(), approval.Decision{ID: id, Approver: approval.Approver{Person: "alice@example.org"}, Approve: true, Reach: reach, Authorize: allow}); err != nil {
		t.Fatalf("Decide(approve %s) = %v", id, err)
	}
}

func (f *fixture) approved(t *testing.T, env string) []string {
	t.Helper()
	names, err := f.svc.Approved(context.Background(), "tsk_1", approval.Binding{Action: "tool.call", Resource: "ci/deploy", Arguments: json.RawMessage(`{"env":"` + env + `"}`)})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

func TestApprovalIsBoundToItsArgumentsAndUsedOnce(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, err := f.svc.Open(ctx, deploy("staging"))
	if err != nil {
		t.Fatal(err)
	}
	if got := f.approved(t, "staging"); got != nil {
		t.Fatalf("Approved(pending) = %v, want none", got)
	}
	f.approve(t, r.ID, approval.ReachOnce)
	if got := f.approved(t, "prod"); got != nil {
		t.Errorf("Approved(env=prod) after approving env=staging = %v, want none", got)
	}
	// Same arguments, other key order and spacing: the same canonical call.
	names, err := f.svc.Approved(ctx, "tsk_1", approval.Binding{Action: "tool.call", Resource: "ci/deploy", Arguments: json.RawMessage(`{ "env" : "staging" }`)})
	if err != nil || len(names) != 1 || names[0] != "step-up" {
		t.Fatalf("Approved(env=staging) = %v, %v; want [step-up]", names, err)
	}
	if got := f.approved(t, "staging"); got != nil {
		t.Errorf("Approved(env=staging) a second time = %v, want none (once)", got)
	}
	if n := f.rec.count(approval.TypeUsed); n != 1 {
		t.Errorf("%d approval.used events, want 1", n)
	}
	if _, err := f.svc.Approved(ctx, "tsk_2", approval.Binding{Action: "tool.call", Resource: "ci/deploy"}); err != nil {
		t.Fatal(err)
	}
	args, err := f.svc.Arguments(mustGet(t, f, r.ID))
	if err != nil || string(args) != `{"env":"staging"}` {
		t.Errorf("Arguments() = %s, %v; want the canonical arguments", args, err)
	}
	if string(mustGet(t, f, r.ID).Arguments) == `{"env":"staging"}` {
		t.Error("the stored arguments are not sealed")
	}
}

func mustGet(t *testing.T, f *fixture, id approval.ID) *approval.Request {
	t.Helper()
	r, err := f.svc.Get(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestTaskReachCoversAnyArguments(t *testing.T) {
	f := newFixture(t)
	r, err := f.svc.Open(context.Background(), deploy("staging"))
	if err != nil {
		t.Fatal(err)
	}
	f.approve(t, r.ID, approval.ReachTask)
	for range 3 {
		if got := f.approved(t, "prod"); len(got) != 1 {
			t.Fatalf("Approved(other arguments) under reach task = %v, want [step-up]", got)
		}
	}
}

func TestFloodFromOneTaskIsCoalescedAndLimited(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ids := map[approval.ID]bool{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			r, err := f.svc.Open(ctx, deploy("staging"))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[r.ID] = true
			mu.Unlock()
		})
	}
	wg.Wait()
	if len(ids) != 1 || f.rec.count(approval.TypeRequested) != 1 {
		t.Fatalf("50 identical calls opened %d requests (%d events), want 1", len(ids), f.rec.count(approval.TypeRequested))
	}
	// Distinct calls: at most the per-minute burst.
	var limited int
	for i := range 40 {
		if _, err := f.svc.Open(ctx, deploy(string(rune('a'+i%26))+string(rune('a'+i/26)))); errors.Is(err, approval.ErrRateLimited) {
			limited++
		}
	}
	if limited == 0 {
		t.Error("40 distinct requests from one task in an instant were not rate-limited")
	}
	o := deploy("x")
	o.Task = task.ID("tsk_other")
	if _, err := f.svc.Open(ctx, o); err != nil {
		t.Errorf("another task's request = %v, want opened (limits are per task)", err)
	}
}

func TestDecisionRefusals(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	who := approval.Approver{Person: "alice@example.org"}
	decide := func(id approval.ID, digest string) error {
		_, err := f.svc.Decide(ctx, approval.Decision{ID: id, Approver: who, Approve: true, Digest: digest, Authorize: allow})
		return err
	}
	if err := decide(approval.NewID(), ""); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("unknown: %v, want ErrNotFound", err)
	}
	r, _ := f.svc.Open(ctx, deploy("staging"))
	other, _ := f.svc.Digest(json.RawMessage(`{"env":"prod"}`))
	if err := decide(r.ID, other); !errors.Is(err, approval.ErrDigestMismatch) {
		t.Errorf("other digest: %v, want ErrDigestMismatch", err)
	}
	if _, err := f.svc.Decide(ctx, approval.Decision{ID: r.ID, Approver: who, Approve: true, Authorize: func(context.Context, *approval.Request) error {
		return approval.ErrForbidden
	}}); !errors.Is(err, approval.ErrForbidden) {
		t.Errorf("forbidden: %v, want ErrForbidden", err)
	}
	if err := decide(r.ID, r.ArgsDigest); err != nil {
		t.Fatalf("approve: %v", err)
	}
	if err := decide(r.ID, ""); !errors.Is(err, approval.ErrDecided) {
		t.Errorf("decided: %v, want ErrDecided", err)
	}
	late, _ := f.svc.Open(ctx, deploy("late"))
	f.clock.add(11 * time.Minute)
	if err := decide(late.ID, ""); !errors.Is(err, approval.ErrExpired) {
		t.Errorf("expired: %v, want ErrExpired", err)
	}
	changed, _ := f.svc.Open(ctx, deploy("changed"))
	f.mu.Lock()
	f.version = "v2"
	f.mu.Unlock()
	if err := decide(changed.ID, ""); !errors.Is(err, approval.ErrPolicyChanged) {
		t.Errorf("policy changed: %v, want ErrPolicyChanged", err)
	}
	if n := f.rec.count(approval.TypeRefused); n < 5 {
		t.Errorf("%d approval.refused events, want every refusal recorded (>= 5)", n)
	}
}

func TestPolicyChangeInvalidatesApproval(t *testing.T) {
	f := newFixture(t)
	r, _ := f.svc.Open(context.Background(), deploy("staging"))
	f.approve(t, r.ID, approval.ReachTask)
	f.mu.Lock()
	f.version = "v2"
	f.mu.Unlock()
	if got := f.approved(t, "staging"); got != nil {
		t.Fatalf("Approved() after the policy changed = %v, want none", got)
	}
	if st := mustGet(t, f, r.ID).Status; st != approval.StatusExpired {
		t.Errorf("status after the policy changed = %s, want expired", st)
	}
}

func TestWaitWakesOnDecisionAndExpiry(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	r, _ := f.svc.Open(ctx, deploy("staging"))
	done := make(chan *approval.Request)
	go func() {
		got, _ := f.svc.Wait(ctx, r.ID)
		done <- got
	}()
	time.Sleep(10 * time.Millisecond)
	f.approve(t, r.ID, approval.ReachOnce)
	select {
	case got := <-done:
		if got.Status != approval.StatusApproved || got.Decider != "alice@example.org" {
			t.Errorf("Wait() = %s by %s, want approved by alice", got.Status, got.Decider)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait() did not return after the approval")
	}
	late, _ := f.svc.Open(ctx, deploy("late"))
	f.clock.add(11 * time.Minute)
	got, err := f.svc.Wait(ctx, late.ID)
	if err != nil || got.Status != approval.StatusExpired {
		t.Errorf("Wait(overdue) = %v, %v; want expired", got.Status, err)
	}
}
