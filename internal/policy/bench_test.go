package policy

import (
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// genPolicies returns a policy source of n policies shaped like a real
// deployment's: the default graded-trust set, then per-tool and per-path
// rules pinned to one resource each, spread over the actions, with a few
// unpinned conditions.
func genPolicies(n int) []Source {
	srcs := DefaultSources()
	n -= 14
	var b strings.Builder
	for i := range max(n, 0) {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "@id(\"g%d\") forbid(principal, action == Action::\"tool.call\", resource == Tool::\"srv%d/tool%d\") when { context.risk == \"destructive\" };\n", i, i%50, i)
		case 1:
			fmt.Fprintf(&b, "@id(\"g%d\") permit(principal, action == Action::\"file.read\", resource == File::\"/data/%d\") when { principal.tier == \"assist\" };\n", i, i)
		case 2:
			fmt.Fprintf(&b, "@id(\"g%d\") forbid(principal, action == Action::\"http.request\", resource == Host::\"h%d.example.com\") unless { context.destination.method == \"GET\" };\n", i, i)
		case 3:
			fmt.Fprintf(&b, "@id(\"g%d\") permit(principal, action == Action::\"tool.call\", resource == Tool::\"srv%d/tool%d\") when { principal.hasTag(\"team\") && principal.getTag(\"team\") == \"t%d\" };\n", i, i%50, i, i%7)
		}
	}
	if n < 0 {
		srcs = nil
		for i := range n + 14 {
			fmt.Fprintf(&b, "@id(\"s%d\") permit(principal, action == Action::\"%s\", resource) when { context.risk == \"read\" && context.task.in_scope };\n", i, Actions[i%len(Actions)])
		}
	}
	return append(srcs, Source{Name: "generated.cedar", Text: []byte(b.String())})
}

func benchRequest() *Request {
	r := baseRequest(TierAutonomous, ActionToolCall, RiskWrite, true)
	r.Resource = Resource{ID: "srv3/tool103", Server: "srv3", Sensitivity: "internal", Labels: []string{"prod"}}
	r.Agent.Labels = map[string]string{"team": "t5"}
	r.Task.Scope = []string{"tool.call:srv3/**", "file.read:/repo/**"}
	r.Task.Purpose = "fix the build"
	r.Time = time.Time{}
	return r
}

// reportPercentiles reports p50 and p99 of the sampled latencies.
func reportPercentiles(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// BenchmarkDecide measures one in-process policy decision: converting the
// Request to Cedar (entities and context), selecting the candidate
// policies by action and resource, evaluating them with cedar-go and
// building the Decision. It reports p50 and p99 latency per decision.
func BenchmarkDecide(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			set, err := Compile(genPolicies(n))
			if err != nil {
				b.Fatal(err)
			}
			eng := NewEngine(set, nil)
			r := benchRequest()
			runtime.GC()
			lat := make([]time.Duration, 0, min(b.N, 1_000_000))
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				d, _ := eng.Decide(r)
				if i < cap(lat) {
					lat = append(lat, time.Since(t0))
				}
				if d.Effect == "" {
					b.Fatal("no decision")
				}
			}
			b.StopTimer()
			reportPercentiles(b, lat)
		})
	}
}

// BenchmarkDecideParallel measures decision throughput across GOMAXPROCS
// goroutines (run with -cpu 2 for the 2-core budget); it reports
// decisions per second.
func BenchmarkDecideParallel(b *testing.B) {
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			set, err := Compile(genPolicies(n))
			if err != nil {
				b.Fatal(err)
			}
			eng := NewEngine(set, nil)
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				r := benchRequest()
				for pb.Next() {
					_, _ = eng.Decide(r)
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "decisions/s")
		})
	}
}

// BenchmarkReload measures compiling (parse, schema validation, index)
// 1,000 policies and swapping them in while decisions keep running on
// another goroutine; it reports the reload time and how many decisions
// completed during the reloads.
func BenchmarkReload(b *testing.B) {
	srcs := genPolicies(1000)
	set, err := Compile(srcs)
	if err != nil {
		b.Fatal(err)
	}
	eng := NewEngine(set, nil)
	var stop atomic.Bool
	var decided atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		r := benchRequest()
		for !stop.Load() {
			if d, _ := eng.Decide(r); d.Effect != "" {
				decided.Add(1)
			}
		}
	}()
	b.ResetTimer()
	var worst time.Duration
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		s, err := Compile(srcs)
		if err != nil {
			b.Fatal(err)
		}
		eng.Swap(s)
		worst = max(worst, time.Since(t0))
	}
	b.StopTimer()
	stop.Store(true)
	wg.Wait()
	b.ReportMetric(float64(worst.Microseconds())/1e3, "worst-ms")
	b.ReportMetric(float64(decided.Load())/float64(b.N), "decisions/reload")
}
