package access_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

func TestDecideTiers(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{classifier: policy.ClassifierConfig{
		Risks: []policy.RiskRule{{Match: "tool.call:ci/deploy", Risk: policy.RiskPrivileged}},
	}})
	scope := "file.*:/repo/** tool.call:ci/* http.request:api.example.com"
	tests := []struct {
		tier identity.Tier
		act  access.Action
		want policy.Effect
	}{
		{identity.TierAssist, access.Action{Kind: "file.read", Resource: "/repo/a.go"}, policy.Allow},
		{identity.TierAssist, access.Action{Kind: "file.write", Resource: "/repo/a.go"}, policy.Deny},
		{identity.TierSupervised, access.Action{Kind: "file.write", Resource: "/repo/a.go"}, policy.ApprovalRequired},
		{identity.TierSupervised, access.Action{Kind: "file.write", Resource: "/repo/a.go", Approvals: []string{"supervised-write"}, Trusted: true}, policy.Allow},
		// An agent cannot approve its own action.
		{identity.TierSupervised, access.Action{Kind: "file.write", Resource: "/repo/a.go", Approvals: []string{"supervised-write"}}, policy.ApprovalRequired},
		{identity.TierAutonomous, access.Action{Kind: "file.write", Resource: "/repo/a.go"}, policy.Allow},
		{identity.TierAutonomous, access.Action{Kind: "file.write", Resource: "/etc/passwd"}, policy.Deny},
		{identity.TierAutonomous, access.Action{Kind: "tool.call", Resource: "ci/deploy", Server: "ci"}, policy.ApprovalRequired},
		{identity.TierAutonomous, access.Action{Kind: "http.request", Resource: "api.example.com", Destination: policy.Destination{Host: "api.example.com", Method: "POST", Path: "/"}}, policy.Allow},
		// An agent may not declare its own tool read-only...
		{identity.TierAutonomous, access.Action{Kind: "tool.call", Resource: "ci/lint", Server: "ci", Annotations: &policy.ToolAnnotations{ReadOnlyHint: ptr(true)}}, policy.ApprovalRequired},
		// ...an enforcement point may.
		{identity.TierAssist, access.Action{Kind: "tool.call", Resource: "ci/lint", Server: "ci", Trusted: true, Annotations: &policy.ToolAnnotations{ReadOnlyHint: ptr(true)}}, policy.Allow},
	}
	for i, tt := range tests {
		a := f.agent(t, "agent"+string(rune('a'+i)), tt.tier)
		tk := f.task(t, a, taskOpts{scope: scope})
		d, err := f.decide(t, f.token(t, tk), tt.act)
		if err != nil {
			t.Fatalf("%d: Decide: %v", i, err)
		}
		if d.Effect != tt.want {
			t.Errorf("%d: %s %s %s: Decide = %s (%+v), want %s", i, tt.tier, tt.act.Kind, tt.act.Resource, d.Effect, d.Reasons, tt.want)
		}
		ev := f.rec.last(t)
		if ev.Type != access.TypeDecided || ev.Decision != string(tt.want) || ev.Task != string(tk.ID) || ev.Agent != a.String() || ev.Action != tt.act.Kind {
			t.Errorf("%d: event %+v does not describe the decision", i, ev)
		}
	}
}

func ptr[T any](v T) *T { return &v }

func TestDecideAuthentication(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	a := f.agent(t, "a", identity.TierAutonomous)
	tk := f.task(t, a, taskOpts{scope: "file.read"})
	act := access.Action{Kind: "file.read", Resource: "/x"}
	for name, tok := range map[string]string{"empty": "", "garbage": "not.a.jwt"} {
		d, err := f.decide(t, tok, act)
		if !isErr(err, access.ErrUnauthenticated) || d.Effect != policy.Deny {
			t.Errorf("%s token: Decide = %s, %v; want deny, ErrUnauthenticated", name, d.Effect, err)
		}
		if ev := f.rec.last(t); ev.Decision != "deny" || ev.Type != access.TypeDecided {
			t.Errorf("%s token: event %+v, want a deny", name, ev)
		}
	}
	tok := f.token(t, tk)
	if d, err := f.decide(t, tok, act); err != nil || d.Effect != policy.Allow {
		t.Fatalf("Decide = %s, %v", d.Effect, err)
	}
	// Revoking the task stops it at once.
	f.rev.RevokeTasks(tk.ID)
	if d, err := f.decide(t, tok, act); !isErr(err, access.ErrUnauthenticated) || d.Effect != policy.Deny {
		t.Errorf("revoked: Decide = %s, %v", d.Effect, err)
	}
	// DecideFor (enforcement point) checks revocation too.
	if d, err := f.pipeline.DecideFor(context.Background(), tk.ID, a.String(), act); !isErr(err, access.ErrUnauthenticated) || d.Effect != policy.Deny {
		t.Errorf("revoked DecideFor: Decide = %s, %v", d.Effect, err)
	}
	// A task named for the wrong agent is refused.
	b := f.agent(t, "b", identity.TierAutonomous)
	tk2 := f.task(t, b, taskOpts{scope: "file.read"})
	if d, err := f.pipeline.DecideFor(context.Background(), tk2.ID, a.String(), act); !isErr(err, access.ErrUnauthenticated) || d.Effect != policy.Deny {
		t.Errorf("wrong agent DecideFor: %s, %v", d.Effect, err)
	}
	if d, err := f.pipeline.DecideFor(context.Background(), tk2.ID, b.String(), act); err != nil || d.Effect != policy.Allow {
		t.Errorf("DecideFor: %s, %v", d.Effect, err)
	}
}

func TestDecideInvalidAction(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "*"})
	for _, act := range []access.Action{{Kind: "file.delete", Resource: "/x"}, {Kind: "file.read"}, {Kind: "task.delegate", Resource: "spiffe://example.org/agent/b"}} {
		d, err := f.decide(t, f.token(t, tk), act)
		if err == nil || d.Effect != policy.Deny {
			t.Errorf("Decide(%+v) = %s, %v; want deny with an error", act, d.Effect, err)
		}
	}
}

// TestScopeBoundsEverything: the pipeline denies out-of-scope actions and
// actions beyond the budget even if the policies would allow them.
func TestScopeBoundsEverything(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	set, err := policy.Compile([]policy.Source{{Name: "open.cedar", Text: []byte(`permit(principal, action, resource);`)}})
	if err != nil {
		t.Fatal(err)
	}
	f.engine.Swap(set)
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "file.read:/repo/**"})
	d, err := f.decide(t, f.token(t, tk), access.Action{Kind: "file.write", Resource: "/repo/a"})
	if err != nil || d.Effect != policy.Deny || d.Reasons[0].Policy != access.PolicyTaskScope {
		t.Errorf("Decide = %+v, %v; want deny by mandate:task-scope", d, err)
	}
	d, err = f.decide(t, f.scopedToken(t, tk, "file.read:/repo/docs/**"), access.Action{Kind: "file.read", Resource: "/repo/a"})
	if err != nil || d.Effect != policy.Deny || d.Reasons[0].Policy != access.PolicyTokenScope {
		t.Errorf("Decide = %+v, %v; want deny by mandate:token-scope", d, err)
	}
	tk = f.task(t, f.agent(t, "b", identity.TierAutonomous), taskOpts{scope: "*", budget: task.Budget{MaxWrites: 1}})
	tok := f.token(t, tk)
	for i, want := range []policy.Effect{policy.Allow, policy.Deny} {
		d, err := f.decide(t, tok, access.Action{Kind: "file.write", Resource: "/repo/a"})
		if err != nil || d.Effect != want {
			t.Errorf("write %d: Decide = %+v, %v; want %s", i, d, err, want)
		}
		if want == policy.Deny && d.Reasons[0].Policy != "mandate:budget" {
			t.Errorf("write %d: reasons %+v, want mandate:budget", i, d.Reasons)
		}
	}
}

func TestAuditFailureDenies(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "*"})
	f.rec.fail = true
	d, err := f.decide(t, f.token(t, tk), access.Action{Kind: "file.read", Resource: "/repo/a"})
	if !isErr(err, audit.ErrUnavailable) || d.Effect != policy.Deny {
		t.Errorf("Decide with a failing recorder = %s, %v; want deny, audit.ErrUnavailable", d.Effect, err)
	}
}

func TestBudget(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "*", budget: task.Budget{MaxActions: 3, MaxWrites: 1}})
	tok := f.token(t, tk)
	want := []policy.Effect{policy.Allow, policy.Deny, policy.Allow, policy.Deny}
	acts := []access.Action{
		{Kind: "file.write", Resource: "/a"}, // write 1/1, action 1/3
		{Kind: "file.write", Resource: "/b"}, // writes spent
		{Kind: "file.read", Resource: "/c"},  // action 2/3... denied writes don't count
		{Kind: "file.read", Resource: "/d"},  // action 3/3 was the previous: spent? see below
	}
	// Actions: write(allowed)=1, write(denied)=not counted, read=2, read=3 allowed.
	want[3] = policy.Allow
	for i, act := range acts {
		d, err := f.decide(t, tok, act)
		if err != nil || d.Effect != want[i] {
			t.Errorf("action %d: Decide = %s (%+v), %v; want %s", i, d.Effect, d.Reasons, err, want[i])
		}
	}
	if d, _ := f.decide(t, tok, access.Action{Kind: "file.read", Resource: "/e"}); d.Effect != policy.Deny || d.Reasons[0].Policy != "budget" {
		t.Errorf("4th action: Decide = %+v, want deny by budget", d)
	}
}

// TestTaint: once a task (or its delegate) reads restricted data, external
// sends are denied for it and for the tasks in its delegation chain.
func TestTaint(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{classifier: policy.ClassifierConfig{
		Resources: []policy.ResourceRule{{Match: "file.*:/vault/**", Sensitivity: "restricted"}},
	}})
	a := f.agent(t, "a", identity.TierAutonomous)
	b := f.agent(t, "b", identity.TierAutonomous)
	parent := f.task(t, a, taskOpts{scope: "*", sens: task.SensitivityRestricted})
	child := f.task(t, b, taskOpts{scope: "*", sens: task.SensitivityRestricted, parent: parent})
	ptok, ctok := f.token(t, parent), f.token(t, child)
	send := access.Action{Kind: "http.request", Resource: "paste.example.com", Destination: policy.Destination{Host: "paste.example.com", Method: "POST", Path: "/"}}
	if d, _ := f.decide(t, ptok, send); d.Effect != policy.Allow {
		t.Fatalf("clean send: %+v", d)
	}
	if d, _ := f.decide(t, ctok, access.Action{Kind: "file.read", Resource: "/vault/key"}); d.Effect != policy.Allow {
		t.Fatalf("child restricted read: %+v", d)
	}
	if got, err := f.backend.GetTask(context.Background(), child.ID); err != nil || got.Taint != task.SensitivityRestricted {
		t.Errorf("stored taint of the child = %+v, %v; want restricted", got, err)
	}
	for name, tok := range map[string]string{"child": ctok, "parent": ptok} {
		d, _ := f.decide(t, tok, send)
		if d.Effect != policy.Deny || d.Reasons[0].Policy != "taint-no-exfiltration" {
			t.Errorf("%s send after the read: %+v, want deny by taint-no-exfiltration", name, d)
		}
		if ev := f.rec.last(t); ev.Details["taint"] != "restricted" {
			t.Errorf("%s: event details %v lack the taint", name, ev.Details)
		}
	}
}

// A delegation is decided like any action: the depth limit is the
// pipeline's one limit, the delegate's tier comes from its record.
func TestDelegationDepth(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	helper := f.agent(t, "helper", identity.TierAssist)
	var tasks []*task.Task
	for i := range fixtureMaxDepth + 1 {
		o := taskOpts{scope: "*"}
		if i > 0 {
			o.parent = tasks[i-1]
		}
		tasks = append(tasks, f.task(t, f.agent(t, fmt.Sprintf("d%d", i), identity.TierAutonomous), o))
	}
	for i, tk := range tasks {
		d, err := f.decide(t, f.token(t, tk), access.Action{Kind: "task.delegate", Resource: helper.String()})
		want := policy.Allow
		if i >= fixtureMaxDepth {
			want = policy.Deny
		}
		if err != nil || d.Effect != want {
			t.Errorf("depth %d: Decide = %s (%+v), %v; want %s", i, d.Effect, d.Reasons, err, want)
		}
		ev := f.rec.last(t)
		if len(ev.Chain) != i+1 {
			t.Errorf("depth %d: event chain %v", i, ev.Chain)
		}
		if want == policy.Deny && !strings.Contains(ev.Details["policies"], "delegation-depth") {
			t.Errorf("depth %d: denied by %q, want the depth limit", i, ev.Details["policies"])
		}
	}
}

func TestDelegationIsDecided(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	boss := f.agent(t, "boss", identity.TierAutonomous)
	peer := f.agent(t, "peer", identity.TierSupervised)
	supervised := f.task(t, f.agent(t, "sup", identity.TierSupervised), taskOpts{scope: "*"})
	assist := f.task(t, f.agent(t, "asst", identity.TierAssist), taskOpts{scope: "*"})
	narrow := f.task(t, f.agent(t, "narrow", identity.TierAutonomous), taskOpts{scope: "file.read:/repo/**"})
	auto := f.task(t, f.agent(t, "auto", identity.TierAutonomous), taskOpts{scope: "task.delegate:spiffe://example.org/agent/peer"})
	suspended := f.agent(t, "gone", identity.TierAssist)
	f.rev.SetAgentActive(suspended, false)
	for _, tc := range []struct {
		name   string
		tk     *task.Task
		act    access.Action
		want   policy.Effect
		policy string
	}{
		{"up a tier", supervised, access.Action{Kind: "task.delegate", Resource: boss.String(), Approvals: []string{"supervised-write"}, Trusted: true}, policy.Deny, "delegation-no-escalation"},
		// The caller cannot lower the delegate's tier.
		{"assist cannot delegate", assist, access.Action{Kind: "task.delegate", Resource: peer.String()}, policy.Deny, ""},
		{"no task.delegate in scope", narrow, access.Action{Kind: "task.delegate", Resource: peer.String()}, policy.Deny, "task-scope"},
		{"scope names the delegate", auto, access.Action{Kind: "task.delegate", Resource: peer.String()}, policy.Allow, ""},
		{"scope names another delegate", auto, access.Action{Kind: "task.delegate", Resource: boss.String()}, policy.Deny, "task-scope"},
		{"unknown delegate", auto, access.Action{Kind: "task.delegate", Resource: "spiffe://example.org/agent/nobody"}, policy.Deny, ""},
		{"suspended delegate", supervised, access.Action{Kind: "task.delegate", Resource: suspended.String()}, policy.Deny, ""},
		{"not an agent", auto, access.Action{Kind: "task.delegate", Resource: "peer"}, policy.Deny, ""},
	} {
		d, _ := f.decide(t, f.token(t, tc.tk), tc.act)
		if d.Effect != tc.want {
			t.Errorf("%s: %s (%+v %v), want %s", tc.name, d.Effect, d.Reasons, d.Errors, tc.want)
			continue
		}
		ev := f.rec.last(t)
		if ev.Action != "task.delegate" || ev.Decision != string(tc.want) || !strings.Contains(ev.Details["policies"], tc.policy) {
			t.Errorf("%s: event %+v, want %s by %q", tc.name, ev, tc.want, tc.policy)
		}
	}
}

// TestShadow: a candidate set is evaluated beside the live one; requests
// it would decide differently are recorded, and the live decision stands.
func TestShadow(t *testing.T) {
	t.Parallel()
	cand, err := policy.Compile(append(policy.DefaultSources(), policy.Source{Name: "candidate.cedar",
		Text: []byte(`@id("no-writes") @reason("candidate: no writes") forbid(principal, action == Action::"file.write", resource);`)}))
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, fixtureOpts{shadow: policy.NewEngine(cand, nil)})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "*"})
	tok := f.token(t, tk)
	if d, _ := f.decide(t, tok, access.Action{Kind: "file.read", Resource: "/a"}); d.Effect != policy.Allow {
		t.Fatal(d)
	}
	if n := len(f.rec.events()); n != 1 {
		t.Errorf("same decision: %d events, want 1 (no shadow difference)", n)
	}
	if d, _ := f.decide(t, tok, access.Action{Kind: "file.write", Resource: "/a"}); d.Effect != policy.Allow {
		t.Fatalf("live decision must stand: %+v", d)
	}
	ev := f.rec.last(t)
	if ev.Type != access.TypeShadowDiffers || ev.Decision != "allow" || ev.Details["shadow_decision"] != "deny" || ev.Details["shadow_policies"] != "no-writes" {
		t.Errorf("shadow event = %+v", ev)
	}
}

type fakeApprovals struct{ granted map[string][]string }

func (f fakeApprovals) Approved(_ context.Context, id task.ID, act access.Action) ([]string, error) {
	return f.granted[act.Resource], nil
}

// TestApprovalLifted: an approval granted for exactly this action (by the
// approval service) lifts the step-up forbid; others stay held.
func TestApprovalLifted(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{classifier: policy.ClassifierConfig{Risks: []policy.RiskRule{{Match: "tool.call:ci/*", Risk: policy.RiskPrivileged}}}})
	p, err := access.New(access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend, Engine: f.engine,
		Classifier: mustClassifier(t, policy.ClassifierConfig{Risks: []policy.RiskRule{{Match: "tool.call:ci/*", Risk: policy.RiskPrivileged}}}),
		Recorder:   f.rec, Approvals: fakeApprovals{granted: map[string][]string{"ci/deploy-staging": {"step-up"}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "tool.call:ci/*"})
	cred := access.Credential{Token: f.token(t, tk)}
	d, _ := p.Decide(context.Background(), cred, access.Action{Kind: "tool.call", Resource: "ci/deploy-staging", Server: "ci"})
	if d.Effect != policy.Allow || len(d.Obligations) == 0 {
		t.Errorf("approved action: %+v, want allow with obligations", d)
	}
	d, _ = p.Decide(context.Background(), cred, access.Action{Kind: "tool.call", Resource: "ci/deploy-prod", Server: "ci"})
	if d.Effect != policy.ApprovalRequired || d.Approvals[0] != "step-up" {
		t.Errorf("unapproved action: %+v, want approval_required", d)
	}
	if ev := f.rec.last(t); ev.Decision != "approval_required" || ev.Details["approvals"] != "step-up" {
		t.Errorf("event = %+v", ev)
	}
}

func mustClassifier(t testing.TB, cfg policy.ClassifierConfig) *policy.Classifier {
	t.Helper()
	c, err := policy.NewClassifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestBudgetSurvivesRestart: usage counted by one pipeline is flushed to
// the task store, shows in the task record, and binds a new pipeline (a
// restarted server) on the same store.
func TestBudgetSurvivesRestart(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "*", budget: task.Budget{MaxActions: 2, MaxWrites: 1}})
	tok := f.token(t, tk)
	for _, act := range []access.Action{{Kind: "file.write", Resource: "/a"}, {Kind: "file.read", Resource: "/b"}} {
		if d, err := f.decide(t, tok, act); err != nil || d.Effect != policy.Allow {
			t.Fatalf("Decide(%s) = %s, %v; want allow", act.Kind, d.Effect, err)
		}
	}
	if err := f.pipeline.FlushUsage(t.Context()); err != nil {
		t.Fatal(err)
	}
	stored, err := f.backend.GetTask(t.Context(), tk.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := (task.Usage{Actions: 2, Writes: 1}); stored.Used != want {
		t.Fatalf("stored usage = %+v, want %+v", stored.Used, want)
	}
	// Flushing again adds nothing.
	if err := f.pipeline.FlushUsage(t.Context()); err != nil {
		t.Fatal(err)
	}
	if again, _ := f.backend.GetTask(t.Context(), tk.ID); again.Used != stored.Used {
		t.Fatalf("second flush changed usage to %+v", again.Used)
	}

	restarted, err := access.New(access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend,
		Engine: f.engine, Recorder: f.rec,
	})
	if err != nil {
		t.Fatal(err)
	}
	d, err := restarted.Decide(t.Context(), access.Credential{Token: tok}, access.Action{Kind: "file.read", Resource: "/c"})
	if err != nil || d.Effect != policy.Deny || len(d.Reasons) == 0 || !strings.HasSuffix(d.Reasons[0].Policy, "budget") {
		t.Fatalf("after restart: Decide = %s %+v, %v; want deny by the budget", d.Effect, d.Reasons, err)
	}
}
