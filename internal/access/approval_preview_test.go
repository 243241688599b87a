package access_test

import (
	"context"
	"testing"

	"github.com/mandatehq/mandate/internal/approval"
)

// TestPreviewApproval: the preview answers what DecideApproval answers —
// the owner, an approver, a stranger, the task's own principal under
// separation of duties, an agent — for approving and denying, and records
// nothing, while DecideApproval records every one.
func TestPreviewApproval(t *testing.T) {
	f := newFixture(t, fixtureOpts{})
	r := &approval.Request{ID: approval.NewID(), Agent: "spiffe://example.org/agent/deployer", AgentTier: "autonomous",
		AgentOwner: "alice@example.org", Task: "tsk_x", OnBehalfOf: "bob@example.org", Principal: "bob@example.org",
		Action: "tool.call", Resource: "up/deploy", Approvals: []string{"step-up"}}
	own := *r
	own.OnBehalfOf, own.Principal = "alice@example.org", "alice@example.org"
	for _, c := range []struct {
		name    string
		who     approval.Approver
		r       *approval.Request
		approve bool
		deny    bool
	}{
		{"owner", approval.Approver{Person: "alice@example.org"}, r, true, true},
		{"approver", approval.Approver{Person: "carol@example.org", Groups: []string{"approvers"}}, r, true, true},
		{"stranger", approval.Approver{Person: "mallory@example.org"}, r, false, false},
		{"own task", approval.Approver{Person: "alice@example.org"}, &own, false, true},
		{"agent", approval.Approver{Person: "spiffe://example.org/agent/deployer", Groups: []string{"approvers"}}, r, false, false},
	} {
		for _, approve := range []bool{true, false} {
			want := c.deny
			if approve {
				want = c.approve
			}
			before := len(f.rec.events())
			got := f.pipeline.PreviewApproval(c.who, c.r, approve)
			if got.Allowed() != want {
				t.Errorf("%s approve=%v: preview allowed=%v, want %v (%+v)", c.name, approve, got.Allowed(), want, got.Reasons)
			}
			if n := len(f.rec.events()); n != before {
				t.Fatalf("%s: the preview recorded %d events", c.name, n-before)
			}
			d, err := f.pipeline.DecideApproval(context.Background(), c.who, c.r, approve)
			if d.Allowed() != got.Allowed() || (err == nil) != want {
				t.Errorf("%s approve=%v: DecideApproval allowed=%v (%v), the preview %v", c.name, approve, d.Allowed(), err, got.Allowed())
			}
			if n := len(f.rec.events()); n != before+1 {
				t.Errorf("%s: DecideApproval recorded %d events, want 1", c.name, n-before)
			}
		}
	}
}

// BenchmarkPreviewApproval: one row of /approvals (two previews per
// pending request listed).
func BenchmarkPreviewApproval(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	r := &approval.Request{ID: approval.NewID(), Agent: "spiffe://example.org/agent/deployer", AgentTier: "autonomous",
		AgentOwner: "alice@example.org", Task: "tsk_x", OnBehalfOf: "bob@example.org", Principal: "bob@example.org",
		Action: "tool.call", Resource: "up/deploy", Approvals: []string{"step-up"}}
	who := approval.Approver{Person: "alice@example.org"}
	b.ReportAllocs()
	for b.Loop() {
		if !f.pipeline.PreviewApproval(who, r, true).Allowed() || !f.pipeline.PreviewApproval(who, r, false).Allowed() {
			b.Fatal("the owner may not decide")
		}
	}
}
