package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
)

func newApproval(tk task.ID, owner string, created time.Time) *approval.Request {
	return &approval.Request{
		ID: approval.NewID(), Agent: agentID("deployer").String(), AgentTier: "autonomous", AgentOwner: owner,
		Escalation: "oncall@example.org", Task: tk, TaskExpiresAt: created.Add(time.Hour), Chain: []string{agentID("deployer").String()},
		OnBehalfOf: "user:alice", Principal: "user:alice", Action: "tool.call", Resource: "ci/deploy", Server: "ci",
		ArgsDigest: "hmac-sha256:00ff", Arguments: []byte(`sealed-bytes`),
		Reasons: []string{"autonomous-step-up: needs step-up"}, Approvals: []string{"step-up"}, PolicyVersion: "pv1:abc",
		Point: "mcp", CreatedAt: created, ExpiresAt: created.Add(15 * time.Minute), Status: approval.StatusPending,
	}
}

// testApprovals: requests round-trip, decisions are compare-and-set on
// the status, a once approval is used exactly once, and lists filter.
func testApprovals(t *testing.T, open OpenFunc) {
	ctx := t.Context()
	var s store.Backend = open(t)
	r := newApproval("tsk_1", "alice@example.org", t0)
	if err := s.CreateApproval(ctx, r); err != nil {
		t.Fatalf("CreateApproval() = %v", err)
	}
	if err := s.CreateApproval(ctx, r); !errors.Is(err, approval.ErrExists) {
		t.Errorf("CreateApproval(same id) = %v, want ErrExists", err)
	}
	got, err := s.GetApproval(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, got, cmpOpts); diff != "" {
		t.Errorf("GetApproval() differs (-want +got):\n%s", diff)
	}
	checkUTC(t, "GetApproval", got.CreatedAt, got.ExpiresAt, got.TaskExpiresAt)
	if _, err := s.GetApproval(ctx, approval.NewID()); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("GetApproval(unknown) = %v, want ErrNotFound", err)
	}

	// Using a pending request is a conflict; so is updating from the
	// wrong status.
	if err := s.UseApproval(ctx, r.ID, at(time.Minute)); !errors.Is(err, approval.ErrConflict) {
		t.Errorf("UseApproval(pending) = %v, want ErrConflict", err)
	}
	dec := *got
	dec.Status, dec.Decider, dec.DecidedAt, dec.Reach, dec.ApprovedUntil, dec.Reason =
		approval.StatusApproved, "alice@example.org", at(time.Minute), approval.ReachOnce, at(15*time.Minute), "looks right"
	if err := s.UpdateApproval(ctx, &dec, approval.StatusDenied); !errors.Is(err, approval.ErrConflict) {
		t.Errorf("UpdateApproval(from denied) = %v, want ErrConflict", err)
	}
	if err := s.UpdateApproval(ctx, &dec, approval.StatusPending); err != nil {
		t.Fatalf("UpdateApproval(from pending) = %v", err)
	}
	if err := s.UpdateApproval(ctx, &dec, approval.StatusPending); !errors.Is(err, approval.ErrConflict) {
		t.Errorf("UpdateApproval(twice) = %v, want ErrConflict", err)
	}
	unknown := newApproval("tsk_1", "x", t0)
	if err := s.UpdateApproval(ctx, unknown, approval.StatusPending); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("UpdateApproval(unknown) = %v, want ErrNotFound", err)
	}
	if err := s.UseApproval(ctx, r.ID, at(2*time.Minute)); err != nil {
		t.Fatalf("UseApproval() = %v", err)
	}
	if err := s.UseApproval(ctx, r.ID, at(3*time.Minute)); !errors.Is(err, approval.ErrConflict) {
		t.Errorf("UseApproval(again) = %v, want ErrConflict", err)
	}
	if err := s.UseApproval(ctx, approval.NewID(), at(3*time.Minute)); !errors.Is(err, approval.ErrNotFound) {
		t.Errorf("UseApproval(unknown) = %v, want ErrNotFound", err)
	}
	got, err = s.GetApproval(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := dec
	want.Used, want.UsedAt = true, at(2*time.Minute)
	if diff := cmp.Diff(&want, got, cmpOpts); diff != "" {
		t.Errorf("after the decision and use (-want +got):\n%s", diff)
	}

	other := newApproval("tsk_2", "bob@example.org", at(time.Second))
	if err := s.CreateApproval(ctx, other); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		f    approval.Filter
		want []approval.ID
	}{
		{"all, newest first", approval.Filter{}, []approval.ID{other.ID, r.ID}},
		{"pending", approval.Filter{Status: approval.StatusPending}, []approval.ID{other.ID}},
		{"by task", approval.Filter{Task: "tsk_1"}, []approval.ID{r.ID}},
		{"by owner", approval.Filter{AgentOwner: "bob@example.org"}, []approval.ID{other.ID}},
		{"limit", approval.Filter{Limit: 1}, []approval.ID{other.ID}},
		{"none", approval.Filter{Agent: "spiffe://example.org/agent/nobody"}, nil},
	} {
		rs, err := s.ListApprovals(ctx, c.f)
		if err != nil {
			t.Fatalf("%s: ListApprovals() = %v", c.name, err)
		}
		var ids []approval.ID
		for _, x := range rs {
			ids = append(ids, x.ID)
		}
		if diff := cmp.Diff(c.want, ids, cmpOpts); diff != "" {
			t.Errorf("%s: ListApprovals() ids (-want +got):\n%s", c.name, diff)
		}
	}
}
