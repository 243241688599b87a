package task

import (
	"errors"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
)

var (
	agentA = identity.MustParseID("spiffe://example.org/agent/a")
	agentB = identity.MustParseID("spiffe://example.org/agent/b")
	t0     = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
)

func mustScope(t *testing.T, s string) Scope {
	t.Helper()
	sc, err := ParseScope(s)
	if err != nil {
		t.Fatal(err)
	}
	return sc
}

func parentTask(t *testing.T) *Task {
	return &Task{
		ID: NewID(), Agent: agentA, OnBehalfOf: "alice", Principal: "alice", Purpose: "fix bug",
		Scope: mustScope(t, "file.read:/repo/** file.write:/repo/src/**"), Sensitivity: SensitivityConfidential,
		Budget: Budget{MaxActions: 100}, Actors: []identity.ID{agentA}, Status: StatusActive,
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour),
	}
}

func childOf(t *testing.T, p *Task) *Task {
	return &Task{
		ID: NewID(), Agent: agentB, OnBehalfOf: "task:" + string(p.ID), Principal: p.Principal, Purpose: "run tests",
		Scope: mustScope(t, "file.read:/repo/src/*.go"), Sensitivity: SensitivityInternal,
		Budget: Budget{MaxActions: 10}, Parent: p.ID, Depth: p.Depth + 1, Actors: []identity.ID{agentA, agentB},
		Status: StatusActive, CreatedAt: t0.Add(time.Minute), ExpiresAt: t0.Add(30 * time.Minute),
	}
}

func TestCheckNarrows(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(p, c *Task)
		wantErr error
	}{
		{name: "narrower child", mutate: func(p, c *Task) {}},
		{name: "same scope", mutate: func(p, c *Task) { c.Scope = p.Scope }},
		{name: "wider scope", mutate: func(p, c *Task) { c.Scope = mustScope(t, "file.write:/repo/**") }, wantErr: ErrNotNarrower},
		{name: "other action", mutate: func(p, c *Task) { c.Scope = mustScope(t, "shell.exec:/repo/src/x") }, wantErr: ErrNotNarrower},
		{name: "higher sensitivity", mutate: func(p, c *Task) { c.Sensitivity = SensitivityRestricted }, wantErr: ErrNotNarrower},
		{name: "outlives parent", mutate: func(p, c *Task) { c.ExpiresAt = p.ExpiresAt.Add(time.Second) }, wantErr: ErrNotNarrower},
		{name: "unlimited budget under a limit", mutate: func(p, c *Task) { c.Budget.MaxActions = 0 }, wantErr: ErrNotNarrower},
		{name: "bigger budget", mutate: func(p, c *Task) { c.Budget.MaxActions = 101 }, wantErr: ErrNotNarrower},
		{name: "parent revoked", mutate: func(p, c *Task) { p.Status = StatusRevoked }, wantErr: ErrNotActive},
		{name: "parent expired", mutate: func(p, c *Task) { p.ExpiresAt = t0.Add(time.Minute) }, wantErr: ErrNotActive},
		{name: "wrong depth", mutate: func(p, c *Task) { c.Depth = 2 }, wantErr: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := parentTask(t)
			c := childOf(t, p)
			tt.mutate(p, c)
			err := CheckNarrows(p, c, t0.Add(2*time.Minute))
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("CheckNarrows() = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		mutate func(*Task)
		ok     bool
	}{
		{name: "valid root", mutate: func(*Task) {}, ok: true},
		{name: "bad id", mutate: func(k *Task) { k.ID = "tsk_x" }},
		{name: "no agent", mutate: func(k *Task) { k.Agent = identity.ID{} }},
		{name: "no on-behalf-of", mutate: func(k *Task) { k.OnBehalfOf = "" }},
		{name: "no purpose", mutate: func(k *Task) { k.Purpose = " " }},
		{name: "no scope", mutate: func(k *Task) { k.Scope = nil }},
		{name: "bad sensitivity", mutate: func(k *Task) { k.Sensitivity = "secret" }},
		{name: "negative budget", mutate: func(k *Task) { k.Budget.MaxWrites = -1 }},
		{name: "expires before created", mutate: func(k *Task) { k.ExpiresAt = k.CreatedAt }},
		{name: "depth without parent", mutate: func(k *Task) { k.Depth = 1 }},
		{name: "actors not ending with agent", mutate: func(k *Task) { k.Actors = []identity.ID{agentB} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			k := parentTask(t)
			tt.mutate(k)
			err := k.Validate()
			if tt.ok != (err == nil) || err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestIDs(t *testing.T) {
	t.Parallel()
	a, b := NewID(), NewID()
	if a == b {
		t.Fatal("NewID repeated")
	}
	if _, err := ParseID(string(a)); err != nil {
		t.Fatalf("ParseID(NewID()) = %v", err)
	}
	for _, bad := range []string{"", "tsk_", "task_" + string(a)[4:], string(a) + "a", "tsk_0000000000000000000000000!"} {
		if _, err := ParseID(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseID(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestSensitivityRank(t *testing.T) {
	t.Parallel()
	if !(SensitivityPublic.Rank() < SensitivityInternal.Rank() && SensitivityInternal.Rank() < SensitivityConfidential.Rank() &&
		SensitivityConfidential.Rank() < SensitivityRestricted.Rank() && SensitivityRestricted.Rank() < Sensitivity("bogus").Rank()) {
		t.Fatal("sensitivity levels are not ordered")
	}
}
