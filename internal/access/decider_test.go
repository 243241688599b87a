package access_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// A subject authenticated before a revocation (the gateway and AuthZEN
// batches authenticate once, then decide many actions) is refused after
// it, although the task and agent records are cached for CacheTTL.
func TestRevokedSubjectRefusedDespiteCache(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	act := access.Action{Kind: "file.read", Resource: "/repo/a.go"}
	for _, tc := range []struct {
		name   string
		revoke func(f *fixture, parent, child *task.Task)
	}{
		{"task revoked", func(f *fixture, _, child *task.Task) { f.rev.RevokeTasks(child.ID) }},
		{"agent suspended", func(f *fixture, _, child *task.Task) { f.rev.SetAgentActive(child.Agent, false) }},
		// The delegator's suspension stops its delegates.
		{"delegator suspended", func(f *fixture, parent, _ *task.Task) { f.rev.SetAgentActive(parent.Agent, false) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOpts{})
			parent := f.task(t, f.agent(t, "lead", identity.TierAutonomous), taskOpts{scope: "file.read:/repo/**"})
			child := f.task(t, f.agent(t, "helper", identity.TierAutonomous), taskOpts{scope: "file.read:/repo/**", parent: parent})
			subj, err := f.pipeline.Authenticate(ctx, access.Credential{Token: f.token(t, child)}, act)
			if err != nil {
				t.Fatal(err)
			}
			if d, err := f.pipeline.DecideAs(ctx, subj, act); err != nil || !d.Allowed() {
				t.Fatalf("before the revocation: %s, %v", d.Effect, err)
			}
			tc.revoke(f, parent, child)
			for name, decide := range map[string]func() (access.Decision, error){
				"DecideAs":  func() (access.Decision, error) { return f.pipeline.DecideAs(ctx, subj, act) },
				"DecideFor": func() (access.Decision, error) { return f.pipeline.DecideFor(ctx, child.ID, child.Agent.String(), act) },
			} {
				d, err := decide()
				if d.Allowed() || !isErr(err, access.ErrUnauthenticated) {
					t.Errorf("%s after the revocation = %s, %v; want a deny with ErrUnauthenticated", name, d.Effect, err)
				}
				if ev := f.rec.last(t); ev.Decision != "deny" || ev.Task != string(child.ID) || !strings.Contains(ev.Reason, "no longer active") {
					t.Errorf("%s: event %+v does not record the refusal", name, ev)
				}
			}
		})
	}
}

// readerSubject is an autonomous agent's task scoped to file.read:/repo/**,
// authenticated once, and a read it may do.
func readerSubject(t *testing.T) (*fixture, *task.Task, access.Subject, access.Action) {
	t.Helper()
	f := newFixture(t, fixtureOpts{})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "file.read:/repo/**"})
	act := access.Action{Kind: "file.read", Resource: "/repo/a.go"}
	subj, err := f.pipeline.Authenticate(context.Background(), access.Credential{Token: f.token(t, tk)}, act)
	if err != nil {
		t.Fatal(err)
	}
	return f, tk, subj, act
}

// No allow is recorded after a revocation has returned, however the
// decisions in flight interleave with it.
func TestRevocationRacesDecisions(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, tk, subj, act := readerSubject(t)
	var (
		wg      sync.WaitGroup
		stop    atomic.Bool
		allowed atomic.Int64
	)
	for range 32 {
		wg.Go(func() {
			for !stop.Load() {
				if d, _ := f.pipeline.DecideAs(ctx, subj, act); d.Allowed() {
					allowed.Add(1)
				}
			}
		})
	}
	// Let the deciders get going (bounded: the test stops by itself).
	for deadline := time.Now().Add(10 * time.Second); allowed.Load() < 200; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			stop.Store(true)
			wg.Wait()
			t.Fatalf("only %d allows before the revocation", allowed.Load())
		}
	}
	f.rev.RevokeTasks(tk.ID)
	recordedAtRevoke := len(f.rec.events())
	for range 200 { // keep deciding past the revocation
		if d, _ := f.pipeline.DecideAs(ctx, subj, act); d.Allowed() {
			t.Fatal("an allow was decided after the revocation returned")
		}
	}
	stop.Store(true)
	wg.Wait()
	for i, ev := range f.rec.events()[recordedAtRevoke:] {
		if ev.Decision != "deny" {
			t.Fatalf("event %d after the revocation returned is %q: %+v", recordedAtRevoke+i, ev.Decision, ev)
		}
	}
}

// However many decisions race for the last actions of a budget, exactly
// the budget is allowed.
func TestBudgetHoldsUnderConcurrency(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, b := range []struct {
		name   string
		budget task.Budget
		act    access.Action
	}{
		{"actions", task.Budget{MaxActions: 10}, access.Action{Kind: "file.read", Resource: "/repo/a.go"}},
		{"writes", task.Budget{MaxWrites: 10}, access.Action{Kind: "file.write", Resource: "/repo/a.go"}},
	} {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			f := newFixture(t, fixtureOpts{})
			f.rec.latency = time.Millisecond
			tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "file.*:/repo/**", budget: b.budget})
			subj, err := f.pipeline.Authenticate(ctx, access.Credential{Token: f.token(t, tk)}, b.act)
			if err != nil {
				t.Fatal(err)
			}
			var (
				wg      sync.WaitGroup
				start   = make(chan struct{})
				allowed atomic.Int64
			)
			for range 64 {
				wg.Go(func() {
					<-start
					for range 4 {
						if d, _ := f.pipeline.DecideAs(ctx, subj, b.act); d.Allowed() {
							allowed.Add(1)
						}
					}
				})
			}
			close(start)
			wg.Wait()
			if n := allowed.Load(); n != 10 {
				t.Fatalf("%d of 256 concurrent decisions allowed against a budget of 10", n)
			}
			denied := 0
			for _, ev := range f.rec.events() {
				// The shipped policies' "budget" guard denies once the count
				// it is shown is spent; the pipeline's reservation denies the
				// decisions that raced past it.
				if p := ev.Details["policies"]; ev.Decision == "deny" && (p == access.PolicyBudget || p == "budget") {
					denied++
				}
			}
			if denied != 256-10 {
				t.Errorf("%d budget denials recorded, want %d", denied, 256-10)
			}
		})
	}
}

// A token exchanged down to a narrower scope is held to it: the task's
// wider scope does not let it through.
func TestTokenScopeNarrowsTask(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "file.read:/repo/**"})
	narrow := f.scopedToken(t, tk, "file.read:/repo/docs/**")
	// The policies see the intersection as context.in_scope (the shipped
	// "task-scope" guard denies on it); the pipeline denies by itself too.
	for _, tc := range []struct {
		token, resource string
		want            policy.Effect
	}{
		{narrow, "/repo/docs/guide.md", policy.Allow},
		{narrow, "/repo/secrets/key.pem", policy.Deny},
		{narrow, "/repo/docs", policy.Deny},
		{f.token(t, tk), "/repo/secrets/key.pem", policy.Allow},
		// A token wider than its task (which the server never issues) is
		// held to the task.
		{f.scopedToken(t, tk, "file.read:/**"), "/etc/passwd", policy.Deny},
	} {
		d, err := f.decide(t, tc.token, access.Action{Kind: "file.read", Resource: tc.resource})
		if err != nil || d.Effect != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.resource, d.Effect, err, tc.want)
			continue
		}
		ev := f.rec.last(t)
		if ev.Decision != string(tc.want) || ev.Details["in_scope"] != fmt.Sprint(tc.want == policy.Allow) {
			t.Errorf("%s: event %+v, want %s with in_scope %t", tc.resource, ev, tc.want, tc.want == policy.Allow)
		}
	}
	for _, bad := range []string{"", "file.read:/repo/../etc/**", "not a scope"} {
		d, err := f.decide(t, f.scopedToken(t, tk, bad), access.Action{Kind: "file.read", Resource: "/repo/docs/a.md"})
		if d.Allowed() {
			t.Errorf("token scope %q: allowed (%v)", bad, err)
		}
	}
}

func ExamplePolicyTokenScope() {
	fmt.Println(access.PolicyTokenScope)
	// Output: mandate:token-scope
}

// A resumed agent acts again at once: its status comes from the live
// revocation state, not from a cached record.
func TestResumedAgentActsAtOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	f, tk, subj, act := readerSubject(t)
	for i, active := range []bool{false, true, false, true} {
		f.rev.SetAgentActive(tk.Agent, active)
		if d, _ := f.pipeline.DecideAs(ctx, subj, act); d.Allowed() != active {
			t.Errorf("step %d: agent active=%v, decision %s", i, active, d.Effect)
		}
	}
}
