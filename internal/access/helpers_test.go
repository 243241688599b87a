package access_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

const issuer = "https://mandate.test"

// memRecorder records events in memory; fail makes Record fail. latency,
// set before any decision, makes each Record take that long, as a durable
// write does, so that concurrent decisions overlap as they do in a server.
type memRecorder struct {
	latency time.Duration

	mu   sync.Mutex
	evs  []audit.Event
	fail bool
}

var _ audit.Recorder = (*memRecorder)(nil)

func (m *memRecorder) Record(_ context.Context, ev audit.Event) error {
	time.Sleep(m.latency)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return audit.ErrUnavailable
	}
	m.evs = append(m.evs, ev)
	return nil
}

func (m *memRecorder) events() []audit.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]audit.Event(nil), m.evs...)
}

func (m *memRecorder) last(t testing.TB) audit.Event {
	t.Helper()
	evs := m.events()
	if len(evs) == 0 {
		t.Fatal("no event recorded")
	}
	return evs[len(evs)-1]
}

type fixture struct {
	backend  store.Backend
	keyring  *token.Keyring
	rev      *token.Revocations
	verifier *token.Verifier
	rec      *memRecorder
	engine   *policy.Engine
	pipeline *access.Pipeline
	now      time.Time
}

// fixtureMaxDepth is the fixture pipeline's delegation depth limit.
const fixtureMaxDepth = 3

type fixtureOpts struct {
	shadow     *policy.Engine
	classifier policy.ClassifierConfig
}

func newFixture(t testing.TB, o fixtureOpts) *fixture {
	t.Helper()
	ctx := context.Background()
	backend, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "mandate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })
	f := &fixture{backend: backend, rec: &memRecorder{}, now: time.Now()}
	if f.keyring, err = token.NewKeyring(ctx, token.KeyringConfig{Store: backend, Sealer: sealtest.Keyring()}); err != nil {
		t.Fatal(err)
	}
	f.rev = token.NewRevocations(nil)
	if f.verifier, err = token.NewVerifier(token.VerifierConfig{
		Keyring: f.keyring, Revocations: f.rev, DPoP: token.NewDPoPVerifier(token.DPoPConfig{Store: backend}),
		Issuer: issuer, Audience: issuer,
	}); err != nil {
		t.Fatal(err)
	}
	set, err := policy.Compile(policy.DefaultSources())
	if err != nil {
		t.Fatal(err)
	}
	f.engine = policy.NewEngine(set, nil)
	cls, err := policy.NewClassifier(o.classifier)
	if err != nil {
		t.Fatal(err)
	}
	if f.pipeline, err = access.New(access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: backend, Agents: backend,
		Engine: f.engine, Shadow: o.shadow, Classifier: cls, Recorder: f.rec, MaxDelegationDepth: fixtureMaxDepth,
	}); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) agent(t testing.TB, name string, tier identity.Tier) identity.ID {
	t.Helper()
	id := identity.MustParseID("spiffe://example.org/agent/" + name)
	a := &identity.Agent{ID: id, Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: tier,
		Status: identity.StatusActive, Labels: map[string]string{"team": "infra"}, CreatedAt: f.now, UpdatedAt: f.now}
	if err := f.backend.CreateAgent(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	return id
}

type taskOpts struct {
	scope  string
	sens   task.Sensitivity
	budget task.Budget
	parent *task.Task
	ttl    time.Duration // default an hour
}

func (f *fixture) task(t testing.TB, agent identity.ID, o taskOpts) *task.Task {
	t.Helper()
	sc, err := task.ParseScope(o.scope)
	if err != nil {
		t.Fatal(err)
	}
	if o.sens == "" {
		o.sens = task.SensitivityConfidential
	}
	if o.ttl == 0 {
		o.ttl = time.Hour
	}
	tk := &task.Task{ID: task.NewID(), Agent: agent, OnBehalfOf: "alice@example.org", Principal: "alice@example.org",
		Purpose: "fix the build", Scope: sc, Sensitivity: o.sens, Budget: o.budget, Status: task.StatusActive,
		Actors: []identity.ID{agent}, CreatedAt: f.now, ExpiresAt: f.now.Add(o.ttl)}
	if o.parent != nil {
		tk.Parent, tk.Depth = o.parent.ID, o.parent.Depth+1
		tk.Actors = append(append([]identity.ID{}, o.parent.Actors...), agent)
		tk.OnBehalfOf = "task:" + string(o.parent.ID)
	}
	if err := f.backend.CreateTask(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	return tk
}

// token signs a task token for tk.
func (f *fixture) token(t testing.TB, tk *task.Task) string {
	t.Helper()
	return f.scopedToken(t, tk, tk.Scope.String())
}

// scopedToken signs a task token for tk whose scope claim is scope.
func (f *fixture) scopedToken(t testing.TB, tk *task.Task, scope string) string {
	t.Helper()
	actors := make([]string, len(tk.Actors))
	for i, a := range tk.Actors {
		actors[i] = a.String()
	}
	c := &token.Claims{
		Issuer: issuer, Subject: tk.Principal, Audience: jwt.Audience{issuer},
		Expiry: jwt.NewNumericDate(f.now.Add(10 * time.Minute)), IssuedAt: jwt.NewNumericDate(f.now),
		ID: "jti-" + string(tk.ID), ClientID: tk.Agent.String(), Scope: scope, TaskID: string(tk.ID),
		Use: token.UseTask, Act: token.ActorChain(actors),
	}
	s, err := f.keyring.Sign(c)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (f *fixture) decide(t testing.TB, tok string, act access.Action) (access.Decision, error) {
	t.Helper()
	return f.pipeline.Decide(context.Background(), access.Credential{Token: tok}, act)
}

func isErr(err, target error) bool { return errors.Is(err, target) }
