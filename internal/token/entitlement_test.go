package token

import (
	"context"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// refusal returns the token.refused event of the last request.
func (f *sfix) refusal() audit.Event {
	f.t.Helper()
	for _, ev := range f.rec.take() {
		if ev.Type == audit.TypeTokenRefused {
			return ev
		}
	}
	f.t.Fatal("no token.refused event")
	return audit.Event{}
}

// TestStartTaskWithinEntitlement: an agent that starts a task itself gets
// no more than its entitlement, however it asks; each refusal is recorded.
func TestStartTaskWithinEntitlement(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	f.entitle(agentA, "file.read:/repo/** tool.call:github/*", task.SensitivityInternal, 2*time.Hour)
	tokA := f.agentToken(agentA)
	for _, tt := range []struct {
		name    string
		mod     func(r *TokenRequest)
		code    string
		exceeds string
	}{
		{"scope star", func(r *TokenRequest) { r.Scope = "*" }, CodeInvalidScope, task.LimitScope},
		{"scope star spelled long", func(r *TokenRequest) { r.Scope = "*:**" }, CodeInvalidScope, task.LimitScope},
		{"every action on the repo", func(r *TokenRequest) { r.Scope = "*:/repo/**" }, CodeInvalidScope, task.LimitScope},
		{"action family", func(r *TokenRequest) { r.Scope = "file.*:/repo/**" }, CodeInvalidScope, task.LimitScope},
		{"write", func(r *TokenRequest) { r.Scope = "file.write:/repo/src/**" }, CodeInvalidScope, task.LimitScope},
		{"recursive tools", func(r *TokenRequest) { r.Scope = "tool.call:github/**" }, CodeInvalidScope, task.LimitScope},
		{"sibling directory", func(r *TokenRequest) { r.Scope = "file.read:/repository/**" }, CodeInvalidScope, task.LimitScope},
		{"the root itself", func(r *TokenRequest) { r.Scope = "file.read:/repo" }, CodeInvalidScope, task.LimitScope},
		{"upper case", func(r *TokenRequest) { r.Scope = "file.read:/REPO/**" }, CodeInvalidScope, task.LimitScope},
		{"one wide among narrow", func(r *TokenRequest) { r.Scope = "file.read:/repo/a shell.exec:ls" }, CodeInvalidScope, task.LimitScope},
		{"higher sensitivity", func(r *TokenRequest) { r.Scope, r.Sensitivity = "file.read:/repo/a", "confidential" }, CodeInvalidRequest, task.LimitSensitivity},
		{"longer lifetime", func(r *TokenRequest) { r.Scope, r.TaskTTL = "file.read:/repo/a", "3h" }, CodeInvalidRequest, task.LimitLifetime},
	} {
		_, err := f.srv.Token(context.Background(), startReq(tokA, tt.mod))
		if oauthCode(err) != tt.code {
			t.Errorf("%s: Token = %v, want %s", tt.name, err, tt.code)
			f.rec.take()
			continue
		}
		ev := f.refusal()
		if ev.Agent != agentA.String() || ev.Details["entitlement"] != "exceeded" || ev.Details["exceeds"] != tt.exceeds || ev.Decision != audit.DecisionDeny {
			t.Errorf("%s: token.refused = %+v", tt.name, ev)
		}
	}
	if n := len(f.st.tasks); n != 0 {
		t.Fatalf("refused exchanges stored %d tasks", n)
	}
	// Inside the ceiling: granted, with unstated sensitivity and lifetime
	// brought down to it.
	f.entitle(agentA, "file.read:/repo/**", task.SensitivityPublic, 30*time.Minute)
	resp := f.mustToken(startReq(tokA, func(r *TokenRequest) { r.Scope = "file.read:/repo/docs/**" }))
	c := f.claimsOf(resp.AccessToken)
	tk := f.st.tasks[task.ID(c.TaskID)]
	if c.Scope != "file.read:/repo/docs/**" || tk.Sensitivity != task.SensitivityPublic || tk.ExpiresAt.Sub(tk.CreatedAt) != 30*time.Minute {
		t.Errorf("granted task: scope %q, sensitivity %s, lifetime %s; want the request within public and 30m", c.Scope, tk.Sensitivity, tk.ExpiresAt.Sub(tk.CreatedAt))
	}
}

// TestUnentitledAgentCannotStartTasks: with no entitlement an agent
// cannot start a task by itself, even a narrow one; it can still use a
// task an admin started for it.
func TestUnentitledAgentCannotStartTasks(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	if _, err := f.st.SetEntitlement(context.Background(), agentA, nil, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	tokA := f.agentToken(agentA)
	for _, scope := range []string{"*", "file.read:/repo/a"} {
		_, err := f.srv.Token(context.Background(), startReq(tokA, func(r *TokenRequest) { r.Scope = scope }))
		if oauthCode(err) != CodeUnauthorizedClient {
			t.Errorf("unentitled start of %q = %v, want unauthorized_client", scope, err)
		}
		if ev := f.refusal(); ev.Details["entitlement"] != "none" || ev.Agent != agentA.String() {
			t.Errorf("token.refused = %+v, want entitlement none", ev)
		}
	}
	// An admin-started task is joined as before.
	now := f.clock.Now()
	tk := &task.Task{
		ID: task.NewID(), Agent: agentA, OnBehalfOf: "alice@example.org", Principal: "alice@example.org", Purpose: "admin's",
		Scope: mustScope("file.read:/repo/**"), Sensitivity: task.SensitivityInternal, Actors: []identity.ID{agentA},
		Status: task.StatusActive, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	if err := f.st.CreateTask(context.Background(), tk); err != nil {
		t.Fatal(err)
	}
	f.mustToken(exchange(tokA, func(r *TokenRequest) { r.TaskID = string(tk.ID) }))
}

// TestDelegationWithinChildEntitlement: a delegated task must fit the
// delegate's entitlement as well as the parent's scope.
func TestDelegationWithinChildEntitlement(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	f.entitle(agentB, "file.read:/repo/docs/**", task.SensitivityPublic, 10*time.Minute)
	tokA, tokB := f.agentToken(agentA), f.agentToken(agentB)
	parent := f.mustToken(startReq(tokA, func(r *TokenRequest) { r.Sensitivity = "confidential" })).AccessToken
	for _, tt := range []struct {
		name    string
		mod     func(r *TokenRequest)
		code    string
		exceeds string
	}{
		{"parent's whole scope", nil, CodeInvalidScope, task.LimitScope},
		{"inside parent, outside child", func(r *TokenRequest) { r.Scope = "file.read:/repo/src/**" }, CodeInvalidScope, task.LimitScope},
		{"parent's sensitivity asked", func(r *TokenRequest) { r.Scope, r.Sensitivity = "file.read:/repo/docs/a", "internal" }, CodeInvalidRequest, task.LimitSensitivity},
		{"longer than the child may live", func(r *TokenRequest) { r.Scope, r.TaskTTL = "file.read:/repo/docs/a", "30m" }, CodeInvalidRequest, task.LimitLifetime},
	} {
		_, err := f.srv.Token(context.Background(), delegateReq(parent, tokB, tt.mod))
		if oauthCode(err) != tt.code {
			t.Errorf("%s: delegate = %v, want %s", tt.name, err, tt.code)
			f.rec.take()
			continue
		}
		if ev := f.refusal(); ev.Details["exceeds"] != tt.exceeds || ev.Details["delegate"] != agentB.String() {
			t.Errorf("%s: token.refused = %+v", tt.name, ev)
		}
	}
	// Inside both: granted; the unstated sensitivity and lifetime are the
	// parent's brought down to the child's ceiling.
	resp := f.mustToken(delegateReq(parent, tokB, func(r *TokenRequest) { r.Scope = "file.read:/repo/docs/**" }))
	tk := f.st.tasks[task.ID(f.claimsOf(resp.AccessToken).TaskID)]
	if tk.Sensitivity != task.SensitivityPublic || tk.ExpiresAt.Sub(tk.CreatedAt) != 10*time.Minute {
		t.Errorf("delegated task: %s for %s, want public for 10m", tk.Sensitivity, tk.ExpiresAt.Sub(tk.CreatedAt))
	}

	// A delegate with no entitlement receives nothing.
	if _, err := f.st.SetEntitlement(context.Background(), agentB, nil, f.clock.Now()); err != nil {
		t.Fatal(err)
	}
	_, err := f.srv.Token(context.Background(), delegateReq(parent, tokB, func(r *TokenRequest) { r.Scope = "file.read:/repo/docs/a" }))
	if oauthCode(err) != CodeInvalidGrant {
		t.Errorf("delegating to an unentitled agent = %v, want invalid_grant", err)
	}
	if ev := f.refusal(); ev.Details["entitlement"] != "none" {
		t.Errorf("token.refused = %+v, want entitlement none", ev)
	}
}
