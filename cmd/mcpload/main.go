// Command mcpload measures mandate's MCP gateway against calling its
// upstream directly, in one run: the latency the gateway adds at a fixed
// call rate, its maximum throughput, and its CPU cost per call.
//
// Usage:
//
//	go run ./cmd/mcpload [-rate 1000] [-duration 10s] [-conns 16] [-warmup 2s]
//	    [-upstream lean|sdk] [-gateway server|bare] [-heap-floor bytes] [-phases latency|throughput|both] [-procs n] [-cpuprofile file] [-memprofile file] [-trace file]
//
// GOGC, GOMEMLIMIT and -heap-floor (gc.heap_floor_bytes) apply to the
// whole process, gateway included, as they would to `mandate serve`. Everything runs in one process: an upstream MCP server with one
// read-only "echo" tool (by default mcpproxytest.EchoServer, a lean
// Streamable HTTP server; -upstream sdk uses the Go SDK's), the gateway in front of it, and the clients.
// With -gateway server (the default) the gateway is mandate's server as
// `mandate serve` builds it — temporary data directory, SQLite store,
// access pipeline with the default Cedar policies, durable audit ledger —
// and the clients hold a task token for an autonomous agent with scope
// tool.call:echo/*. With -gateway bare it is mcpproxy alone, with a
// scope/tier decider and an audit recorder that only counts.
//
// The clients (mcpproxytest.LeanClient) speak Streamable HTTP with
// net/http directly, one MCP session per connection, and allocate little:
// the harness shares the machine with what it measures.
//
// Phases: warm-up (both paths); latency (direct and gateway calls
// interleaved on one schedule at -rate calls/s per path, so that noise
// hits both alike: p50/p90/p99 of each and the gateway's added p50/p99);
// throughput (-conns loops calling back to back, direct then gateway:
// calls/s, errors, process CPU per call from getrusage, and the
// gateway's marginal CPU per call, the gateway phase's minus the direct
// phase's, and from it an estimate of what the gateway alone could serve
// on cores of its own). -phases runs only one of the last two.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/internal/heapfloor"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/proctime"
	"github.com/mandatehq/mandate/internal/server"
)

// config is what a run measures.
type config struct {
	rate     int
	duration time.Duration
	warmup   time.Duration
	conns    int
	upstream string // lean | sdk
	gateway  string // server | bare
	timeout  time.Duration
	gogc     string // the garbage collector's setting, for the report
	floor    int    // the heap floor, for the report
	phases   string // latency | throughput | both
}

func main() {
	var c config
	flag.IntVar(&c.rate, "rate", 1000, "calls per second on each path in the latency phase")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of the latency phase and of each throughput phase")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "length of the warm-up (both paths)")
	flag.IntVar(&c.conns, "conns", 16, "MCP sessions (connections) per path: the latency phase's schedule is spread over them, the throughput phase runs one loop on each")
	flag.StringVar(&c.upstream, "upstream", "lean", "upstream MCP server: lean (a minimal Streamable HTTP server) or sdk (the Go SDK's)")
	flag.StringVar(&c.gateway, "gateway", "server", "gateway: server (mandate serve in-process: Cedar policies, SQLite ledger) or bare (mcpproxy with a scope/tier decider and a counting recorder)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "bound on one call")
	flag.IntVar(&c.floor, "heap-floor", server.Defaults().GC.HeapFloorBytes, "heap floor in bytes, as gc.heap_floor_bytes for mandate serve (0: none)")
	flag.StringVar(&c.phases, "phases", "both", "which measuring phases run after the warm-up: latency, throughput or both")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: leave as is)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	memprofile := flag.String("memprofile", "", "write an allocation profile of the whole run to this file (go tool pprof -sample_index=alloc_objects)")
	traceFile := flag.String("trace", "", "write an execution trace of the whole run to this file (go tool trace)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: mcpload [flags]\n\nmcpload measures the MCP gateway against calling its upstream directly.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() > 0 || c.rate <= 0 || c.duration <= 0 || c.conns <= 0 || c.warmup < 0 || c.floor < 0 ||
		(c.upstream != "lean" && c.upstream != "sdk") || (c.gateway != "server" && c.gateway != "bare") ||
		(c.phases != "latency" && c.phases != "throughput" && c.phases != "both") {
		flag.Usage()
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	c.gogc = os.Getenv("GOGC")
	defer heapfloor.Start(uint64(c.floor)).Stop()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *traceFile != "" {
		f, err := os.Create(*traceFile)
		if err != nil {
			log.Fatal(err)
		}
		if err := trace.Start(f); err != nil {
			log.Fatal(err)
		}
		defer trace.Stop()
	}
	if err := run(context.Background(), os.Stdout, c); err != nil {
		fmt.Fprintf(os.Stderr, "mcpload: %v\n", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
	if *memprofile != "" {
		if err := writeAllocs(*memprofile); err != nil {
			log.Fatal(err)
		}
	}
}

// writeAllocs writes the allocations sampled since the process started.
func writeAllocs(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// run sets up the upstream, the gateway and the sessions, runs the
// phases and writes the report to w.
func run(ctx context.Context, w io.Writer, c config) error {
	var up http.Handler = &mcpproxytest.EchoServer{}
	if c.upstream == "sdk" {
		up = mcpproxytest.SDKEchoServer()
	}
	upURL, stopUp, err := serve(up)
	if err != nil {
		return err
	}
	defer stopUp()
	start := startServer
	if c.gateway == "bare" {
		start = startBare
	}
	gw, err := start(ctx, upURL, c.warmup+3*c.duration+2*c.timeout)
	if err != nil {
		return err
	}
	defer gw.close()

	// One transport for both paths, with an idle connection kept for every
	// session (direct and gateway are different hosts).
	tr := &http.Transport{MaxIdleConns: 2*c.conns + 16, MaxIdleConnsPerHost: c.conns + 8, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	direct, err := sessions(ctx, tr, upURL, "", c.conns)
	if err != nil {
		return err
	}
	via, err := sessions(ctx, tr, gw.url, gw.token, c.conns)
	if err != nil {
		return err
	}
	defer func() {
		for _, s := range slices.Concat(direct, via) {
			s.Close(ctx)
		}
	}()

	fmt.Fprintf(w, "mcpload: GOMAXPROCS=%d NumCPU=%d GOGC=%s heap-floor=%dMiB conns=%d upstream=%s gateway=%s protocol=%s\n",
		runtime.GOMAXPROCS(0), runtime.NumCPU(), cmp.Or(c.gogc, "100"), c.floor>>20, c.conns, c.upstream, c.gateway, via[0].ProtocolVersion())

	if c.warmup > 0 {
		throughput(ctx, direct, c.warmup/2, c.timeout)
		throughput(ctx, via, c.warmup/2, c.timeout)
	}

	if c.phases != "throughput" {
		d, g, ticks, late := interleaved(ctx, direct, via, c.rate, c.duration, c.timeout)
		fmt.Fprintf(w, "latency at %d calls/s on each path, interleaved, for %s:\n", c.rate, c.duration)
		if late*100 > ticks {
			fmt.Fprintf(w, "  warning: %d of %d ticks started over an interval late: the paths did not keep up, so these latencies include queueing\n", late, ticks)
		}
		fmt.Fprintf(w, "  direct:  %s\n", d)
		fmt.Fprintf(w, "  gateway: %s\n", g)
		fmt.Fprintf(w, "  added:   p50=%v p99=%v\n", d.added(g, 50), d.added(g, 99))
	}
	if c.phases == "latency" {
		return nil
	}

	dt := throughput(ctx, direct, c.duration, c.timeout)
	gt := throughput(ctx, via, c.duration, c.timeout)
	fmt.Fprintf(w, "throughput over %s with %d loops:\n", c.duration, c.conns)
	fmt.Fprintf(w, "  direct:  %s\n", dt)
	fmt.Fprintf(w, "  gateway: %s\n", gt)
	if dt.calls > 0 && gt.calls > 0 {
		marginal := gt.cpuPerCall() - dt.cpuPerCall()
		fmt.Fprintf(w, "  gateway marginal CPU: %.1f µs/call\n", marginal)
		// The measured gateway rate shares the cores with the clients and
		// the upstream; what the gateway's own CPU per call would allow
		// on cores of its own is an estimate, and printed as one.
		if marginal > 0 {
			procs := runtime.GOMAXPROCS(0)
			fmt.Fprintf(w, "  estimate for the gateway alone on %d cores (from its marginal CPU): %.0f calls/s\n", procs, float64(procs)*1e6/marginal)
		}
	}
	return nil
}

// sessions dials n lean clients at endpoint, each calling echo.
func sessions(ctx context.Context, rt http.RoundTripper, endpoint, token string, n int) ([]*mcpproxytest.LeanClient, error) {
	out := make([]*mcpproxytest.LeanClient, 0, n)
	for range n {
		s, err := mcpproxytest.DialLeanClient(ctx, mcpproxytest.LeanClientConfig{
			Endpoint: endpoint, Transport: rt, Token: token,
			Tool: "echo", Arguments: `{"text":"hello"}`, ClientName: "mcpload",
		})
		if err != nil {
			for _, s := range out {
				s.Close(ctx)
			}
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// latencies is one path's result in the latency phase.
type latencies struct {
	d     []time.Duration // sorted
	errs  int
	first error // the first error, if any
}

func (l latencies) pct(p int) time.Duration {
	if len(l.d) == 0 {
		return 0
	}
	return l.d[(len(l.d)-1)*p/100]
}

func (l latencies) added(g latencies, p int) time.Duration { return g.pct(p) - l.pct(p) }

func (l latencies) String() string {
	s := fmt.Sprintf("n=%d p50=%v p90=%v p99=%v max=%v errors=%d", len(l.d), l.pct(50), l.pct(90), l.pct(99), l.pct(100), l.errs)
	if l.first != nil {
		s += fmt.Sprintf(" (first: %v)", l.first)
	}
	return s
}

// interleaved calls each path rate times a second for d, spread over the
// session pairs: each pair's loop calls both paths on every tick of its
// schedule, alternating which goes first. Latency is measured from the
// start of each call. It also returns how many ticks there were and how
// many started over an interval late: then the schedule slipped (the
// paths could not keep up) and the latencies are not those at rate.
func interleaved(ctx context.Context, a, b []*mcpproxytest.LeanClient, rate int, d, timeout time.Duration) (_, _ latencies, ticks, late int) {
	ctx, cancel := context.WithTimeout(ctx, d+timeout)
	defer cancel()
	n := min(len(a), len(b))
	interval := max(time.Duration(float64(time.Second)*float64(n)/float64(rate)), time.Microsecond)
	var mu sync.Mutex
	var ra, rb latencies
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range n {
		wg.Go(func() {
			// Each loop's results, merged at the end.
			capacity := min(int(d/interval)+2, 1<<20)
			la := latencies{d: make([]time.Duration, 0, capacity)}
			lb := latencies{d: make([]time.Duration, 0, capacity)}
			next := start.Add(interval * time.Duration(i) / time.Duration(n))
			k, lateN := 0, 0
			for ; next.Before(end); k++ {
				if w := time.Until(next); w > 0 {
					time.Sleep(w)
				} else if -w > interval {
					lateN++
				}
				first, second, lf, ls := a[i], b[i], &la, &lb
				if k%2 == 1 {
					first, second, lf, ls = b[i], a[i], &lb, &la
				}
				timeCall(ctx, first, lf)
				timeCall(ctx, second, ls)
				next = next.Add(interval)
			}
			mu.Lock()
			defer mu.Unlock()
			merge(&ra, la)
			merge(&rb, lb)
			ticks += k
			late += lateN
		})
	}
	wg.Wait()
	slices.Sort(ra.d)
	slices.Sort(rb.d)
	return ra, rb, ticks, late
}

func timeCall(ctx context.Context, s *mcpproxytest.LeanClient, l *latencies) {
	t0 := time.Now()
	if err := s.Call(ctx); err != nil {
		l.errs++
		if l.first == nil {
			l.first = err
		}
		return
	}
	l.d = append(l.d, time.Since(t0))
}

func merge(into *latencies, l latencies) {
	into.d = append(into.d, l.d...)
	into.errs += l.errs
	if into.first == nil {
		into.first = l.first
	}
}

// rate is one path's result in the throughput phase.
type rate struct {
	calls, errs int64
	first       error
	elapsed     time.Duration
	cpu         time.Duration // process CPU (user+system) over the phase
}

func (r rate) cpuPerCall() float64 {
	return float64(r.cpu.Microseconds()) / float64(r.calls+r.errs)
}

func (r rate) String() string {
	s := fmt.Sprintf("%.0f calls/s (n=%d errors=%d) CPU %.1f µs/call (%.2f cores)",
		float64(r.calls)/r.elapsed.Seconds(), r.calls, r.errs, r.cpuPerCall(), r.cpu.Seconds()/r.elapsed.Seconds())
	if r.first != nil {
		s += fmt.Sprintf(" (first error: %v)", r.first)
	}
	return s
}

// throughput calls back to back on every session for d.
func throughput(ctx context.Context, ss []*mcpproxytest.LeanClient, d, timeout time.Duration) rate {
	ctx, cancel := context.WithTimeout(ctx, d+timeout)
	defer cancel()
	var calls, errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	cpu0, t0 := proctime.CPU(), time.Now()
	end := t0.Add(d)
	for _, s := range ss {
		wg.Go(func() {
			var n, e int64
			for time.Now().Before(end) {
				if err := s.Call(ctx); err != nil {
					e++
					firstErr.CompareAndSwap(nil, &err)
				} else {
					n++
				}
			}
			calls.Add(n)
			errs.Add(e)
		})
	}
	wg.Wait()
	r := rate{calls: calls.Load(), errs: errs.Load(), elapsed: time.Since(t0), cpu: proctime.CPU() - cpu0}
	if p := firstErr.Load(); p != nil {
		r.first = *p
	}
	return r
}
