// Package storetest is the contract suite for mandate's storage backends:
// one set of tests, written against store.Backend only, that every backend
// (SQLite now, PostgreSQL later) must pass unchanged.
//
// A backend's own test calls Run with a function that opens a fresh, empty
// backend:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Backend {
//			db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "mandate.db"))
//			if err != nil {
//				t.Fatal(err)
//			}
//			t.Cleanup(func() { db.Close() })
//			return db
//		})
//	}
//
// Besides what the domain Store interfaces document, the suite pins down
// behaviour callers rely on: times round-trip with at least microsecond
// precision and come back in UTC; empty slices and maps may come back as
// nil; CreateTask refuses an unregistered agent (identity.ErrNotFound) and
// an unknown parent (task.ErrNotFound); ListEvents treats Since as
// inclusive and Until as exclusive; a tool pin's absent definitions come
// back nil, never empty.
package storetest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

// OpenFunc opens a fresh, empty backend for one test. It should register
// the backend's Close with t.Cleanup.
type OpenFunc func(t *testing.T) store.Backend

// Run runs the whole contract suite against the backends open returns.
// Every subtest opens its own backend, so subtests run in parallel.
func Run(t *testing.T, open OpenFunc) {
	t.Run("Agents", func(t *testing.T) { t.Parallel(); testAgents(t, open) })
	t.Run("Tasks", func(t *testing.T) { t.Parallel(); testTasks(t, open) })
	t.Run("Taint", func(t *testing.T) { t.Parallel(); testTaint(t, open) })
	t.Run("Entitlements", func(t *testing.T) { t.Parallel(); testEntitlements(t, open) })
	t.Run("SigningKeys", func(t *testing.T) { t.Parallel(); testSigningKeys(t, open) })
	t.Run("UseOnce", func(t *testing.T) { t.Parallel(); testUseOnce(t, open) })
	t.Run("RevokedTokens", func(t *testing.T) { t.Parallel(); testRevokedTokens(t, open) })
	t.Run("Events", func(t *testing.T) { t.Parallel(); testEvents(t, open) })
	t.Run("ReplaceLedgerKey", func(t *testing.T) { t.Parallel(); testReplaceLedgerKey(t, open) })
	t.Run("ToolPins", func(t *testing.T) { t.Parallel(); testToolPins(t, open) })
	t.Run("PolicySources", func(t *testing.T) { t.Parallel(); testPolicySources(t, open) })
	t.Run("Secrets", func(t *testing.T) { t.Parallel(); testSecrets(t, open) })
	t.Run("Leases", func(t *testing.T) { t.Parallel(); testLeases(t, open) })
	t.Run("Approvals", func(t *testing.T) { t.Parallel(); testApprovals(t, open) })
	t.Run("People", func(t *testing.T) { t.Parallel(); testPeople(t, open) })
	t.Run("Grants", func(t *testing.T) { t.Parallel(); testGrants(t, open) })
	t.Run("Ping", func(t *testing.T) {
		t.Parallel()
		if err := open(t).Ping(t.Context()); err != nil {
			t.Errorf("Ping() = %v, want nil", err)
		}
	})
}

// t0 is the suite's reference time. It has sub-second digits so that a
// backend that drops precision fails, but no finer than microseconds,
// which is what PostgreSQL's timestamptz keeps.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 123456000, time.UTC)

// at returns t0 plus d.
func at(d time.Duration) time.Time { return t0.Add(d) }

// cmpOpts compare domain values: IDs by value, scopes by their canonical
// strings, JWKs by their JSON, times with time.Time.Equal (cmp's default
// for types with an Equal method), and nil like empty.
var cmpOpts = cmp.Options{
	cmp.Comparer(func(a, b identity.ID) bool { return a == b }),
	cmp.Transformer("Scope", func(s task.Scope) []string { return s.Strings() }),
	cmp.Transformer("JWK", func(k jose.JSONWebKey) string {
		b, err := k.MarshalJSON()
		if err != nil {
			return "error: " + err.Error()
		}
		return string(b)
	}),
	cmpopts.EquateEmpty(),
}

// agentID returns the agent ID for name in the example.org trust domain.
func agentID(name string) identity.ID {
	return identity.MustParseID("spiffe://example.org/agent/" + name)
}

// newAgent returns a minimal valid agent.
func newAgent(name string) *identity.Agent {
	return &identity.Agent{
		ID:         agentID(name),
		Owner:      "alice@example.org",
		Escalation: "oncall@example.org",
		Tier:       identity.TierSupervised,
		Status:     identity.StatusActive,
		CreatedAt:  t0,
		UpdatedAt:  t0,
	}
}

// publicKeys returns one Ed25519 and one P-256 public JWK.
func publicKeys(t *testing.T) []jose.JSONWebKey {
	t.Helper()
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return []jose.JSONWebKey{
		{Key: edPub, KeyID: "ed-1", Algorithm: string(jose.EdDSA), Use: "sig"},
		{Key: &ec.PublicKey, KeyID: "ec-1", Algorithm: string(jose.ES256)},
	}
}

// mustCreateAgents registers agents, failing the test on error.
func mustCreateAgents(t *testing.T, s store.Backend, agents ...*identity.Agent) {
	t.Helper()
	for _, a := range agents {
		if err := s.CreateAgent(t.Context(), a); err != nil {
			t.Fatalf("CreateAgent(%s) = %v, want nil", a.ID, err)
		}
	}
}

// newTask returns a valid root task for agent, or a child of parent if
// parent is not nil.
func newTask(agent identity.ID, parent *task.Task) *task.Task {
	scope, err := task.ParseScope("file.read:/repo/** tool.call:github/*")
	if err != nil {
		panic(err)
	}
	tk := &task.Task{
		ID:          task.NewID(),
		Agent:       agent,
		OnBehalfOf:  "user:alice",
		Principal:   "user:alice",
		Purpose:     "fix the flaky test",
		Scope:       scope,
		Sensitivity: task.SensitivityInternal,
		Budget:      task.Budget{MaxActions: 100, MaxWrites: 10},
		Actors:      []identity.ID{agent},
		Status:      task.StatusActive,
		CreatedAt:   t0,
		ExpiresAt:   at(time.Hour),
	}
	if parent != nil {
		tk.OnBehalfOf = "task:" + string(parent.ID)
		tk.Principal = parent.Principal
		tk.Parent = parent.ID
		tk.Depth = parent.Depth + 1
		tk.Actors = append(append([]identity.ID{}, parent.Actors...), agent)
		tk.ExpiresAt = parent.ExpiresAt
		tk.CreatedAt = parent.CreatedAt.Add(time.Second)
	}
	return tk
}

// mustCreateTasks stores tasks, failing the test on error.
func mustCreateTasks(t *testing.T, s store.Backend, tasks ...*task.Task) {
	t.Helper()
	for _, tk := range tasks {
		if err := s.CreateTask(t.Context(), tk); err != nil {
			t.Fatalf("CreateTask(%s) = %v, want nil", tk.ID, err)
		}
	}
}

// checkUTC reports returned times that are not in UTC.
func checkUTC(t *testing.T, what string, ts ...time.Time) {
	t.Helper()
	for i, tm := range ts {
		if tm.Location() != time.UTC {
			t.Errorf("%s: time %d (%v) has location %v, want UTC", what, i, tm, tm.Location())
		}
	}
}
