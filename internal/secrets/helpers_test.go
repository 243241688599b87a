package secrets_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
	"github.com/mandatehq/mandate/internal/token"
)

// tee records into the real ledger and keeps every event, so that a test
// can search all of them; fail makes Record fail.
type tee struct {
	ledger *audit.Ledger
	mu     sync.Mutex
	evs    []audit.Event
	fail   atomic.Bool
}

func (r *tee) Record(ctx context.Context, ev audit.Event) error {
	if r.fail.Load() {
		return audit.ErrUnavailable
	}
	if err := r.ledger.Record(ctx, ev); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, ev)
	return nil
}

func (r *tee) ofType(typ audit.Type) []audit.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Event
	for _, ev := range r.evs {
		if ev.Type == typ {
			out = append(out, ev)
		}
	}
	return out
}

// text is every recorded event as JSON.
func (r *tee) text(t testing.TB) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := json.Marshal(r.evs)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lateLeases lets the lifecycle be built before the broker, as the
// server does.
type lateLeases struct {
	b atomic.Pointer[secrets.Broker]
}

func (l *lateLeases) TasksStopped(ctx context.Context, ids []task.ID) {
	if b := l.b.Load(); b != nil {
		b.RevokeTaskLeases(ctx, ids)
	}
}

// clock is a settable clock, starting at the real time.
type clock struct{ ns atomic.Int64 }

func newClock() *clock { c := &clock{}; c.ns.Store(time.Now().UnixNano()); return c }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a broker wired as the server wires it: a SQLite store, the real
// ledger, the default policies through the access pipeline, and the admin
// service whose task ends revoke leases through the lifecycle.
type env struct {
	backend  store.Backend
	rec      *tee
	ledger   *audit.Ledger
	pipeline *access.Pipeline
	admin    *admin.Service
	broker   *secrets.Broker
	clock    *clock
	sealer   *seal.Keyring
	backends map[secrets.Kind]secrets.Backend
}

type envOpts struct {
	sealer   *seal.Keyring
	backends map[secrets.Kind]secrets.Backend
	path     string
	// defaults decides with mandate's default policies (which hold every
	// secret.use for approval) instead of testPolicy.
	defaults bool
}

// testPolicy allows supervised agents any secret but "forbidden".
const testPolicy = `
@id("test-secret-use")
@obligation("inject_secret")
permit (principal, action == Action::"secret.use", resource) when { principal.tier == "supervised" };

@id("test-secret-forbidden")
@reason("this secret is off limits")
forbid (principal, action == Action::"secret.use", resource == Secret::"forbidden");
`

func newEnv(t testing.TB, o envOpts) *env {
	t.Helper()
	ctx := context.Background()
	if o.path == "" {
		o.path = filepath.Join(t.TempDir(), "mandate.db")
	}
	if o.sealer == nil {
		o.sealer = sealtest.Keyring()
	}
	backend, err := store.Open(ctx, "sqlite:"+o.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = backend.Close() })
	ledger, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: backend, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{backend: backend, ledger: ledger, rec: &tee{ledger: ledger}, clock: newClock(), sealer: o.sealer, backends: o.backends}
	keyring, err := token.NewKeyring(ctx, token.KeyringConfig{Store: backend, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	rev := token.NewRevocations(nil)
	verifier, err := token.NewVerifier(token.VerifierConfig{Keyring: keyring, Revocations: rev,
		DPoP: token.NewDPoPVerifier(token.DPoPConfig{Store: backend}), Issuer: "https://mandate.test", Audience: "https://mandate.test"})
	if err != nil {
		t.Fatal(err)
	}
	sources := []policy.Source{{Name: "test.cedar", Text: []byte(testPolicy)}}
	if o.defaults {
		sources = policy.DefaultSources()
	}
	set, err := policy.Compile(sources)
	if err != nil {
		t.Fatal(err)
	}
	cls, err := policy.NewClassifier(policy.ClassifierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if e.pipeline, err = access.New(access.Config{Verifier: verifier, Revocations: rev, Tasks: backend, Agents: backend,
		Engine: policy.NewEngine(set, nil), Classifier: cls, Recorder: e.rec}); err != nil {
		t.Fatal(err)
	}
	hook := &lateLeases{}
	lc, err := lifecycle.New(lifecycle.Config{Tasks: backend, Recorder: e.rec, Revoker: rev, OnStop: hook})
	if err != nil {
		t.Fatal(err)
	}
	if e.admin, err = admin.New(admin.Config{Agents: backend, Tasks: backend, Entitlements: backend, Recorder: e.rec, Revoker: rev,
		Lifecycle: lc, TrustDomain: "example.org"}); err != nil {
		t.Fatal(err)
	}
	e.broker = e.newBroker(t, o.sealer)
	hook.b.Store(e.broker)
	return e
}

func (e *env) newBroker(t testing.TB, sealer *seal.Keyring) *secrets.Broker {
	t.Helper()
	b, err := secrets.New(secrets.Config{Store: e.backend, Tasks: e.backend, Sealer: sealer, Decider: e.pipeline,
		Recorder: e.rec, Digester: e.ledger.Redactor(), Backends: e.backends, Now: e.clock.Now,
		RetryMin: time.Second, RetryMax: 8 * time.Second, BackendTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startTask registers agent name (tier) if needed and starts a task for it
// whose scope allows the named secrets.
func (e *env) startTask(t testing.TB, name string, tier identity.Tier, ttl string, secretNames ...string) *task.Task {
	t.Helper()
	ctx := admin.WithActor(context.Background(), "admin:test")
	if _, err := e.admin.GetAgent(ctx, name); err != nil {
		if _, err := e.admin.RegisterAgent(ctx, admin.RegisterAgentRequest{Name: name, Owner: "alice@example.org",
			Escalation: "oncall@example.org", Tier: tier}); err != nil {
			t.Fatal(err)
		}
	}
	scope := []string{"file.read:/repo/**"}
	for _, s := range secretNames {
		scope = append(scope, "secret.use:"+s)
	}
	tk, err := e.admin.StartTask(ctx, admin.StartTaskRequest{Agent: name, OnBehalfOf: "alice@example.org", Purpose: "deploy", Scope: scope, TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

// put stores a static secret delivered to the github upstream's env.
func (e *env) put(t testing.TB, name, value string) *secrets.Secret {
	t.Helper()
	s, _, err := e.broker.Put(context.Background(), "admin:test", secrets.PutRequest{Name: name, Value: []byte(value),
		Deliver: []secrets.Target{{Upstream: "github", Env: "GITHUB_TOKEN"}, {Host: "api.github.com"}}})
	if err != nil {
		t.Fatalf("Put(%s) = %v", name, err)
	}
	return s
}

func (e *env) lease(t testing.TB, id secrets.LeaseID) *secrets.Lease {
	t.Helper()
	l, err := e.backend.GetLease(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// noValue fails the test if value appears in any of texts.
func noValue(t testing.TB, value string, texts ...string) {
	t.Helper()
	for i, s := range texts {
		if strings.Contains(s, value) {
			t.Errorf("text %d shows the secret value: %.300s", i, s)
		}
	}
}
