// Command mcpload measures mandate's MCP gateway against calling its
// upstream directly, in one run: the latency the gateway adds at a fixed
// call rate, its maximum throughput, and its CPU cost per call.
//
// Usage:
//
//	go run ./cmd/mcpload [-rate 1000] [-duration 10s] [-conns 16] [-warmup 2s]
//	    [-protocol 2025-11-25|2026-07-28|both] [-upstream lean|sdk] [-mandate path]
//	    [-phases latency|throughput|both] [-procs n] [-heap-floor bytes] [-- serve flags…]
//
// The gateway is the real `mandate serve`, run as a child process: the
// binary -mandate, or one built from this source tree into a temporary
// directory (go build ./cmd/mandate), on a loopback port with a
// temporary data directory, the SQLite store and durable audit ledger,
// the access pipeline with the default Cedar policies, and a
// configuration file naming the upstream as MCP upstream "echo"; flags
// after -- are passed to serve, and the environment (GOGC, GOMEMLIMIT,
// MANDATE_*) reaches it. mcpload registers an autonomous agent over its
// admin socket and starts a task over OAuth with scope tool.call:echo/*,
// and stops the child at the end (SIGTERM, then SIGKILL after 20s).
//
// The upstream, an MCP server with one read-only "echo" tool (by default
// mcpproxytest.EchoServer, a lean Streamable HTTP server; -upstream sdk
// uses the Go SDK's), runs in a process of its own too (mcpload again,
// started with MCPLOAD_UPSTREAM set, serving until its stdin closes), and
// the clients (mcpproxytest.LeanClient) in mcpload's: no process shares
// another's heap, and a direct call crosses between processes as a call
// through the gateway does, so that the latency the gateway adds is its
// own work and its extra hop. The clients speak Streamable HTTP with
// net/http directly and allocate little: the harness shares the machine
// with what it measures. -procs sets GOMAXPROCS in all three processes;
// -heap-floor is the clients' and the upstream's heap floor (the
// gateway's is gc.heap_floor_bytes, as for any mandate serve).
//
// -protocol is the MCP revision the clients, the gateway and the upstream
// speak: 2025-11-25 (a session per connection: initialize, then calls
// with its Mcp-Session-Id) or 2026-07-28 (stateless: server/discover,
// then calls that each carry the protocol version and the client's
// capabilities in _meta, with the MCP-Protocol-Version, Mcp-Method and
// Mcp-Name headers); both measures one and then the other, each with a
// fresh upstream and gateway.
//
// Besides the direct path and the gateway's, a third path goes through a
// pass-through proxy (net/http's reverse proxy, in a process of its own:
// passthrough.go) that relays and does nothing else: what it adds is what
// one more Go HTTP hop costs on this machine, the floor under the
// gateway's figures, and the report shows the gateway's also over it.
//
// Phases: warm-up (every path); latency (direct, proxy and gateway calls
// interleaved on one schedule at -rate calls/s per path, so that noise
// hits all alike: p50/p90/p99 of each and the added p50/p99 of the proxy
// and the gateway); throughput (-conns loops calling back to back, one
// path after the other: calls/s, errors, and the CPU per call of each
// process: the clients' from getrusage, the others' from
// /proc/<pid>/stat; and from the gateway's an estimate of what it alone
// could serve on cores of its own). -phases runs only one of the last two.
//
// What the gateway costs without policy evaluation or the durable ledger
// (the relay alone) is BenchmarkCall in internal/gateway/mcpproxy; to
// profile the gateway, use BenchmarkMCPGateway in internal/server, which
// runs the server in-process.
package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mandatehq/mandate/internal/heapfloor"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/proctime"
	"github.com/mandatehq/mandate/internal/serveproc"
)

// config is what a run measures.
type config struct {
	rate      int
	duration  time.Duration
	warmup    time.Duration
	conns     int
	upstream  string   // lean | sdk
	protocols []string // the revisions to measure, in order
	mandate   string   // the mandate binary
	serve     []string // further flags for mandate serve
	timeout   time.Duration
	gogc      string // the garbage collector's setting, for the report
	floor     int    // the clients' and the upstream's heap floor
	phases    string // latency | throughput | both
}

// defaultHeapFloor is mandate serve's gc.heap_floor_bytes default, which
// the clients and the upstream use too.
const defaultHeapFloor = 64 << 20

func main() {
	if asUpstream() {
		return
	}
	var c config
	flag.IntVar(&c.rate, "rate", 1000, "calls per second on each path in the latency phase")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of the latency phase and of each throughput phase")
	flag.DurationVar(&c.warmup, "warmup", 2*time.Second, "length of the warm-up (both paths)")
	flag.IntVar(&c.conns, "conns", 16, "client connections per path: the latency phase's schedule is spread over them, the throughput phase runs one loop on each")
	flag.StringVar(&c.upstream, "upstream", "lean", "upstream MCP server: lean (a minimal Streamable HTTP server) or sdk (the Go SDK's)")
	protocol := flag.String("protocol", mcpproxytest.Version20251125, "MCP revision spoken end to end: 2025-11-25, 2026-07-28, or both (one run each, in that order)")
	flag.StringVar(&c.mandate, "mandate", "", "the mandate binary to run as the gateway (empty: build ./cmd/mandate into a temporary directory)")
	flag.DurationVar(&c.timeout, "timeout", 10*time.Second, "bound on one call")
	flag.IntVar(&c.floor, "heap-floor", defaultHeapFloor, "heap floor in bytes of the clients' and the upstream's processes, like mandate serve's gc.heap_floor_bytes (0: none)")
	flag.StringVar(&c.phases, "phases", "both", "which measuring phases run after the warm-up: latency, throughput or both")
	procs := flag.Int("procs", 0, "GOMAXPROCS of the clients', the upstream's and mandate serve's processes (0: leave as is)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `usage: mcpload [flags] [-- mandate serve flags]

mcpload measures the MCP gateway of mandate serve, run as a child process,
against calling its upstream directly: added latency at -rate, throughput,
and CPU per call.

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	c.serve = flag.Args()
	switch *protocol {
	case "both":
		c.protocols = []string{mcpproxytest.Version20251125, mcpproxytest.Version20260728}
	case mcpproxytest.Version20251125, mcpproxytest.Version20260728:
		c.protocols = []string{*protocol}
	}
	if c.rate <= 0 || c.duration <= 0 || c.conns <= 0 || c.warmup < 0 || c.floor < 0 || *procs < 0 || c.protocols == nil ||
		(c.upstream != "lean" && c.upstream != "sdk") ||
		(c.phases != "latency" && c.phases != "throughput" && c.phases != "both") {
		flag.Usage()
		os.Exit(2)
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
		os.Setenv("GOMAXPROCS", strconv.Itoa(*procs)) // for the children
	}
	c.gogc = os.Getenv("GOGC")
	defer heapfloor.Start(uint64(c.floor)).Stop()
	// Interrupted, it still stops the children and removes their data.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, c); err != nil {
		fmt.Fprintf(os.Stderr, "mcpload: %v\n", err)
		os.Exit(1)
	}
}

// run finds or builds the mandate binary and measures each protocol
// revision in turn, writing the reports to w.
func run(ctx context.Context, w io.Writer, c config) error {
	if c.mandate == "" {
		dir, err := os.MkdirTemp("", "mcpload-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if c.mandate, err = serveproc.Build(ctx, dir); err != nil {
			return err
		}
	}
	for i, p := range c.protocols {
		if i > 0 {
			fmt.Fprintln(w)
		}
		if err := measure(ctx, w, c, p); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// measure sets up the upstream, the gateway and the clients for one
// protocol revision, runs the phases and writes the report to w.
func measure(ctx context.Context, w io.Writer, c config, protocol string) error {
	up, err := startUpstream(ctx, c.upstream, protocol, c.floor)
	if err != nil {
		return err
	}
	defer up.close()
	px, err := startProxy(ctx, up.url, protocol, c.floor)
	if err != nil {
		return err
	}
	defer px.close()
	gw, err := startGateway(ctx, c.mandate, up.url, c.warmup+4*c.duration+3*c.timeout, c.serve)
	if err != nil {
		return err
	}
	defer gw.close()

	// One transport for both paths, with an idle connection kept for every
	// client (direct and gateway are different hosts).
	tr := &http.Transport{MaxIdleConns: 2*c.conns + 16, MaxIdleConnsPerHost: c.conns + 8, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	direct, err := clients(ctx, tr, up.url, "", protocol, c.conns)
	if err != nil {
		return fmt.Errorf("direct: %w", err)
	}
	defer closeAll(ctx, direct)
	proxied, err := clients(ctx, tr, px.url, "", protocol, c.conns)
	if err != nil {
		return fmt.Errorf("pass-through proxy: %w", err)
	}
	defer closeAll(ctx, proxied)
	via, err := clients(ctx, tr, gw.url, gw.token, protocol, c.conns)
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer closeAll(ctx, via)

	fmt.Fprintf(w, "mcpload: protocol=%s GOMAXPROCS=%d NumCPU=%d GOGC=%s heap-floor=%dMiB conns=%d upstream=%s (pid %d) proxy=pass-through (pid %d) gateway=mandate serve (pid %d, GOMAXPROCS %d)\n",
		via[0].ProtocolVersion(), runtime.GOMAXPROCS(0), runtime.NumCPU(), cmp.Or(c.gogc, "100"), c.floor>>20, c.conns, c.upstream, up.cmd.Process.Pid, px.cmd.Process.Pid, gw.Pid(), childProcs())

	if c.warmup > 0 {
		for _, p := range []struct {
			cs  []*mcpproxytest.LeanClient
			cpu processCPU
		}{{direct, nil}, {proxied, px.cpu}, {via, gw.CPU}} {
			if _, err := throughput(ctx, p.cs, up.cpu, p.cpu, c.warmup/3, c.timeout); err != nil {
				return err
			}
		}
	}

	if c.phases != "throughput" {
		l, ticks, late := interleaved(ctx, [][]*mcpproxytest.LeanClient{direct, proxied, via}, c.rate, c.duration, c.timeout)
		d, p, g := l[0], l[1], l[2]
		fmt.Fprintf(w, "latency at %d calls/s on each path, interleaved, for %s:\n", c.rate, c.duration)
		if late*100 > ticks {
			fmt.Fprintf(w, "  warning: %d of %d ticks started over an interval late: the paths did not keep up, so these latencies include queueing\n", late, ticks)
		}
		fmt.Fprintf(w, "  direct:  %s\n", d)
		fmt.Fprintf(w, "  proxy:   %s\n", p)
		fmt.Fprintf(w, "  gateway: %s\n", g)
		fmt.Fprintf(w, "  added by the pass-through proxy: p50=%v p99=%v\n", d.added(p, 50), d.added(p, 99))
		fmt.Fprintf(w, "  added by the gateway:            p50=%v p99=%v (over the proxy: p50=%v p99=%v)\n", d.added(g, 50), d.added(g, 99), p.added(g, 50), p.added(g, 99))
	}
	if c.phases == "latency" || ctx.Err() != nil {
		return ctx.Err()
	}

	dt, err := throughput(ctx, direct, up.cpu, nil, c.duration, c.timeout)
	if err != nil {
		return err
	}
	pt, err := throughput(ctx, proxied, up.cpu, px.cpu, c.duration, c.timeout)
	if err != nil {
		return err
	}
	gt, err := throughput(ctx, via, up.cpu, gw.CPU, c.duration, c.timeout)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	fmt.Fprintf(w, "throughput over %s with %d loops:\n", c.duration, c.conns)
	fmt.Fprintf(w, "  direct:  %s\n", dt)
	fmt.Fprintf(w, "  proxy:   %s\n", pt.with("proxy"))
	fmt.Fprintf(w, "  gateway: %s\n", gt.with("gateway"))
	// The measured gateway rate shares the cores with the clients and the
	// upstream; what the gateway's own CPU per call would allow on cores
	// of its own is an estimate, and printed as one.
	if perCall := gt.perCall(gt.hopCPU); perCall > 0 {
		procs := childProcs()
		fmt.Fprintf(w, "  estimate for the gateway alone on %d cores (from its CPU per call): %.0f calls/s\n", procs, float64(procs)*1e6/perCall)
		if proxy := pt.perCall(pt.hopCPU); proxy > 0 {
			fmt.Fprintf(w, "  the gateway's CPU per call over the pass-through proxy's: %.1f µs\n", perCall-proxy)
		}
	}
	return nil
}

// childProcs is the GOMAXPROCS mandate serve runs with: the environment's,
// else the CPUs it may use.
func childProcs() int {
	if n, err := strconv.Atoi(os.Getenv("GOMAXPROCS")); err == nil && n > 0 {
		return n
	}
	return runtime.NumCPU()
}

// clients dials n lean clients at endpoint, each calling echo in the
// given protocol revision.
func clients(ctx context.Context, rt http.RoundTripper, endpoint, token, protocol string, n int) ([]*mcpproxytest.LeanClient, error) {
	out := make([]*mcpproxytest.LeanClient, 0, n)
	for range n {
		s, err := mcpproxytest.DialLeanClient(ctx, mcpproxytest.LeanClientConfig{
			Endpoint: endpoint, Transport: rt, Token: token, ProtocolVersion: protocol,
			Tool: "echo", Arguments: `{"text":"hello"}`, ClientName: "mcpload",
		})
		if err != nil {
			closeAll(ctx, out)
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// closeAll ends the clients' sessions.
func closeAll(ctx context.Context, cs []*mcpproxytest.LeanClient) {
	for _, c := range cs {
		c.Close(ctx)
	}
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
// client tuples (the i-th client of every path): each tuple's loop calls
// every path on each tick of its schedule, in an order that rotates from
// tick to tick, so that noise hits all paths alike. Latency is measured
// from the start of each call. It also returns how many ticks there were
// and how many started over an interval late: then the schedule slipped
// (the paths could not keep up) and the latencies are not those at rate.
func interleaved(ctx context.Context, paths [][]*mcpproxytest.LeanClient, rate int, d, timeout time.Duration) (_ []latencies, ticks, late int) {
	ctx, cancel := context.WithTimeout(ctx, d+timeout)
	defer cancel()
	n := len(paths[0])
	for _, p := range paths {
		n = min(n, len(p))
	}
	interval := max(time.Duration(float64(time.Second)*float64(n)/float64(rate)), time.Microsecond)
	var mu sync.Mutex
	results := make([]latencies, len(paths))
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i := range n {
		wg.Go(func() {
			// Each loop's results, merged at the end.
			capacity := min(int(d/interval)+2, 1<<20)
			own := make([]latencies, len(paths))
			for j := range own {
				own[j].d = make([]time.Duration, 0, capacity)
			}
			next := start.Add(interval * time.Duration(i) / time.Duration(n))
			k, lateN := 0, 0
			for ; next.Before(end) && ctx.Err() == nil; k++ {
				if w := time.Until(next); w > 0 {
					time.Sleep(w)
				} else if -w > interval {
					lateN++
				}
				for j := range paths {
					p := (j + k) % len(paths)
					timeCall(ctx, paths[p][i], &own[p])
				}
				next = next.Add(interval)
			}
			mu.Lock()
			defer mu.Unlock()
			for j := range results {
				merge(&results[j], own[j])
			}
			ticks += k
			late += lateN
		})
	}
	wg.Wait()
	for j := range results {
		slices.Sort(results[j].d)
	}
	return results, ticks, late
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
	clientCPU   time.Duration // mcpload's (user+system) over the phase
	upstreamCPU time.Duration // the upstream process's
	hopCPU      time.Duration // the process between the clients and the upstream, if any
	hop         string        // its name in the report (with)
}

// with names the process between the clients and the upstream, whose CPU
// the report shows.
func (r rate) with(hop string) rate { r.hop = hop; return r }

// perCall is cpu per call in µs.
func (r rate) perCall(cpu time.Duration) float64 {
	return float64(cpu.Nanoseconds()) / 1e3 / float64(r.calls+r.errs)
}

func (r rate) String() string {
	cost := func(cpu time.Duration) string {
		return fmt.Sprintf("%.1f µs/call (%.2f cores)", r.perCall(cpu), cpu.Seconds()/r.elapsed.Seconds())
	}
	s := fmt.Sprintf("%.0f calls/s (n=%d errors=%d) CPU: clients %s, upstream %s",
		float64(r.calls)/r.elapsed.Seconds(), r.calls, r.errs, cost(r.clientCPU), cost(r.upstreamCPU))
	if r.hop != "" {
		s += ", " + r.hop + " " + cost(r.hopCPU)
	}
	if r.first != nil {
		s += fmt.Sprintf(" (first error: %v)", r.first)
	}
	return s
}

// processCPU reads the CPU time a process has used so far.
type processCPU func() (time.Duration, error)

// throughput calls back to back on every client for d. gw, if not nil,
// reads the CPU of the process (gateway or proxy) the calls go through;
// up reads the upstream's.
func throughput(ctx context.Context, ss []*mcpproxytest.LeanClient, up, gw processCPU, d, timeout time.Duration) (rate, error) {
	ctx, cancel := context.WithTimeout(ctx, d+timeout)
	defer cancel()
	var r rate
	if gw == nil {
		gw = func() (time.Duration, error) { return 0, nil }
	}
	up0, err := up()
	if err != nil {
		return r, fmt.Errorf("upstream CPU: %w", err)
	}
	gw0, err := gw()
	if err != nil {
		return r, fmt.Errorf("CPU of the hop: %w", err)
	}
	var calls, errs atomic.Int64
	var firstErr atomic.Pointer[error]
	var wg sync.WaitGroup
	cpu0, t0 := proctime.CPU(), time.Now()
	end := t0.Add(d)
	for _, s := range ss {
		wg.Go(func() {
			var n, e int64
			for time.Now().Before(end) && ctx.Err() == nil {
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
	r.calls, r.errs, r.elapsed, r.clientCPU = calls.Load(), errs.Load(), time.Since(t0), proctime.CPU()-cpu0
	if p := firstErr.Load(); p != nil {
		r.first = *p
	}
	up1, err := up()
	if err != nil {
		return r, fmt.Errorf("upstream CPU: %w", err)
	}
	gw1, err := gw()
	if err != nil {
		return r, fmt.Errorf("CPU of the hop: %w", err)
	}
	r.upstreamCPU, r.hopCPU = up1-up0, gw1-gw0
	return r, nil
}
