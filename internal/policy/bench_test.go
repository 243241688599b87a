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

// benchCore is ten policies that all apply to the benchmark request: a
// compact graded-trust set (every one is evaluated for every decision).
const benchCore = `@id("read") permit(principal, action, resource) when { context.risk == "read" };
@id("autonomous") permit(principal, action, resource) when { principal.tier == "autonomous" };
@id("supervised") permit(principal, action, resource) when { principal.tier == "supervised" };
@id("supervised-approval") @approval("owner") forbid(principal, action, resource) when { principal.tier == "supervised" && context.risk != "read" };
@id("step-up") @approval("step-up") forbid(principal, action, resource) when { principal.tier == "autonomous" && (context.risk == "destructive" || context.risk == "privileged") };
@id("scope") forbid(principal, action, resource) unless { context.task.in_scope };
@id("ceiling") forbid(principal, action, resource) when { resource.sensitivity_level > context.task.sensitivity_level };
@id("taint") forbid(principal, action, resource) when { context.taint_level >= 3 && context.risk == "external" };
@id("high-impact") forbid(principal, action, resource) when { context.high_impact };
@id("blocked-team") forbid(principal, action == Action::"tool.call", resource) when { principal.hasTag("team") && principal.getTag("team") == "blocked" };
`

// genPolicies returns n policies: benchCore, then n-10 policies shaped
// like a large deployment's per-tool, per-path and per-host rules, each
// pinned to one resource (never the benchmark request's) and spread over
// the actions. Every size evaluates the same ten policies for the
// benchmark request; only the size of the set changes.
func genPolicies(n int) []Source {
	var b strings.Builder
	for i := range max(n-10, 0) {
		switch i % 4 {
		case 0:
			fmt.Fprintf(&b, "@id(\"g%d\") forbid(principal, action == Action::\"tool.call\", resource == Tool::\"srv%d/gen%d\") when { context.risk == \"destructive\" };\n", i, i%50, i)
		case 1:
			fmt.Fprintf(&b, "@id(\"g%d\") permit(principal, action == Action::\"file.read\", resource == File::\"/data/%d\") when { principal.tier == \"assist\" };\n", i, i)
		case 2:
			fmt.Fprintf(&b, "@id(\"g%d\") forbid(principal, action == Action::\"http.request\", resource == Host::\"h%d.example.com\") unless { context.destination.method == \"GET\" };\n", i, i)
		case 3:
			fmt.Fprintf(&b, "@id(\"g%d\") permit(principal, action == Action::\"tool.call\", resource == Tool::\"srv%d/gen%d\") when { principal.hasTag(\"team\") && principal.getTag(\"team\") == \"t%d\" };\n", i, i%50, i, i%7)
		}
	}
	return []Source{{Name: "core.cedar", Text: []byte(benchCore)}, {Name: "generated.cedar", Text: []byte(b.String())}}
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

// BenchmarkDecide measures one in-process policy decision (Engine.Decide):
// converting the Request to Cedar (entities and context, with the
// Engine's caches warm), selecting the candidate policies by action and
// resource, evaluating them with cedar-go (ten policies match the
// request's action and resource in every set size) and building the
// Decision. It reports p50 and p99 latency per decision; ns/op is the
// mean, which includes GC pauses.
func BenchmarkDecide(b *testing.B) {
	b.Run("defaults+10000", func(b *testing.B) {
		// The shipped default set (its eleven policies for tool.call
		// are evaluated) beside 10,000 pinned rules.
		set, err := Compile(append(DefaultSources(), genPolicies(10_010)[1]))
		if err != nil {
			b.Fatal(err)
		}
		benchDecide(b, NewEngine(set, nil))
	})
	for _, n := range []int{10, 10_000} {
		b.Run(fmt.Sprintf("policies=%d", n), func(b *testing.B) {
			set, err := Compile(genPolicies(n))
			if err != nil {
				b.Fatal(err)
			}
			if set.Len() != n {
				b.Fatalf("%d policies, want %d", set.Len(), n)
			}
			eng := NewEngine(set, nil)
			r := benchRequest()
			if x, _ := eng.Explain(r); x.Considered != 10 || x.Decision.Effect != Allow {
				b.Fatalf("the request considers %d policies (%s), want 10 (allow)", x.Considered, x.Decision.Effect)
			}
			benchDecide(b, eng)
		})
	}
}

func benchDecide(b *testing.B, eng *Engine) {
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

// BenchmarkReloadOneFileChanged measures what a Loader does when one file
// of a 1,000-policy directory (ten files of 100) changes: the Compiler
// re-parses and re-validates that file, reuses the other nine, and
// rebuilds the index; the new set is swapped in.
func BenchmarkReloadOneFileChanged(b *testing.B) {
	var srcs []Source
	for f := range 10 {
		var t strings.Builder
		for i := range 100 {
			n := f*100 + i
			fmt.Fprintf(&t, "@id(\"p%d\") permit(principal, action == Action::\"tool.call\", resource == Tool::\"s/t%d\") when { principal.tier == \"autonomous\" };\n", n, n)
		}
		srcs = append(srcs, Source{Name: fmt.Sprintf("f%d.cedar", f), Text: []byte(t.String())})
	}
	var c Compiler
	set, err := c.Compile(srcs)
	if err != nil || set.Len() != 1000 {
		b.Fatal(set, err)
	}
	eng := NewEngine(set, nil)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		srcs[i%10].Text = append(srcs[i%10].Text[:len(srcs[i%10].Text):len(srcs[i%10].Text)], '\n')
		s, err := c.Compile(srcs)
		if err != nil {
			b.Fatal(err)
		}
		eng.Swap(s)
	}
}
