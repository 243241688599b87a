package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

func newSecret(name string) *secrets.Secret {
	return &secrets.Secret{
		ID: "sec_" + name, Name: secrets.Name(name), Kind: secrets.KindStatic, Description: "the " + name + " token",
		Deliver:   []secrets.Target{{Upstream: "github", Env: "GITHUB_TOKEN"}, {Host: "api.github.com"}},
		Labels:    map[string]string{"team": "infra"},
		Version:   1,
		CreatedAt: t0, UpdatedAt: t0, UpdatedBy: "admin:alice",
	}
}

func testSecrets(t *testing.T, open OpenFunc) {
	t.Run("Lifecycle", func(t *testing.T) {
		t.Parallel()
		s := open(t)
		ctx := t.Context()
		if _, _, err := s.GetSecret(ctx, "nope"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("GetSecret(unknown) = %v, want ErrNotFound", err)
		}
		if list, err := s.ListSecrets(ctx); err != nil || list == nil || len(list) != 0 {
			t.Errorf("ListSecrets(empty) = %#v, %v; want an empty, non-nil slice", list, err)
		}
		gh := newSecret("github")
		pg := &secrets.Secret{ID: "sec_pg", Name: "app-db", Kind: secrets.KindPostgres,
			Postgres: &secrets.PostgresConfig{Grants: []string{"SELECT ON ALL TABLES IN SCHEMA public"}, MemberOf: []string{"readers"}},
			Version:  1, CreatedAt: t0, UpdatedAt: t0}
		// Sealed values come back byte for byte, NUL and high bytes included.
		ghSealed, pgSealed := []byte("mseal\x01\x00sealed\xff-gh"), []byte("mseal-pg")
		if err := s.CreateSecret(ctx, gh, ghSealed); err != nil {
			t.Fatalf("CreateSecret(github) = %v", err)
		}
		if err := s.CreateSecret(ctx, pg, pgSealed); err != nil {
			t.Fatalf("CreateSecret(app-db) = %v", err)
		}
		dup := newSecret("github")
		dup.ID = "sec_other"
		if err := s.CreateSecret(ctx, dup, ghSealed); !errors.Is(err, secrets.ErrExists) {
			t.Errorf("CreateSecret(taken name) = %v, want ErrExists", err)
		}
		bad := newSecret("Bad-Name")
		if err := s.CreateSecret(ctx, bad, ghSealed); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("CreateSecret(invalid name) = %v, want ErrInvalid", err)
		}
		if err := s.CreateSecret(ctx, newSecret("empty"), nil); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("CreateSecret(no sealed value) = %v, want ErrInvalid", err)
		}
		got, sealed, err := s.GetSecret(ctx, "github")
		if err != nil {
			t.Fatalf("GetSecret(github) = %v", err)
		}
		checkUTC(t, "GetSecret", got.CreatedAt, got.UpdatedAt)
		if diff := cmp.Diff(gh, got, cmpOpts); diff != "" {
			t.Errorf("GetSecret(github) mismatch (-want +got):\n%s", diff)
		}
		if string(sealed) != string(ghSealed) {
			t.Errorf("GetSecret(github) sealed = %q, want %q", sealed, ghSealed)
		}
		list, err := s.ListSecrets(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]*secrets.Secret{pg, gh}, list, cmpOpts); diff != "" {
			t.Errorf("ListSecrets() mismatch (-want +got):\n%s", diff)
		}

		// Update: only from the version read; ID and created_at stay.
		upd := *gh
		upd.ID, upd.CreatedAt = "sec_ignored", at(time.Hour)
		upd.Description, upd.Version, upd.UpdatedAt = "rotated", 2, at(time.Hour)
		if err := s.UpdateSecret(ctx, &upd, []byte("mseal-v2"), 5); !errors.Is(err, secrets.ErrChanged) {
			t.Errorf("UpdateSecret(stale version) = %v, want ErrChanged", err)
		}
		missing := newSecret("missing")
		if err := s.UpdateSecret(ctx, missing, nil, 1); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("UpdateSecret(unknown) = %v, want ErrNotFound", err)
		}
		if err := s.UpdateSecret(ctx, &upd, []byte("mseal-v2"), 1); err != nil {
			t.Fatalf("UpdateSecret() = %v", err)
		}
		got, sealed, _ = s.GetSecret(ctx, "github")
		want := upd
		want.ID, want.CreatedAt = gh.ID, gh.CreatedAt
		if diff := cmp.Diff(&want, got, cmpOpts); diff != "" || string(sealed) != "mseal-v2" {
			t.Errorf("after UpdateSecret: sealed %q, mismatch (-want +got):\n%s", sealed, diff)
		}
		// Metadata only: the sealed value is kept.
		meta := want
		meta.Description, meta.Deliver = "metadata only", nil
		if err := s.UpdateSecret(ctx, &meta, nil, 2); err != nil {
			t.Fatalf("UpdateSecret(metadata only) = %v", err)
		}
		if got, sealed, _ = s.GetSecret(ctx, "github"); got.Description != "metadata only" || string(sealed) != "mseal-v2" {
			t.Errorf("after a metadata update: %q, sealed %q; want the value kept", got.Description, sealed)
		}

		// Re-wrap: compare-and-swap on the sealed bytes.
		if err := s.ReplaceSecretValue(ctx, "github", []byte("not it"), []byte("x")); !errors.Is(err, secrets.ErrChanged) {
			t.Errorf("ReplaceSecretValue(wrong old) = %v, want ErrChanged", err)
		}
		if err := s.ReplaceSecretValue(ctx, "nope", nil, []byte("x")); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("ReplaceSecretValue(unknown) = %v, want ErrNotFound", err)
		}
		if err := s.ReplaceSecretValue(ctx, "github", []byte("mseal-v2"), []byte("mseal-rewrapped")); err != nil {
			t.Fatalf("ReplaceSecretValue() = %v", err)
		}
		if got, sealed, _ = s.GetSecret(ctx, "github"); string(sealed) != "mseal-rewrapped" || got.Version != 2 {
			t.Errorf("after ReplaceSecretValue: version %d, sealed %q; want 2, the new value", got.Version, sealed)
		}

		if err := s.DeleteSecret(ctx, "github"); err != nil {
			t.Fatalf("DeleteSecret() = %v", err)
		}
		if err := s.DeleteSecret(ctx, "github"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("DeleteSecret(twice) = %v, want ErrNotFound", err)
		}
		if _, _, err := s.GetSecret(ctx, "github"); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("GetSecret(deleted) = %v, want ErrNotFound", err)
		}
		// The name is free again, and the other secret is untouched.
		if err := s.CreateSecret(ctx, newSecret("github"), ghSealed); err != nil {
			t.Errorf("CreateSecret(after delete) = %v", err)
		}
		if got, sealed, err := s.GetSecret(ctx, "app-db"); err != nil || string(sealed) != string(pgSealed) || cmp.Diff(pg, got, cmpOpts) != "" {
			t.Errorf("GetSecret(app-db) = %+v, %q, %v; want it unchanged", got, sealed, err)
		}
	})
}

// leaseFixture is a store with one agent and two active tasks.
type leaseFixture struct {
	s      store.Backend
	t1, t2 *task.Task
}

func newLeaseFixture(t *testing.T, open OpenFunc) leaseFixture {
	s := open(t)
	a := newAgent("leaser")
	mustCreateAgents(t, s, a)
	t1, t2 := newTask(a.ID, nil), newTask(a.ID, nil)
	mustCreateTasks(t, s, t1, t2)
	return leaseFixture{s: s, t1: t1, t2: t2}
}

func newLease(tk *task.Task, secret string, issued time.Duration) *secrets.Lease {
	return &secrets.Lease{
		ID: secrets.NewLeaseID(), Secret: secrets.Name(secret), Kind: secrets.KindStatic, Task: tk.ID, Agent: tk.Agent.String(),
		IssuedAt: at(issued), ExpiresAt: at(issued + 10*time.Minute), Status: secrets.LeaseActive,
	}
}

func testLeases(t *testing.T, open OpenFunc) {
	t.Run("CreateChecksTheTask", func(t *testing.T) {
		t.Parallel()
		f := newLeaseFixture(t, open)
		ctx := t.Context()
		ok := newLease(f.t1, "github", 0)
		if err := f.s.CreateLease(ctx, ok, nil); err != nil {
			t.Fatalf("CreateLease() = %v", err)
		}
		if err := f.s.CreateLease(ctx, ok, nil); !errors.Is(err, secrets.ErrExists) {
			t.Errorf("CreateLease(same id) = %v, want ErrExists", err)
		}
		for name, tc := range map[string]struct {
			mod  func(*secrets.Lease)
			want error
		}{
			"unknown task":        {func(l *secrets.Lease) { l.Task = task.NewID() }, task.ErrNotFound},
			"another agent":       {func(l *secrets.Lease) { l.Agent = agentID("other").String() }, task.ErrNotActive},
			"outlives the task":   {func(l *secrets.Lease) { l.ExpiresAt = f.t1.ExpiresAt.Add(time.Nanosecond) }, secrets.ErrInvalid},
			"after task expiry":   {func(l *secrets.Lease) { l.IssuedAt, l.ExpiresAt = f.t1.ExpiresAt, f.t1.ExpiresAt.Add(time.Second) }, task.ErrNotActive},
			"not active":          {func(l *secrets.Lease) { l.Status = secrets.LeaseRevoked }, secrets.ErrInvalid},
			"invalid secret name": {func(l *secrets.Lease) { l.Secret = "../x" }, secrets.ErrInvalid},
		} {
			l := newLease(f.t1, "github", 0)
			tc.mod(l)
			if err := f.s.CreateLease(ctx, l, nil); !errors.Is(err, tc.want) {
				t.Errorf("%s: CreateLease() = %v, want %v", name, err, tc.want)
			}
		}
		// A task that ended refuses new leases.
		if _, err := f.s.FinishTask(ctx, f.t2.ID, task.StatusEnded, "done", at(time.Minute)); err != nil {
			t.Fatal(err)
		}
		if err := f.s.CreateLease(ctx, newLease(f.t2, "github", 2*time.Minute), nil); !errors.Is(err, task.ErrNotActive) {
			t.Errorf("CreateLease(ended task) = %v, want task.ErrNotActive", err)
		}
		got, err := f.s.GetLease(ctx, ok.ID)
		if err != nil {
			t.Fatal(err)
		}
		checkUTC(t, "GetLease", got.IssuedAt, got.ExpiresAt)
		if diff := cmp.Diff(ok, got, cmpOpts); diff != "" {
			t.Errorf("GetLease() mismatch (-want +got):\n%s", diff)
		}
		if _, err := f.s.GetLease(ctx, secrets.NewLeaseID()); !errors.Is(err, secrets.ErrLeaseNotFound) {
			t.Errorf("GetLease(unknown) = %v, want ErrLeaseNotFound", err)
		}
	})

	t.Run("UpdateListAndValues", func(t *testing.T) {
		t.Parallel()
		f := newLeaseFixture(t, open)
		ctx := t.Context()
		a := newLease(f.t1, "github", 0)
		b := newLease(f.t1, "app-db", time.Second)
		b.Kind, b.Handle = secrets.KindPostgres, "mandate_lease_b"
		c := newLease(f.t2, "github", 2*time.Second)
		if err := f.s.CreateLease(ctx, a, nil); err != nil {
			t.Fatal(err)
		}
		if err := f.s.CreateLease(ctx, b, []byte("mseal-b")); err != nil {
			t.Fatal(err)
		}
		if err := f.s.CreateLease(ctx, c, nil); err != nil {
			t.Fatal(err)
		}
		if v, err := f.s.LeaseValue(ctx, a.ID); err != nil || v != nil {
			t.Errorf("LeaseValue(static lease) = %q, %v; want nil", v, err)
		}
		if v, err := f.s.LeaseValue(ctx, b.ID); err != nil || string(v) != "mseal-b" {
			t.Errorf("LeaseValue(dynamic lease) = %q, %v; want mseal-b", v, err)
		}
		if _, err := f.s.LeaseValue(ctx, secrets.NewLeaseID()); !errors.Is(err, secrets.ErrLeaseNotFound) {
			t.Errorf("LeaseValue(unknown) = %v, want ErrLeaseNotFound", err)
		}
		if err := f.s.ReplaceLeaseValue(ctx, b.ID, []byte("wrong"), []byte("x")); !errors.Is(err, secrets.ErrChanged) {
			t.Errorf("ReplaceLeaseValue(wrong old) = %v, want ErrChanged", err)
		}
		if err := f.s.ReplaceLeaseValue(ctx, a.ID, nil, []byte("x")); !errors.Is(err, secrets.ErrChanged) {
			t.Errorf("ReplaceLeaseValue(lease without a value) = %v, want ErrChanged", err)
		}
		if err := f.s.ReplaceLeaseValue(ctx, b.ID, []byte("mseal-b"), []byte("mseal-b2")); err != nil {
			t.Fatalf("ReplaceLeaseValue() = %v", err)
		}

		list := func(lf secrets.LeaseFilter) []secrets.LeaseID {
			t.Helper()
			ls, err := f.s.ListLeases(ctx, lf)
			if err != nil {
				t.Fatalf("ListLeases(%+v) = %v", lf, err)
			}
			ids := []secrets.LeaseID{}
			for _, l := range ls {
				ids = append(ids, l.ID)
			}
			return ids
		}
		for name, tc := range map[string]struct {
			f    secrets.LeaseFilter
			want []secrets.LeaseID
		}{
			"all, newest first": {secrets.LeaseFilter{}, []secrets.LeaseID{c.ID, b.ID, a.ID}},
			"by task":           {secrets.LeaseFilter{Task: f.t1.ID}, []secrets.LeaseID{b.ID, a.ID}},
			"by secret":         {secrets.LeaseFilter{Secret: "github"}, []secrets.LeaseID{c.ID, a.ID}},
			"limit":             {secrets.LeaseFilter{Limit: 1}, []secrets.LeaseID{c.ID}},
			"no match":          {secrets.LeaseFilter{Statuses: []secrets.LeaseStatus{secrets.LeaseFailed}}, []secrets.LeaseID{}},
		} {
			if diff := cmp.Diff(tc.want, list(tc.f)); diff != "" {
				t.Errorf("%s: ListLeases mismatch (-want +got):\n%s", name, diff)
			}
		}

		// A failed revocation keeps the credential (it may still work)...
		failed := *b
		failed.Status, failed.EndedAt, failed.Reason = secrets.LeaseFailed, at(time.Minute), "task ended"
		failed.Attempts, failed.LastError, failed.NextAttempt = 1, "connection refused", at(2*time.Minute)
		if err := f.s.UpdateLease(ctx, &failed, secrets.LeaseRevoked); !errors.Is(err, secrets.ErrChanged) {
			t.Errorf("UpdateLease(from the wrong status) = %v, want ErrChanged", err)
		}
		unknown := *b
		unknown.ID = secrets.NewLeaseID()
		if err := f.s.UpdateLease(ctx, &unknown, secrets.LeaseActive); !errors.Is(err, secrets.ErrLeaseNotFound) {
			t.Errorf("UpdateLease(unknown) = %v, want ErrLeaseNotFound", err)
		}
		if err := f.s.UpdateLease(ctx, &failed, secrets.LeaseActive); err != nil {
			t.Fatalf("UpdateLease(to failed) = %v", err)
		}
		if got, _ := f.s.GetLease(ctx, b.ID); cmp.Diff(&failed, got, cmpOpts) != "" {
			t.Errorf("GetLease after UpdateLease mismatch (-want +got):\n%s", cmp.Diff(&failed, got, cmpOpts))
		}
		if v, _ := f.s.LeaseValue(ctx, b.ID); string(v) != "mseal-b2" {
			t.Errorf("LeaseValue(failed lease) = %q, want it kept", v)
		}
		// ...and a revoked one loses it.
		done := failed
		done.Status, done.NextAttempt = secrets.LeaseRevoked, time.Time{}
		if err := f.s.UpdateLease(ctx, &done, secrets.LeaseFailed); err != nil {
			t.Fatalf("UpdateLease(to revoked) = %v", err)
		}
		if v, err := f.s.LeaseValue(ctx, b.ID); err != nil || v != nil {
			t.Errorf("LeaseValue(revoked lease) = %q, %v; want nil", v, err)
		}
		got := list(secrets.LeaseFilter{Statuses: []secrets.LeaseStatus{secrets.LeaseRevoked, secrets.LeaseFailed}})
		if diff := cmp.Diff([]secrets.LeaseID{b.ID}, got); diff != "" {
			t.Errorf("ListLeases(revoked or failed) mismatch (-want +got):\n%s", diff)
		}
		counts, err := f.s.CountLeases(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(map[secrets.LeaseStatus]int{secrets.LeaseActive: 2, secrets.LeaseRevoked: 1}, counts); diff != "" {
			t.Errorf("CountLeases() mismatch (-want +got):\n%s", diff)
		}
	})

	t.Run("Due", func(t *testing.T) {
		t.Parallel()
		f := newLeaseFixture(t, open)
		ctx := t.Context()
		expired := newLease(f.t1, "a", 0)                     // expires at +10m
		live := newLease(f.t1, "b", time.Hour-15*time.Minute) // expires at +55m
		ofEnded := newLease(f.t2, "c", time.Minute)           // its task ends
		retryDue, retryLater := newLease(f.t1, "d", 2*time.Minute), newLease(f.t1, "e", 3*time.Minute)
		for _, l := range []*secrets.Lease{expired, live, ofEnded, retryDue, retryLater} {
			if err := f.s.CreateLease(ctx, l, nil); err != nil {
				t.Fatal(err)
			}
		}
		for _, r := range []struct {
			l    *secrets.Lease
			next time.Duration
		}{{retryDue, 20 * time.Minute}, {retryLater, 40 * time.Minute}} {
			u := *r.l
			u.Status, u.Attempts, u.NextAttempt, u.EndedAt = secrets.LeaseFailed, 1, at(r.next), at(5*time.Minute)
			if err := f.s.UpdateLease(ctx, &u, secrets.LeaseActive); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := f.s.FinishTask(ctx, f.t2.ID, task.StatusRevoked, "runaway", at(5*time.Minute)); err != nil {
			t.Fatal(err)
		}
		due, err := f.s.DueLeases(ctx, at(30*time.Minute), 0)
		if err != nil {
			t.Fatalf("DueLeases() = %v", err)
		}
		ids := []secrets.LeaseID{}
		for _, l := range due {
			ids = append(ids, l.ID)
		}
		if diff := cmp.Diff([]secrets.LeaseID{expired.ID, ofEnded.ID, retryDue.ID}, ids); diff != "" {
			t.Errorf("DueLeases(+30m) mismatch (-want +got):\n%s", diff)
		}
		if due, _ := f.s.DueLeases(ctx, at(30*time.Minute), 1); len(due) != 1 || due[0].ID != expired.ID {
			t.Errorf("DueLeases(limit 1) = %d leases, want the oldest", len(due))
		}
		// Past the task's own expiry (not yet marked expired), every active
		// lease of it is due.
		due, _ = f.s.DueLeases(ctx, f.t1.ExpiresAt, 0)
		if len(due) != 5 {
			t.Errorf("DueLeases(at the task's expiry) = %d leases, want 5", len(due))
		}
	})
}
