package admin_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

func mustEntitlement(t *testing.T, scope string, sens task.Sensitivity, ttl time.Duration) *task.Entitlement {
	t.Helper()
	sc, err := task.ParseScope(scope)
	if err != nil {
		t.Fatal(err)
	}
	return &task.Entitlement{Scope: sc, MaxSensitivity: sens, MaxTaskTTL: ttl}
}

// lastEvent returns the newest event of type typ.
func (f *fixture) lastEvent(t *testing.T, typ audit.Type) *audit.Event {
	t.Helper()
	evs, err := f.db.ListEvents(context.Background(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	for i := len(evs) - 1; i >= 0; i-- {
		if evs[i].Type == typ {
			return evs[i]
		}
	}
	t.Fatalf("no %s event in %v", typ, f.events(t))
	return nil
}

func TestRegisterAgentWithEntitlement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	req := registerReq("bot")
	req.Entitlement = mustEntitlement(t, "file.read:/repo/** task.delegate", task.SensitivityInternal, time.Hour)
	if _, err := f.svc.RegisterAgent(ctx, req); err != nil {
		t.Fatal(err)
	}
	got, err := f.svc.GetEntitlement(ctx, "bot")
	if err != nil || got == nil || got.Scope.String() != "file.read:/repo/** task.delegate:**" {
		t.Fatalf("GetEntitlement = %+v, %v", got, err)
	}
	ev := f.lastEvent(t, audit.TypeAgentRegistered)
	if ev.Details["entitlement.scope"] != "file.read:/repo/** task.delegate:**" || ev.Details["entitlement.max_task_ttl"] != "1h0m0s" || ev.Details["entitlement.max_sensitivity"] != "internal" {
		t.Errorf("agent.registered details = %v, want the entitlement", ev.Details)
	}

	plain := registerReq("plain")
	if _, err := f.svc.RegisterAgent(ctx, plain); err != nil {
		t.Fatal(err)
	}
	if e, err := f.svc.GetEntitlement(ctx, "plain"); e != nil || err != nil {
		t.Errorf("GetEntitlement(agent without one) = %+v, %v; want nil, nil", e, err)
	}
}

func TestRegisterAgentRefusesBadEntitlement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	for name, e := range map[string]*task.Entitlement{
		"longer than the server allows": mustEntitlement(t, "*", task.SensitivityPublic, 3*time.Hour), // fixture MaxTaskTTL is 2h
		"no scope":                      {MaxSensitivity: task.SensitivityPublic, MaxTaskTTL: time.Hour},
		"unknown sensitivity":           mustEntitlement(t, "*", "secret", time.Hour),
	} {
		req := registerReq("bot")
		req.Entitlement = e
		if _, err := f.svc.RegisterAgent(ctx, req); !errors.Is(err, task.ErrInvalid) {
			t.Errorf("%s: RegisterAgent = %v, want task.ErrInvalid", name, err)
		}
	}
	if _, err := f.svc.GetAgent(ctx, "bot"); !errors.Is(err, identity.ErrNotFound) {
		t.Errorf("an agent with a refused entitlement was stored: %v", err)
	}
}

// TestStartTaskInsideEntitlement: an admin cannot start a task beyond the
// agent's ceiling either, however the wider request is spelled; each
// refusal is a task.refused event.
func TestStartTaskInsideEntitlement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	req := registerReq("bot")
	req.Entitlement = mustEntitlement(t, "file.read:/repo/** tool.call:github/*", task.SensitivityInternal, 30*time.Minute)
	if _, err := f.svc.RegisterAgent(ctx, req); err != nil {
		t.Fatal(err)
	}
	start := func(scope []string, sens, ttl string) (*task.Task, error) {
		return f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "bot", OnBehalfOf: "alice", Purpose: "p", Scope: scope, Sensitivity: sens, TTL: ttl})
	}
	for _, tt := range []struct {
		name      string
		scope     []string
		sens, ttl string
		exceeds   string
	}{
		{"everything", []string{"*"}, "", "", task.LimitScope},
		{"every action on the repo", []string{"*:/repo/**"}, "", "", task.LimitScope},
		{"write instead of read", []string{"file.write:/repo/a"}, "", "", task.LimitScope},
		{"recursive tool glob", []string{"tool.call:github/**"}, "", "", task.LimitScope},
		{"sibling directory", []string{"file.read:/repository/x"}, "", "", task.LimitScope},
		{"one of two patterns", []string{"file.read:/repo/a", "shell.exec:ls"}, "", "", task.LimitScope},
		{"higher sensitivity", []string{"file.read:/repo/a"}, "confidential", "", task.LimitSensitivity},
		{"longer lifetime", []string{"file.read:/repo/a"}, "", "31m", task.LimitLifetime},
	} {
		tk, err := start(tt.scope, tt.sens, tt.ttl)
		var ex *task.ExceedsError
		if !errors.As(err, &ex) || ex.Limit != tt.exceeds || tk != nil {
			t.Errorf("%s: StartTask = %v, %v; want ExceedsError{%s}", tt.name, tk, err, tt.exceeds)
			continue
		}
		ev := f.lastEvent(t, audit.TypeTaskRefused)
		if ev.Decision != audit.DecisionDeny || ev.Details["exceeds"] != tt.exceeds || ev.Agent != "spiffe://example.org/agent/bot" || ev.Actor != "admin:test" {
			t.Errorf("%s: task.refused = %+v", tt.name, ev)
		}
	}
	if tasks, _ := f.svc.ListTasks(ctx, task.Filter{}); len(tasks) != 0 {
		t.Fatalf("refused requests left tasks: %+v", tasks)
	}

	// Unstated lifetime and sensitivity come down to the ceiling (the
	// server default is 1h and internal).
	f2 := newFixture(t, nil)
	req = registerReq("low")
	req.Entitlement = mustEntitlement(t, "file.read:/repo/**", task.SensitivityPublic, 30*time.Minute)
	if _, err := f2.svc.RegisterAgent(ctx, req); err != nil {
		t.Fatal(err)
	}
	tk, err := f2.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "low", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"file.read:/repo/a"}})
	if err != nil {
		t.Fatal(err)
	}
	if tk.Sensitivity != task.SensitivityPublic || tk.ExpiresAt.Sub(tk.CreatedAt) != 30*time.Minute {
		t.Errorf("StartTask without ttl and sensitivity = %s for %s, want public for 30m", tk.Sensitivity, tk.ExpiresAt.Sub(tk.CreatedAt))
	}

	// An agent without an entitlement: the admin's task is the authority.
	if _, err := f2.svc.RegisterAgent(ctx, registerReq("free")); err != nil {
		t.Fatal(err)
	}
	if _, err := f2.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "free", OnBehalfOf: "alice", Purpose: "p", Scope: []string{"*"}}); err != nil {
		t.Errorf("StartTask for an agent without entitlement = %v", err)
	}
}

// TestUpdateAgentEntitlement: lowering narrows nothing running; with
// RevokeExceeding the tasks that no longer fit end, with their
// descendants, and the ones that fit keep running.
func TestUpdateAgentEntitlement(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	req := registerReq("bot")
	wide := mustEntitlement(t, "file.read:/repo/** file.write:/repo/**", task.SensitivityConfidential, time.Hour)
	req.Entitlement = wide
	if _, err := f.svc.RegisterAgent(ctx, req); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.RegisterAgent(ctx, registerReq("helper")); err != nil {
		t.Fatal(err)
	}
	fits, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "bot", OnBehalfOf: "alice", Purpose: "read", Scope: []string{"file.read:/repo/docs/**"}, Sensitivity: "public"})
	if err != nil {
		t.Fatal(err)
	}
	writes, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "bot", OnBehalfOf: "alice", Purpose: "write", Scope: []string{"file.write:/repo/src/**"}})
	if err != nil {
		t.Fatal(err)
	}
	secret, err := f.svc.StartTask(ctx, admin.StartTaskRequest{Agent: "bot", OnBehalfOf: "alice", Purpose: "read secrets", Scope: []string{"file.read:/repo/a"}, Sensitivity: "confidential"})
	if err != nil {
		t.Fatal(err)
	}
	// A task delegated from the exceeding one, to another agent.
	child := &task.Task{
		ID: task.NewID(), Agent: identity.MustParseID("spiffe://example.org/agent/helper"), OnBehalfOf: "task:" + string(writes.ID),
		Principal: "alice", Purpose: "sub", Scope: writes.Scope, Sensitivity: task.SensitivityInternal, Parent: writes.ID, Depth: 1,
		Actors: []identity.ID{writes.Agent, identity.MustParseID("spiffe://example.org/agent/helper")}, Status: task.StatusActive,
		CreatedAt: writes.CreatedAt, ExpiresAt: writes.ExpiresAt,
	}
	if err := f.db.CreateTask(ctx, child); err != nil {
		t.Fatal(err)
	}

	narrow := mustEntitlement(t, "file.read:/repo/**", task.SensitivityInternal, time.Hour)
	res, err := f.svc.UpdateAgent(ctx, "bot", admin.UpdateAgentRequest{Entitlement: narrow, Reason: "least privilege"})
	if err != nil || len(res.Revoked) != 0 {
		t.Fatalf("UpdateAgent(lower) = %+v, %v; want nothing revoked", res, err)
	}
	for _, tk := range []*task.Task{fits, writes, secret, child} {
		if got, _ := f.svc.GetTask(ctx, string(tk.ID)); got.Status != task.StatusActive {
			t.Errorf("lowering without revoke_exceeding ended %s (%s)", tk.ID, got.Status)
		}
	}
	ev := f.lastEvent(t, audit.TypeAgentEntitlementChanged)
	want := map[string]string{
		"old.scope": "file.read:/repo/** file.write:/repo/**", "old.max_sensitivity": "confidential", "old.max_task_ttl": "1h0m0s",
		"new.scope": "file.read:/repo/**", "new.max_sensitivity": "internal", "new.max_task_ttl": "1h0m0s", "reason": "least privilege",
	}
	for k, v := range want {
		if ev.Details[k] != v {
			t.Errorf("agent.entitlement_changed %s = %q, want %q (all: %v)", k, ev.Details[k], v, ev.Details)
		}
	}
	if ev.Actor != "admin:test" || ev.Agent != "spiffe://example.org/agent/bot" {
		t.Errorf("agent.entitlement_changed actor %q agent %q", ev.Actor, ev.Agent)
	}

	res, err = f.svc.UpdateAgent(ctx, "bot", admin.UpdateAgentRequest{Entitlement: narrow, RevokeExceeding: true})
	if err != nil {
		t.Fatal(err)
	}
	revoked := map[task.ID]bool{}
	for _, id := range res.Revoked {
		revoked[id] = true
	}
	if len(res.Revoked) != 3 || !revoked[writes.ID] || !revoked[secret.ID] || !revoked[child.ID] {
		t.Fatalf("revoked %v, want %s, %s and its child %s", res.Revoked, writes.ID, secret.ID, child.ID)
	}
	for _, id := range res.Revoked {
		got, _ := f.svc.GetTask(ctx, string(id))
		if got.Status != task.StatusRevoked || !f.revs.TaskInactive(id) {
			t.Errorf("task %s: status %s, inactive %v; want revoked", id, got.Status, f.revs.TaskInactive(id))
		}
	}
	if got, _ := f.svc.GetTask(ctx, string(fits.ID)); got.Status != task.StatusActive || f.revs.TaskInactive(fits.ID) {
		t.Errorf("the fitting task was ended: %s", got.Status)
	}
	var revokedEvents int
	evs, _ := f.db.ListEvents(ctx, audit.Query{})
	for _, e := range evs {
		if e.Type == audit.TypeTaskRevoked && e.Reason == "exceeds entitlement" {
			revokedEvents++
		}
	}
	if revokedEvents != 3 {
		t.Errorf("%d task.revoked events for exceeding tasks, want 3", revokedEvents)
	}
}

func TestUpdateAgentRefusals(t *testing.T) {
	t.Parallel()
	f := newFixture(t, nil)
	ctx := ctxAdmin()
	if _, err := f.svc.RegisterAgent(ctx, registerReq("bot")); err != nil {
		t.Fatal(err)
	}
	e := mustEntitlement(t, "file.read:/repo/**", task.SensitivityInternal, time.Hour)
	for _, tt := range []struct {
		name string
		ref  string
		req  admin.UpdateAgentRequest
		want error
	}{
		{"nothing", "bot", admin.UpdateAgentRequest{}, admin.ErrNothingToUpdate},
		{"set and remove", "bot", admin.UpdateAgentRequest{Entitlement: e, RemoveEntitlement: true}, admin.ErrNothingToUpdate},
		{"remove and revoke", "bot", admin.UpdateAgentRequest{RemoveEntitlement: true, RevokeExceeding: true}, admin.ErrNothingToUpdate},
		{"invalid", "bot", admin.UpdateAgentRequest{Entitlement: mustEntitlement(t, "*", task.SensitivityPublic, 0)}, task.ErrInvalid},
		{"beyond the server", "bot", admin.UpdateAgentRequest{Entitlement: mustEntitlement(t, "*", task.SensitivityPublic, 3*time.Hour)}, task.ErrInvalid},
		{"unknown agent", "ghost", admin.UpdateAgentRequest{Entitlement: e}, identity.ErrNotFound},
	} {
		if _, err := f.svc.UpdateAgent(ctx, tt.ref, tt.req); !errors.Is(err, tt.want) {
			t.Errorf("%s: UpdateAgent = %v, want %v", tt.name, err, tt.want)
		}
	}
	if got, _ := f.svc.GetEntitlement(ctx, "bot"); got != nil {
		t.Errorf("refused updates left an entitlement: %+v", got)
	}
	if _, err := f.svc.RetireAgent(ctx, "bot", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := f.svc.UpdateAgent(ctx, "bot", admin.UpdateAgentRequest{Entitlement: e}); !errors.Is(err, admin.ErrTransition) {
		t.Errorf("UpdateAgent(retired) = %v, want ErrTransition", err)
	}
}

// TestUpdateAgentUnrecordedIsUndone: an entitlement change that cannot be
// recorded does not stay in force.
func TestUpdateAgentUnrecordedIsUndone(t *testing.T) {
	t.Parallel()
	rec := &switchRecorder{}
	f := newFixture(t, rec)
	rec.next = mustLedger(t, f.db)
	ctx := ctxAdmin()
	req := registerReq("bot")
	low := mustEntitlement(t, "file.read:/repo/docs/**", task.SensitivityPublic, time.Minute)
	req.Entitlement = low
	if _, err := f.svc.RegisterAgent(ctx, req); err != nil {
		t.Fatal(err)
	}
	rec.failing.Store(true)
	high := mustEntitlement(t, "*", task.SensitivityRestricted, time.Hour)
	if _, err := f.svc.UpdateAgent(ctx, "bot", admin.UpdateAgentRequest{Entitlement: high}); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("UpdateAgent = %v, want ErrUnavailable", err)
	}
	if got, _ := f.svc.GetEntitlement(ctx, "bot"); got == nil || got.Scope.String() != low.Scope.String() {
		t.Fatalf("after an unrecorded raise the entitlement is %+v, want the old one", got)
	}
}
