package storetest

import (
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/policy"
)

func testPolicySources(t *testing.T, open OpenFunc) {
	t.Run("Lifecycle", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		v0, err := s.PolicySourcesVersion(ctx)
		if err != nil {
			t.Fatalf("PolicySourcesVersion(empty) = %v", err)
		}
		if _, err := s.GetPolicySource(ctx, "site"); !errors.Is(err, policy.ErrPolicyNotFound) {
			t.Errorf("GetPolicySource(unknown) = %v, want ErrPolicyNotFound", err)
		}
		if got, err := s.ListPolicySources(ctx); err != nil || len(got) != 0 {
			t.Errorf("ListPolicySources(empty) = %v, %v", got, err)
		}
		put := func(name, text string, ifVersion int64) *policy.StoredSource {
			t.Helper()
			got, err := s.PutPolicySource(ctx, &policy.StoredSource{Name: name, Text: []byte(text), UpdatedAt: t0, UpdatedBy: "admin:alice"}, ifVersion)
			if err != nil {
				t.Fatalf("PutPolicySource(%s, if %d) = %v", name, ifVersion, err)
			}
			return got
		}
		b := put("b", `permit(principal, action, resource);`, 0)
		// Bytes come back exactly as stored.
		a := put("a", "// é \u2028\n", 0)
		if b.Version <= v0 || a.Version <= b.Version {
			t.Errorf("versions %d then %d after %d: want increasing", b.Version, a.Version, v0)
		}
		got, err := s.GetPolicySource(ctx, "a")
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "GetPolicySource", got.UpdatedAt)
		if diff := cmp.Diff(a, got, cmpOpts); diff != "" {
			t.Errorf("GetPolicySource(a) mismatch (-put +got):\n%s", diff)
		}
		list, err := s.ListPolicySources(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]*policy.StoredSource{a, b}, list, cmpOpts); diff != "" {
			t.Errorf("ListPolicySources mismatch (-want +got):\n%s", diff)
		}

		// Replacing needs the current version.
		for _, bad := range []int64{0, b.Version - 1, a.Version} {
			_, err := s.PutPolicySource(ctx, &policy.StoredSource{Name: "b", Text: []byte(`x`), UpdatedAt: t0, UpdatedBy: "admin:mallory"}, bad)
			if !errors.Is(err, policy.ErrVersionConflict) {
				t.Errorf("PutPolicySource(b, if %d) at version %d = %v, want ErrVersionConflict", bad, b.Version, err)
			}
		}
		if _, err := s.PutPolicySource(ctx, &policy.StoredSource{Name: "c", Text: []byte(`x`), UpdatedAt: t0, UpdatedBy: "admin:alice"}, 7); !errors.Is(err, policy.ErrVersionConflict) {
			t.Errorf("PutPolicySource(new c, if 7) = %v, want ErrVersionConflict", err)
		}
		if got, _ := s.GetPolicySource(ctx, "b"); got == nil || string(got.Text) != string(b.Text) {
			t.Errorf("after refused puts, b = %+v", got)
		}
		b2 := put("b", `forbid(principal, action, resource);`, b.Version)
		if b2.Version <= a.Version {
			t.Errorf("replaced b has version %d, want > %d", b2.Version, a.Version)
		}

		// Delete: a stale version is refused; a deleted name's versions are
		// never reused, so an ETag from before the delete cannot match
		// the next document of that name.
		if err := s.DeletePolicySource(ctx, "b", b.Version); !errors.Is(err, policy.ErrVersionConflict) {
			t.Errorf("DeletePolicySource(b, stale) = %v, want ErrVersionConflict", err)
		}
		if err := s.DeletePolicySource(ctx, "b", b2.Version); err != nil {
			t.Fatalf("DeletePolicySource(b) = %v", err)
		}
		if err := s.DeletePolicySource(ctx, "b", b2.Version); !errors.Is(err, policy.ErrPolicyNotFound) {
			t.Errorf("DeletePolicySource(b) again = %v, want ErrPolicyNotFound", err)
		}
		if _, err := s.GetPolicySource(ctx, "b"); !errors.Is(err, policy.ErrPolicyNotFound) {
			t.Errorf("GetPolicySource(deleted) = %v, want ErrPolicyNotFound", err)
		}
		v1, err := s.PolicySourcesVersion(ctx)
		if err != nil || v1 <= b2.Version {
			t.Errorf("PolicySourcesVersion after delete = %d, %v; want > %d", v1, err, b2.Version)
		}
		if _, err := s.PutPolicySource(ctx, &policy.StoredSource{Name: "b", Text: []byte(`x`), UpdatedAt: t0, UpdatedBy: "admin:alice"}, b2.Version); !errors.Is(err, policy.ErrVersionConflict) {
			t.Errorf("PutPolicySource(b, if pre-delete version) = %v, want ErrVersionConflict", err)
		}
		if b3 := put("b", `x`, 0); b3.Version <= v1 {
			t.Errorf("recreated b has version %d, want > %d", b3.Version, v1)
		}
		// A refused change leaves the poll version alone.
		v2, _ := s.PolicySourcesVersion(ctx)
		_, _ = s.PutPolicySource(ctx, &policy.StoredSource{Name: "b", Text: []byte(`y`), UpdatedAt: t0, UpdatedBy: "admin:alice"}, 0)
		if v3, _ := s.PolicySourcesVersion(ctx); v3 != v2 {
			t.Errorf("a refused put moved the version from %d to %d", v2, v3)
		}
	})

	t.Run("Invalid", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		big := make([]byte, policy.MaxSourceSize+1)
		for _, src := range []*policy.StoredSource{
			{Name: "../evil", Text: []byte(`x`), UpdatedAt: t0, UpdatedBy: "admin:alice"},
			{Name: "", Text: []byte(`x`), UpdatedAt: t0, UpdatedBy: "admin:alice"},
			{Name: "Big", Text: []byte(`x`), UpdatedAt: t0, UpdatedBy: "admin:alice"},
			{Name: "big", Text: big, UpdatedAt: t0, UpdatedBy: "admin:alice"},
			{Name: "anon", Text: []byte(`x`), UpdatedAt: t0},
			{Name: "undated", Text: []byte(`x`), UpdatedBy: "admin:alice"},
		} {
			if _, err := s.PutPolicySource(ctx, src, 0); !errors.Is(err, policy.ErrInvalidPolicy) {
				t.Errorf("PutPolicySource(%q, %d bytes, by %q) = %v, want ErrInvalidPolicy", src.Name, len(src.Text), src.UpdatedBy, err)
			}
		}
		if list, _ := s.ListPolicySources(ctx); len(list) != 0 {
			t.Errorf("invalid puts stored %d sources", len(list))
		}
	})

	t.Run("ConcurrentPuts", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		first, err := s.PutPolicySource(ctx, &policy.StoredSource{Name: "site", Text: []byte(`v0`), UpdatedAt: t0, UpdatedBy: "admin:alice"}, 0)
		if err != nil {
			t.Fatal(err)
		}
		// Eight writers race to replace the same revision: exactly one
		// wins, the others see a conflict.
		const n = 8
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() {
				_, errs[i] = s.PutPolicySource(ctx, &policy.StoredSource{Name: "site", Text: fmt.Appendf(nil, "v%d", i+1), UpdatedAt: t0, UpdatedBy: "admin:alice"}, first.Version)
			})
		}
		wg.Wait()
		won := -1
		for i, err := range errs {
			switch {
			case err == nil && won >= 0:
				t.Errorf("writers %d and %d both replaced version %d", won, i, first.Version)
			case err == nil:
				won = i
			case !errors.Is(err, policy.ErrVersionConflict):
				t.Errorf("writer %d: %v, want nil or ErrVersionConflict", i, err)
			}
		}
		if won < 0 {
			t.Fatal("no writer won")
		}
		got, err := s.GetPolicySource(ctx, "site")
		if err != nil || string(got.Text) != fmt.Sprintf("v%d", won+1) {
			t.Errorf("stored %+v, %v; want the winner's text v%d", got, err, won+1)
		}
	})
}
