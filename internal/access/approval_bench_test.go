package access_test

import (
	"context"
	"encoding/json"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
)

// BenchmarkApprovalDecisionPath measures what approvals add to a
// decision (in process, audit discarded, as BenchmarkPipeline): an allow
// and an approval_required decision without and with the approval
// service (which opens or finds the request: after the first decision,
// every one finds it), and an allow lifted by a reach-task approval. It
// reports p50 and p99 per decision; the difference between the rows is
// the approval path's cost.
func BenchmarkApprovalDecisionPath(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	ctx := context.Background()
	svc, err := approval.New(ctx, approval.Config{
		Store: f.backend, Digester: audit.NewRedactor([]byte("bench-key"), nil), Recorder: nopRecorder{},
		PolicyVersion: f.engine.ApprovalVersion, RequestsPerMinute: 1000,
	})
	if err != nil {
		b.Fatal(err)
	}
	plain, err := access.New(access.Config{Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend, Engine: f.engine, Recorder: nopRecorder{}})
	if err != nil {
		b.Fatal(err)
	}
	withSvc, err := access.New(access.Config{Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend, Engine: f.engine, Recorder: nopRecorder{}, ApprovalService: svc})
	if err != nil {
		b.Fatal(err)
	}
	ag := f.agent(b, "bench", identity.TierAutonomous)
	tk := f.task(b, ag, taskOpts{scope: "file.* tool.call:github/*"})
	approvedTask := f.task(b, ag, taskOpts{scope: "file.* tool.call:github/*"})
	cred, approvedCred := access.Credential{Token: f.token(b, tk)}, access.Credential{Token: f.token(b, approvedTask)}
	write := access.Action{Kind: "file.write", Resource: "/repo/a.go", Point: "bench"}
	tool := access.Action{Kind: "tool.call", Resource: "github/create_issue", Server: "github", Point: "bench", Arguments: json.RawMessage(`{"title":"x","body":"y"}`)}

	// A reach-task approval for approvedTask's tool calls.
	d, err := withSvc.Decide(ctx, approvedCred, tool)
	if err != nil || d.ApprovalID == "" {
		b.Fatalf("Decide = %+v, %v", d, err)
	}
	if _, err := svc.Decide(ctx, approval.Decision{ID: approval.ID(d.ApprovalID), Approver: approval.Approver{Person: "alice@example.org"},
		Approve: true, Reach: approval.ReachTask, Authorize: func(context.Context, *approval.Request) error { return nil }}); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		p    *access.Pipeline
		cred access.Credential
		act  access.Action
		want policy.Effect
	}{
		{"allow/without-service", plain, cred, write, policy.Allow},
		{"allow/with-service", withSvc, cred, write, policy.Allow},
		{"approval_required/without-service", plain, cred, tool, policy.ApprovalRequired},
		{"approval_required/open-or-find", withSvc, cred, tool, policy.ApprovalRequired},
		{"approved/reach-task", withSvc, approvedCred, tool, policy.Allow},
	} {
		b.Run(bc.name, func(b *testing.B) {
			if d, err := bc.p.Decide(ctx, bc.cred, bc.act); err != nil || d.Effect != bc.want {
				b.Fatalf("Decide = %+v, %v", d, err)
			}
			runtime.GC()
			lat := make([]time.Duration, 0, min(b.N, 1_000_000))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				_, _ = bc.p.Decide(ctx, bc.cred, bc.act)
				if i < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}
