package secrets_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
)

const ghValue = "ghp_s3cr3t-VALUE-never-shown"

func TestLeaseStatic(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	e.put(t, "github-token", ghValue)
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token")
	l, err := e.broker.Lease(ctx, tk.ID, "github-token", 10*time.Minute)
	if err != nil {
		t.Fatalf("Lease() = %v", err)
	}
	if l.Status != secrets.LeaseActive || l.Task != tk.ID || l.Agent != tk.Agent.String() || l.ExpiresAt.After(tk.ExpiresAt) {
		t.Errorf("Lease() = %+v, want an active lease of %s ending by its expiry", l, tk.ID)
	}
	// The lease never outlives the task, whatever ttl is asked.
	long, err := e.broker.Lease(ctx, tk.ID, "github-token", 48*time.Hour)
	if err != nil || !long.ExpiresAt.Equal(tk.ExpiresAt) {
		t.Errorf("Lease(48h) = %+v, %v; want it to end with the task at %v", long, err, tk.ExpiresAt)
	}
	ds, err := e.broker.ForUpstream(ctx, tk.ID, "github")
	if err != nil || len(ds) != 2 || string(ds[0].Value.Bytes()) != ghValue || ds[0].Target.Env != "GITHUB_TOKEN" {
		t.Fatalf("ForUpstream(github) = %+v, %v; want the value once per lease", ds, err)
	}
	if ds, _ := e.broker.ForUpstream(ctx, tk.ID, "other"); len(ds) != 0 {
		t.Errorf("ForUpstream(other) = %d deliveries, want none", len(ds))
	}
	if ds, _ := e.broker.ForHost(ctx, tk.ID, "api.github.com"); len(ds) != 2 {
		t.Errorf("ForHost(api.github.com) = %d deliveries, want 2", len(ds))
	}
	// The decision came first and went through the pipeline...
	decided := e.rec.ofType(audit.TypeActionDecided)
	if len(decided) != 2 || decided[0].Action != "secret.use" || decided[0].Decision != audit.DecisionAllow || decided[0].Resource != "secret:github-token" {
		t.Errorf("action.decided events = %+v, want two allowed secret.use", decided)
	}
	// ...and the ledger holds the value's keyed digest, never the value.
	issued := e.rec.ofType(secrets.TypeLeaseIssued)
	if len(issued) != 2 || issued[0].Details["lease"] != string(l.ID) || issued[0].Details["value_hmac"] != e.ledger.Redactor().HMAC([]byte(ghValue)) {
		t.Errorf("lease events = %+v", issued)
	}
	lb, _ := json.Marshal(l)
	dsText := fmt.Sprintf("%v %+v %#v", ds, ds, ds)
	noValue(t, ghValue, e.rec.text(t), string(lb), dsText)
}

func TestLeaseDecisions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{defaults: true})
	ctx := t.Context()
	e.put(t, "github-token", ghValue)
	e.put(t, "other", "other-value")
	for name, tc := range map[string]struct {
		tier   identity.Tier
		secret string
		scope  []string
		want   error
	}{
		"assist agents are denied":          {identity.TierAssist, "github-token", []string{"github-token"}, secrets.ErrDenied},
		"autonomous agents need step-up":    {identity.TierAutonomous, "github-token", []string{"github-token"}, secrets.ErrApprovalRequired},
		"supervised agents need approval":   {identity.TierSupervised, "github-token", []string{"github-token"}, secrets.ErrApprovalRequired},
		"a secret outside the task's scope": {identity.TierSupervised, "other", []string{"github-token"}, secrets.ErrDenied},
		"an unknown secret outside scope":   {identity.TierSupervised, "nope", []string{"github-token"}, secrets.ErrDenied},
	} {
		tk := e.startTask(t, strings.ReplaceAll(strings.ToLower(name), " ", "-")[:20], tc.tier, "1h", tc.scope...)
		before := len(e.rec.ofType(audit.TypeActionDecided))
		l, err := e.broker.Lease(ctx, tk.ID, tc.secret, 0)
		if !errors.Is(err, tc.want) || l != nil {
			t.Errorf("%s: Lease() = %v, %v; want %v", name, l, err, tc.want)
		}
		if n := len(e.rec.ofType(audit.TypeActionDecided)); n != before+1 {
			t.Errorf("%s: %d decisions recorded, want one", name, n-before)
		}
		if ls, _ := e.broker.Leases(ctx, secrets.LeaseFilter{Task: tk.ID}); len(ls) != 0 {
			t.Errorf("%s: %d leases stored, want none", name, len(ls))
		}
	}
	var de *secrets.DecisionError
	tk := e.startTask(t, "auto2", identity.TierAutonomous, "1h", "github-token")
	defer func() {
		// With the test policy: the per-secret forbid, and an unknown
		// secret is decided first, then not found.
		e := newEnv(t, envOpts{})
		e.put(t, "forbidden", "v")
		tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "forbidden", "nope")
		if _, err := e.broker.Lease(ctx, tk.ID, "forbidden", 0); !errors.Is(err, secrets.ErrDenied) || !strings.Contains(err.Error(), "off limits") {
			t.Errorf("Lease(forbidden) = %v, want ErrDenied with the policy's reason", err)
		}
		if _, err := e.broker.Lease(ctx, tk.ID, "nope", 0); !errors.Is(err, secrets.ErrNotFound) {
			t.Errorf("Lease(unknown) = %v, want ErrNotFound", err)
		}
		if n := len(e.rec.ofType(audit.TypeActionDecided)); n != 2 {
			t.Errorf("%d decisions recorded, want 2", n)
		}
	}()
	if _, err := e.broker.Lease(ctx, tk.ID, "github-token", 0); !errors.As(err, &de) || !strings.Contains(err.Error(), "step-up") {
		t.Errorf("Lease(autonomous) = %v, want a DecisionError naming the step-up reason", err)
	}
}

// TestLeaseForEndedTask: a task that ended gets no lease: the decider
// refuses it, and the store would too.
func TestLeaseForEndedTask(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := admin.WithActor(t.Context(), "admin:test")
	e.put(t, "github-token", ghValue)
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token")
	if _, _, err := e.admin.EndTask(ctx, string(tk.ID), "done"); err != nil {
		t.Fatal(err)
	}
	if l, err := e.broker.Lease(ctx, tk.ID, "github-token", 0); !errors.Is(err, secrets.ErrDenied) || l != nil {
		t.Errorf("Lease(ended task) = %v, %v; want ErrDenied", l, err)
	}
	if _, err := e.broker.Lease(ctx, task.NewID(), "github-token", 0); !errors.Is(err, task.ErrNotFound) {
		t.Errorf("Lease(unknown task) = %v, want task.ErrNotFound", err)
	}
}

// TestRevokeOnTaskEnd: ending or revoking a task revokes its leases
// before EndTask returns; no sweep is needed.
func TestRevokeOnTaskEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := admin.WithActor(t.Context(), "admin:test")
	e.put(t, "github-token", ghValue)
	for _, how := range []string{"end", "revoke"} {
		tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token")
		l, err := e.broker.Lease(ctx, tk.ID, "github-token", 0)
		if err != nil {
			t.Fatal(err)
		}
		finish := e.admin.EndTask
		if how == "revoke" {
			finish = e.admin.RevokeTask
		}
		if _, _, err := finish(ctx, string(tk.ID), "done"); err != nil {
			t.Fatal(err)
		}
		if got := e.lease(t, l.ID); got.Status != secrets.LeaseRevoked || got.Reason != "its task stopped" {
			t.Errorf("%s: lease after the task stopped = %s (%q), want revoked at once", how, got.Status, got.Reason)
		}
		if ds, err := e.broker.ForUpstream(ctx, tk.ID, "github"); err != nil || len(ds) != 0 {
			t.Errorf("%s: ForUpstream after the task stopped = %d deliveries, %v; want none", how, len(ds), err)
		}
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseRevoked)); n != 2 {
		t.Errorf("%d lease_revoked events, want 2", n)
	}
}

// TestExpiryWithinOneSweep: a lease past its expiry, or whose task is past
// its expiry (not yet marked expired), is revoked by the next sweep.
func TestExpiryWithinOneSweep(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	e.put(t, "github-token", ghValue)
	tk := e.startTask(t, "builder", identity.TierSupervised, "30m", "github-token")
	short, err := e.broker.Lease(ctx, tk.ID, "github-token", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	whole, err := e.broker.Lease(ctx, tk.ID, "github-token", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := e.broker.Sweep(ctx); err != nil || n != 0 {
		t.Errorf("Sweep(before expiry) = %d, %v; want 0", n, err)
	}
	e.clock.Advance(time.Minute)
	if n, err := e.broker.Sweep(ctx); err != nil || n != 1 {
		t.Errorf("Sweep(at the lease's expiry) = %d, %v; want 1", n, err)
	}
	if got := e.lease(t, short.ID); got.Status != secrets.LeaseExpired {
		t.Errorf("short lease after one sweep = %s, want expired", got.Status)
	}
	if ds, _ := e.broker.ForUpstream(ctx, tk.ID, "github"); len(ds) != 1 {
		t.Errorf("ForUpstream = %d deliveries, want only the live lease's", len(ds))
	}
	e.clock.Advance(30 * time.Minute) // the task's expiry: the store has not marked it yet
	if n, err := e.broker.Sweep(ctx); err != nil || n != 1 {
		t.Errorf("Sweep(at the task's expiry) = %d, %v; want 1", n, err)
	}
	if got := e.lease(t, whole.ID); got.Status != secrets.LeaseExpired {
		t.Errorf("lease after its task's expiry and one sweep = %s, want expired", got.Status)
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseExpired)); n != 2 {
		t.Errorf("%d lease_expired events, want 2", n)
	}
}

// TestCorruptedCiphertext: a secret whose stored value was altered is
// unusable; the others still lease.
func TestCorruptedCiphertext(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	e.put(t, "good", "good-value")
	e.put(t, "bad", "bad-value")
	_, sealed, err := e.backend.GetSecret(ctx, "bad")
	if err != nil {
		t.Fatal(err)
	}
	altered := bytes.Clone(sealed)
	altered[len(altered)-1] ^= 1
	if err := e.backend.ReplaceSecretValue(ctx, "bad", sealed, altered); err != nil {
		t.Fatal(err)
	}
	// A value moved to another secret's row does not open either.
	_, goodSealed, _ := e.backend.GetSecret(ctx, "good")
	e.put(t, "moved", "moved-value")
	_, movedSealed, _ := e.backend.GetSecret(ctx, "moved")
	if err := e.backend.ReplaceSecretValue(ctx, "moved", movedSealed, goodSealed); err != nil {
		t.Fatal(err)
	}
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "good", "bad", "moved")
	for _, name := range []string{"bad", "moved"} {
		if _, err := e.broker.Lease(ctx, tk.ID, name, 0); !errors.Is(err, secrets.ErrUnusable) {
			t.Errorf("Lease(%s) = %v, want ErrUnusable", name, err)
		}
	}
	if _, err := e.broker.Lease(ctx, tk.ID, "good", 0); err != nil {
		t.Errorf("Lease(good) = %v, want the other secret usable", err)
	}
	rep, err := e.broker.Rewrap(ctx, "system")
	if err != nil || len(rep.Unusable) != 2 {
		t.Errorf("Rewrap() = %+v, %v; want bad and moved unusable, no error", rep, err)
	}
	if n := len(e.rec.ofType(secrets.TypeLeaseFailed)); n != 2 {
		t.Errorf("%d lease_failed events, want 2", n)
	}
}

// TestWrongKEK: a server whose key-encryption key did not seal the
// secrets refuses them all at the start's re-wrap, with a message naming
// the keys; nothing opens wrongly.
func TestWrongKEK(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	e.put(t, "github-token", ghValue)
	other, err := seal.GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	ring, _ := seal.NewKeyring(other)
	b := e.newBroker(t, ring)
	_, err = b.Rewrap(t.Context(), "system")
	if !errors.Is(err, seal.ErrUnknownKEK) || !strings.Contains(err.Error(), sealtest.KEK().ID()) || !strings.Contains(err.Error(), other.ID()) {
		t.Errorf("Rewrap(wrong KEK) = %v, want ErrUnknownKEK naming both keys", err)
	}
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token")
	if _, err := b.Lease(t.Context(), tk.ID, "github-token", 0); !errors.Is(err, secrets.ErrUnusable) {
		t.Errorf("Lease(wrong KEK) = %v, want ErrUnusable", err)
	}
}

// TestKEKRotation: after a new primary KEK, Rewrap seals everything again
// under it, and the old KEK can then be dropped.
func TestKEKRotation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	e.put(t, "a", "value-a")
	e.put(t, "b", "value-b")
	next, _ := seal.GenerateKEK()
	both, _ := seal.NewKeyring(next, sealtest.KEK())
	b := e.newBroker(t, both)
	rep, err := b.Rewrap(ctx, "admin:test")
	if err != nil || rep.Secrets != 2 || rep.PrimaryKEK != next.ID() {
		t.Fatalf("Rewrap() = %+v, %v; want 2 resealed under %s", rep, err, next.ID())
	}
	if rep, _ := b.Rewrap(ctx, "admin:test"); rep.Secrets != 0 {
		t.Errorf("second Rewrap() resealed %d, want 0", rep.Secrets)
	}
	only, _ := seal.NewKeyring(next)
	nb := e.newBroker(t, only)
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "a")
	if _, err := nb.Lease(ctx, tk.ID, "a", 0); err != nil {
		t.Fatalf("Lease() under the new KEK alone = %v", err)
	}
	if ds, _ := nb.ForUpstream(ctx, tk.ID, "github"); len(ds) != 1 || string(ds[0].Value.Bytes()) != "value-a" {
		t.Errorf("ForUpstream after rotation = %+v", ds)
	}
	if evs := e.rec.ofType(secrets.TypeSecretsRewrapped); len(evs) != 1 || evs[0].Details["secrets"] != "2" {
		t.Errorf("rewrapped events = %+v, want one for 2 secrets", evs)
	}
}

func TestPutRotateRemove(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	s := e.put(t, "github-token", "v1-value")
	if s.Version != 1 || s.ID == "" {
		t.Errorf("Put() = %+v, want version 1", s)
	}
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token")
	l, err := e.broker.Lease(ctx, tk.ID, "github-token", 0)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.broker.Rotate(ctx, "admin:test", "github-token", []byte("v2-value"))
	if err != nil || r.Version != 2 {
		t.Fatalf("Rotate() = %+v, %v", r, err)
	}
	if ds, _ := e.broker.ForUpstream(ctx, tk.ID, "github"); len(ds) != 1 || string(ds[0].Value.Bytes()) != "v2-value" {
		t.Errorf("ForUpstream after Rotate = %+v, want the new value", ds)
	}
	// A metadata-only put keeps the value; a kind change is refused.
	if s, created, err := e.broker.Put(ctx, "admin:test", secrets.PutRequest{Name: "github-token", Description: "new"}); err != nil || created || s.Version != 2 {
		t.Errorf("Put(metadata only) = %+v, %v, %v", s, created, err)
	}
	if _, _, err := e.broker.Put(ctx, "admin:test", secrets.PutRequest{Name: "github-token", Kind: secrets.KindPostgres,
		Postgres: &secrets.PostgresConfig{MemberOf: []string{"r"}}}); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("Put(kind change) = %v, want ErrInvalid", err)
	}
	if err := e.broker.Remove(ctx, "admin:test", "github-token"); err != nil {
		t.Fatalf("Remove() = %v", err)
	}
	if got := e.lease(t, l.ID); got.Status != secrets.LeaseRevoked {
		t.Errorf("lease after Remove = %s, want revoked", got.Status)
	}
	if _, err := e.broker.Get(ctx, "github-token"); !errors.Is(err, secrets.ErrNotFound) {
		t.Errorf("Get(removed) = %v, want ErrNotFound", err)
	}
	for _, typ := range []audit.Type{secrets.TypeSecretPut, secrets.TypeSecretRotated, secrets.TypeSecretRemoved} {
		if len(e.rec.ofType(typ)) == 0 {
			t.Errorf("no %s event", typ)
		}
	}
	noValue(t, "v1-value", e.rec.text(t))
	noValue(t, "v2-value", e.rec.text(t))
}

func TestBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	huge := bytes.Repeat([]byte("x"), secrets.MaxValueSize+1)
	for name, req := range map[string]secrets.PutRequest{
		"invalid name":       {Name: "GitHub", Value: []byte("v")},
		"traversal name":     {Name: "../etc", Value: []byte("v")},
		"empty name":         {Name: "", Value: []byte("v")},
		"oversized value":    {Name: "big", Value: huge},
		"empty value":        {Name: "empty", Value: []byte{}},
		"no value":           {Name: "novalue"},
		"bad target":         {Name: "t", Value: []byte("v"), Deliver: []secrets.Target{{Upstream: "x", Env: "A-B"}}},
		"duplicate target":   {Name: "t", Value: []byte("v"), Deliver: []secrets.Target{{Host: "a.example"}, {Host: "a.example"}}},
		"unknown kind":       {Name: "k", Kind: "vault", Value: []byte("v")},
		"no postgres engine": {Name: "p", Kind: secrets.KindPostgres, Value: []byte("postgres://x"), Postgres: &secrets.PostgresConfig{MemberOf: []string{"r"}}},
	} {
		_, _, err := e.broker.Put(ctx, "admin:test", req)
		if !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("%s: Put() = %v, want ErrInvalid", name, err)
		}
		if err != nil && strings.Contains(err.Error(), "xxxxxxxx") {
			t.Errorf("%s: the error shows the value", name)
		}
	}
	e.put(t, "ok", "value")
	if _, err := e.broker.Rotate(ctx, "admin:test", "ok", huge); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("Rotate(oversized) = %v, want ErrInvalid", err)
	}
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "ok")
	if _, err := e.broker.Lease(ctx, tk.ID, "Ok", 0); !errors.Is(err, secrets.ErrInvalid) {
		t.Errorf("Lease(invalid name) = %v, want ErrInvalid", err)
	}
	if n := len(e.rec.ofType(secrets.TypeSecretPut)); n != 1 {
		t.Errorf("%d secret.put events, want only the valid one", n)
	}
}

// TestIssueUnrecorded: a lease whose issue the ledger cannot take is
// revoked at once and returns the error.
func TestIssueUnrecorded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envOpts{})
	ctx := t.Context()
	e.put(t, "github-token", ghValue)
	tk := e.startTask(t, "builder", identity.TierSupervised, "1h", "github-token")
	// The decision is recorded by the pipeline; only the issue fails.
	rec := &failBroker{tee: e.rec}
	b, err := secrets.New(secrets.Config{Store: e.backend, Tasks: e.backend, Sealer: e.sealer, Decider: e.pipeline, Recorder: rec,
		Digester: e.ledger.Redactor(), Now: e.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if l, err := b.Lease(ctx, tk.ID, "github-token", 0); !errors.Is(err, audit.ErrUnavailable) || l != nil {
		t.Errorf("Lease(ledger down) = %v, %v; want audit.ErrUnavailable", l, err)
	}
	ls, _ := e.broker.Leases(ctx, secrets.LeaseFilter{Task: tk.ID})
	if len(ls) != 1 || ls[0].Status != secrets.LeaseRevoked {
		t.Errorf("leases = %+v, want the one stored revoked", ls)
	}
	if ds, _ := b.ForUpstream(ctx, tk.ID, "github"); len(ds) != 0 {
		t.Errorf("ForUpstream = %d deliveries, want none", len(ds))
	}
}

// failBroker fails every broker event (the pipeline records through tee).
type failBroker struct{ tee *tee }

func (f *failBroker) Record(ctx context.Context, ev audit.Event) error {
	if ev.Point == secrets.Point {
		return audit.ErrUnavailable
	}
	return f.tee.Record(ctx, ev)
}
