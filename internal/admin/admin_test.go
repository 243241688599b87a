package admin_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

type fixture struct {
	svc  *admin.Service
	db   *sqlite.DB
	revs *token.Revocations
	now  time.Time
}

func newFixture(t *testing.T, rec audit.Recorder) *fixture {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	f := &fixture{db: db, now: time.Now().UTC().Truncate(time.Microsecond)}
	f.revs = token.NewRevocations(func() time.Time { return f.now })
	if rec == nil {
		rec = mustLedger(t, db)
	}
	f.svc, err = admin.New(admin.Config{
		Agents: db, Tasks: db, Entitlements: db, Recorder: rec, Revoker: f.revs, TrustDomain: "example.org",
		MaxTaskTTL: 2 * time.Hour, Now: func() time.Time { return f.now },
	})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func ctxAdmin() context.Context { return admin.WithActor(context.Background(), "admin:test") }

func registerReq(name string) admin.RegisterAgentRequest {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return admin.RegisterAgentRequest{
		Name: name, Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: identity.TierAutonomous,
		Keys: []jose.JSONWebKey{{Key: pub, KeyID: "k1", Algorithm: "EdDSA"}},
	}
}

func (f *fixture) events(t *testing.T) []string {
	t.Helper()
	evs, err := f.db.ListEvents(context.Background(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range evs {
		out = append(out, string(e.Type)+" "+e.Actor+" "+e.Agent+" "+e.Task)
	}
	return out
}

func TestRegisterAgent(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	a, err := f.svc.RegisterAgent(ctxAdmin(), registerReq("bot"))
	if err != nil {
		t.Fatal(err)
	}
	if a.ID.String() != "spiffe://example.org/agent/bot" || a.Status != identity.StatusActive {
		t.Fatalf("RegisterAgent = %+v", a)
	}
	if _, err := f.svc.RegisterAgent(ctxAdmin(), registerReq("bot")); !errors.Is(err, identity.ErrExists) {
		t.Fatalf("duplicate RegisterAgent error = %v, want ErrExists", err)
	}
	noOwner := registerReq("other")
	noOwner.Owner = ""
	if _, err := f.svc.RegisterAgent(ctxAdmin(), noOwner); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("RegisterAgent without owner error = %v, want ErrInvalid", err)
	}
	foreign := registerReq("spiffe://other.org/agent/x")
	if _, err := f.svc.RegisterAgent(ctxAdmin(), foreign); !errors.Is(err, identity.ErrInvalid) {
		t.Fatalf("RegisterAgent in another trust domain error = %v, want ErrInvalid", err)
	}
	want := []string{"agent.registered admin:test spiffe://example.org/agent/bot "}
	if diff := cmp.Diff(want, f.events(t)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestSuspendRevokesTasksAndTokens(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	a, _ := f.svc.RegisterAgent(ctx, registerReq("bot"))
	tk, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "bot", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.read:/x/**"}, TTL: "10h"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := tk.ExpiresAt, f.now.Add(2*time.Hour); !got.Equal(want) {
		t.Errorf("task expiry = %v, want capped at %v", got, want)
	}
	if _, err := f.svc.SuspendAgent(ctx, "bot", "runaway"); err != nil {
		t.Fatal(err)
	}
	if !f.revs.AgentInactive(a.ID) || !f.revs.TaskInactive(tk.ID) {
		t.Fatal("suspension did not reach the revocation state")
	}
	got, _ := f.svc.GetTask(ctx, string(tk.ID))
	if got.Status != task.StatusRevoked {
		t.Fatalf("task status after suspension = %s, want revoked", got.Status)
	}
	if _, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "bot", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.read"}}); !errors.Is(err, identity.ErrInactive) {
		t.Fatalf("StartTask for suspended agent error = %v, want ErrInactive", err)
	}
	if _, err := f.svc.SuspendAgent(ctx, "bot", ""); !errors.Is(err, admin.ErrTransition) {
		t.Fatalf("second suspend error = %v, want ErrTransition", err)
	}
	if _, err := f.svc.ResumeAgent(ctx, "bot", ""); err != nil || f.revs.AgentInactive(a.ID) {
		t.Fatalf("resume: %v, inactive=%v", err, f.revs.AgentInactive(a.ID))
	}
	if _, err := f.svc.RetireAgent(ctx, "bot", "done"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.ResumeAgent(ctx, "bot", ""); !errors.Is(err, admin.ErrTransition) {
		t.Fatalf("resume retired error = %v, want ErrTransition", err)
	}
	want := []string{
		"agent.registered admin:test spiffe://example.org/agent/bot ",
		"task.started admin:test spiffe://example.org/agent/bot " + string(tk.ID),
		// The agent's tasks are revoked first; its suspension names how many.
		"task.revoked admin:test spiffe://example.org/agent/bot " + string(tk.ID),
		"agent.suspended admin:test spiffe://example.org/agent/bot ",
		"agent.resumed admin:test spiffe://example.org/agent/bot ",
		"agent.retired admin:test spiffe://example.org/agent/bot ",
	}
	if diff := cmp.Diff(want, f.events(t)); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
}

func TestEndTaskCascades(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	a, _ := f.svc.RegisterAgent(ctx, registerReq("a"))
	b, _ := f.svc.RegisterAgent(ctx, registerReq("b"))
	root, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "a", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.*:/r/**"}})
	if err != nil {
		t.Fatal(err)
	}
	child := &task.Task{
		ID: task.NewID(), Agent: b.ID, OnBehalfOf: "task:" + string(root.ID), Principal: "alice", Purpose: "sub",
		Scope: root.Scope, Sensitivity: root.Sensitivity, Parent: root.ID, Depth: 1,
		Actors: []identity.ID{a.ID, b.ID}, Status: task.StatusActive, CreatedAt: f.now, ExpiresAt: root.ExpiresAt,
	}
	if err := f.db.CreateTask(context.Background(), child); err != nil {
		t.Fatal(err)
	}
	got, finished, err := f.svc.RevokeTask(ctx, string(root.ID), "compromised")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != task.StatusRevoked || !cmp.Equal(finished, []task.ID{root.ID, child.ID}) {
		t.Fatalf("RevokeTask = %s %v", got.Status, finished)
	}
	if !f.revs.TaskInactive(child.ID) {
		t.Fatal("child task still active in revocation state")
	}
	if _, _, err := f.svc.EndTask(ctx, string(root.ID), ""); !errors.Is(err, task.ErrNotActive) {
		t.Fatalf("EndTask on revoked task error = %v, want ErrNotActive", err)
	}
	if _, _, err := f.svc.EndTask(ctx, "tsk_nope", ""); !errors.Is(err, task.ErrInvalid) {
		t.Fatalf("EndTask on bad id error = %v, want ErrInvalid", err)
	}
}

func TestStartTaskValidation(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	if _, err := f.svc.RegisterAgent(ctx, registerReq("a")); err != nil {
		t.Fatal(err)
	}
	base := admin.StartTaskRequest{Agent: "a", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.read"}}
	tests := []struct {
		name    string
		mutate  func(*admin.StartTaskRequest)
		wantErr error
	}{
		{"unknown agent", func(r *admin.StartTaskRequest) { r.Agent = "ghost" }, identity.ErrNotFound},
		{"no purpose", func(r *admin.StartTaskRequest) { r.Purpose = "" }, task.ErrInvalid},
		{"no on-behalf-of", func(r *admin.StartTaskRequest) { r.OnBehalfOf = "" }, task.ErrInvalid},
		{"on behalf of a task", func(r *admin.StartTaskRequest) { r.OnBehalfOf = "task:tsk_x" }, task.ErrInvalid},
		{"no scope", func(r *admin.StartTaskRequest) { r.Scope = nil }, task.ErrInvalid},
		{"bad scope", func(r *admin.StartTaskRequest) { r.Scope = []string{"rm.rf:/"} }, task.ErrInvalid},
		{"bad sensitivity", func(r *admin.StartTaskRequest) { r.Sensitivity = "top-secret" }, task.ErrInvalid},
		{"bad ttl", func(r *admin.StartTaskRequest) { r.TTL = "-5m" }, task.ErrInvalid},
		{"negative budget", func(r *admin.StartTaskRequest) { r.Budget.MaxActions = -1 }, task.ErrInvalid},
	}
	for _, tt := range tests {
		req := base
		tt.mutate(&req)
		if _, err := f.svc.StartTask(ctx, req); !errors.Is(err, tt.wantErr) {
			t.Errorf("%s: StartTask error = %v, want %v", tt.name, err, tt.wantErr)
		}
	}
	tasks, _ := f.svc.ListTasks(ctx, task.Filter{})
	if len(tasks) != 0 {
		t.Fatalf("refused requests left %d tasks behind", len(tasks))
	}
}

// switchRecorder records to a store until failing is set, then refuses
// every event, as an unavailable audit log does.
type switchRecorder struct {
	next    audit.Recorder
	failing atomic.Bool
}

func (r *switchRecorder) Record(ctx context.Context, ev audit.Event) error {
	if r.failing.Load() {
		return audit.ErrUnavailable
	}
	return r.next.Record(ctx, ev)
}

func TestAuditFailureFailsClosed(t *testing.T) {
	t.Parallel()
	rec := &switchRecorder{}
	f := newFixture(t, rec)
	rec.next = mustLedger(t, f.db)
	ctx := ctxAdmin()
	if _, err := f.svc.RegisterAgent(ctx, registerReq("a")); err != nil {
		t.Fatal(err)
	}
	rec.failing.Store(true)

	a, err := f.svc.RegisterAgent(ctx, registerReq("b"))
	if !errors.Is(err, audit.ErrUnavailable) || a != nil {
		t.Fatalf("RegisterAgent = %v, %v; want ErrUnavailable", a, err)
	}
	b, err := f.svc.GetAgent(ctx, "b")
	if err != nil || b.Status != identity.StatusSuspended || !f.revs.AgentInactive(b.ID) {
		t.Fatalf("unrecorded agent: %+v, %v; want it suspended and refused", b, err)
	}

	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := f.svc.AddAgentKey(ctx, "a", jose.JSONWebKey{Key: pub, KeyID: "k2"}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("AddAgentKey error = %v, want ErrUnavailable", err)
	}
	if a, _ := f.svc.GetAgent(ctx, "a"); len(a.Keys) != 1 || a.Keys[0].KeyID != "k1" {
		t.Fatalf("an unrecorded key stayed on the agent: %+v", a.Keys)
	}

	_, err = f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "a", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.read"}})
	if !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("StartTask error = %v, want ErrUnavailable", err)
	}
	tasks, _ := f.svc.ListTasks(ctx, task.Filter{})
	if len(tasks) != 1 || tasks[0].Status != task.StatusRevoked || !f.revs.TaskInactive(tasks[0].ID) {
		t.Fatalf("an unrecorded task is usable: %+v", tasks)
	}
}

func TestExpireTasks(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	f.svc.RegisterAgent(ctx, registerReq("a"))
	tk, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "a", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.read"}, TTL: "1m"})
	if err != nil {
		t.Fatal(err)
	}
	f.now = f.now.Add(2 * time.Minute)
	if err := f.svc.ExpireTasks(ctx); err != nil {
		t.Fatal(err)
	}
	got, _ := f.svc.GetTask(ctx, string(tk.ID))
	if got.Status != task.StatusExpired || !f.revs.TaskInactive(tk.ID) {
		t.Fatalf("after expiry: status %s, inactive %v", got.Status, f.revs.TaskInactive(tk.ID))
	}
}

func mustLedger(t *testing.T, s audit.Store) *audit.Ledger {
	t.Helper()
	l, err := audit.NewLedger(context.Background(), audit.LedgerConfig{Store: s, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}
