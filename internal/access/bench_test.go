package access_test

import (
	"context"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
)

type nopRecorder struct{}

func (nopRecorder) Record(context.Context, audit.Event) error { return nil }

// BenchmarkPipeline measures access.Pipeline.Decide end to end in
// process, minus durable audit: verifying a cached (bearer) task token
// and its revocation state, the cached task and agent, scope and budget,
// classification, building the Cedar request, the policy decision with
// the default policy set, and building the audit event — handed to a
// recorder that discards it. It reports p50 and p99 per decision.
func BenchmarkPipeline(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	p, err := access.New(access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend,
		Engine: f.engine, Recorder: nopRecorder{},
	})
	if err != nil {
		b.Fatal(err)
	}
	tk := f.task(b, f.agent(b, "bench", identity.TierAutonomous), taskOpts{scope: "file.* tool.call:github/*"})
	cred := access.Credential{Token: f.token(b, tk)}
	for _, bc := range []struct {
		name string
		act  access.Action
		want policy.Effect
	}{
		// An in-scope write by an autonomous agent: one cedar evaluation.
		{"allow", access.Action{Kind: "file.write", Resource: "/repo/a.go", Point: "bench"}, policy.Allow},
		// An unannotated MCP tool is destructive: held for step-up (the
		// permits are evaluated a second time to know approval can help).
		{"approval_required", access.Action{Kind: "tool.call", Resource: "github/create_issue", Server: "github", Point: "bench"}, policy.ApprovalRequired},
	} {
		b.Run(bc.name, func(b *testing.B) {
			ctx := context.Background()
			if d, err := p.Decide(ctx, cred, bc.act); err != nil || d.Effect != bc.want {
				b.Fatalf("Decide = %+v, %v", d, err)
			}
			runtime.GC()
			lat := make([]time.Duration, 0, min(b.N, 1_000_000))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				_, _ = p.Decide(ctx, cred, bc.act)
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

// BenchmarkPipelineParallel is BenchmarkPipeline across GOMAXPROCS
// goroutines (run with -cpu 2), each acting for its own task; it reports
// decisions per second.
func BenchmarkPipelineParallel(b *testing.B) {
	f := newFixture(b, fixtureOpts{})
	p, err := access.New(access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend,
		Engine: f.engine, Recorder: nopRecorder{},
	})
	if err != nil {
		b.Fatal(err)
	}
	a := f.agent(b, "bench", identity.TierAutonomous)
	var creds []access.Credential
	for range 8 {
		tk := f.task(b, a, taskOpts{scope: "file.* tool.call:github/*"})
		creds = append(creds, access.Credential{Token: f.token(b, tk)})
	}
	act := access.Action{Kind: "file.write", Resource: "/repo/a.go", Point: "bench"}
	ctx := context.Background()
	for _, c := range creds {
		if d, err := p.Decide(ctx, c, act); err != nil || d.Effect != policy.Allow {
			b.Fatalf("Decide = %+v, %v", d, err)
		}
	}
	var next atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		cred := creds[int(next.Add(1))%len(creds)]
		for pb.Next() {
			_, _ = p.Decide(ctx, cred, act)
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
}
