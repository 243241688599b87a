package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

func newEntitlement(t *testing.T, scope string, sens task.Sensitivity, ttl time.Duration) *task.Entitlement {
	t.Helper()
	sc, err := task.ParseScope(scope)
	if err != nil {
		t.Fatal(err)
	}
	return &task.Entitlement{Scope: sc, MaxSensitivity: sens, MaxTaskTTL: ttl}
}

func testEntitlements(t *testing.T, open OpenFunc) {
	t.Run("SetGetReplaceRemove", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := newAgent("a")
		mustCreateAgents(t, s, a, newAgent("b"))
		ctx := t.Context()
		if e, err := s.GetEntitlement(ctx, a.ID); !errors.Is(err, task.ErrNoEntitlement) {
			t.Fatalf("GetEntitlement(new agent) = %+v, %v; want ErrNoEntitlement", e, err)
		}
		first := newEntitlement(t, "file.read:/repo/** task.delegate", task.SensitivityInternal, 8*time.Hour)
		prev, err := s.SetEntitlement(ctx, a.ID, first, at(time.Minute))
		if err != nil || prev != nil {
			t.Fatalf("SetEntitlement(first) = %+v, %v; want nil, nil", prev, err)
		}
		got, err := s.GetEntitlement(ctx, a.ID)
		if err != nil {
			t.Fatalf("GetEntitlement = %v", err)
		}
		if diff := cmp.Diff(first, got, cmpOpts); diff != "" {
			t.Errorf("GetEntitlement mismatch (-want +got):\n%s", diff)
		}
		second := newEntitlement(t, "file.read:/repo/docs/**", task.SensitivityPublic, time.Hour)
		prev, err = s.SetEntitlement(ctx, a.ID, second, at(2*time.Minute))
		if err != nil {
			t.Fatalf("SetEntitlement(second) = %v", err)
		}
		if diff := cmp.Diff(first, prev, cmpOpts); diff != "" {
			t.Errorf("SetEntitlement returned previous mismatch (-want +got):\n%s", diff)
		}
		if got, _ := s.GetEntitlement(ctx, a.ID); cmp.Diff(second, got, cmpOpts) != "" {
			t.Errorf("GetEntitlement after replace = %+v, want %+v", got, second)
		}
		if _, err := s.GetEntitlement(ctx, agentID("b")); !errors.Is(err, task.ErrNoEntitlement) {
			t.Errorf("another agent's GetEntitlement = %v, want ErrNoEntitlement", err)
		}
		prev, err = s.SetEntitlement(ctx, a.ID, nil, at(3*time.Minute))
		if err != nil || cmp.Diff(second, prev, cmpOpts) != "" {
			t.Fatalf("SetEntitlement(nil) = %+v, %v; want the second, nil", prev, err)
		}
		if _, err := s.GetEntitlement(ctx, a.ID); !errors.Is(err, task.ErrNoEntitlement) {
			t.Errorf("GetEntitlement after removal = %v, want ErrNoEntitlement", err)
		}
	})

	t.Run("UnknownAgent", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ghost := agentID("ghost")
		if _, err := s.GetEntitlement(t.Context(), ghost); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("GetEntitlement(unknown) = %v, want identity.ErrNotFound", err)
		}
		e := newEntitlement(t, "*", task.SensitivityRestricted, time.Hour)
		if _, err := s.SetEntitlement(t.Context(), ghost, e, t0); !errors.Is(err, identity.ErrNotFound) {
			t.Errorf("SetEntitlement(unknown) = %v, want identity.ErrNotFound", err)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		a := newAgent("a")
		mustCreateAgents(t, s, a)
		good := newEntitlement(t, "file.read:/repo/**", task.SensitivityInternal, time.Hour)
		if _, err := s.SetEntitlement(t.Context(), a.ID, good, t0); err != nil {
			t.Fatal(err)
		}
		for name, e := range map[string]*task.Entitlement{
			"no scope":           {MaxSensitivity: task.SensitivityPublic, MaxTaskTTL: time.Hour},
			"unknown level":      newEntitlement(t, "*", "top-secret", time.Hour),
			"zero ttl":           newEntitlement(t, "*", task.SensitivityPublic, 0),
			"fractional seconds": newEntitlement(t, "*", task.SensitivityPublic, time.Second+1),
		} {
			if _, err := s.SetEntitlement(t.Context(), a.ID, e, t0); !errors.Is(err, task.ErrInvalid) {
				t.Errorf("SetEntitlement(%s) = %v, want task.ErrInvalid", name, err)
			}
		}
		// A refused change leaves the stored entitlement as it was.
		if got, err := s.GetEntitlement(t.Context(), a.ID); err != nil || cmp.Diff(good, got, cmpOpts) != "" {
			t.Errorf("GetEntitlement after refused changes = %+v, %v; want %+v", got, err, good)
		}
	})
}
