// Command mandatesoak measures the memory of a real `mandate serve`
// process holding many active tasks that keep making decisions, and
// whether it stays flat over a soak.
//
// Usage:
//
//	go build -o /tmp/mandate ./cmd/mandate
//	go run ./cmd/mandatesoak -bin /tmp/mandate [-tasks 10000] [-rate 2000]
//	    [-duration 3m] [-sample 5s] [-conns 16] [-- serve flags…]
//
// It starts `mandate serve` as a child process (the binary -bin, on a
// loopback port, with a temporary data directory, the default Cedar
// policies and SQLite ledger; flags after -- are passed to serve, and
// GOGC and GOMEMLIMIT in the environment reach it), registers an
// autonomous agent over the admin socket and starts -tasks tasks the way
// an agent does: a client_credentials grant with private_key_jwt, then an
// RFC 8693 token exchange per task (scope tool.call:echo/* and
// file.read:/data/**, a budget that is never spent). Then it asks the
// AuthZEN evaluation endpoint (POST /access/v1/evaluation, each task with
// its own task token) for -rate decisions a second, round-robin over all
// tasks, for -duration: tool calls and reads of internal data over eight
// resources, so that the access pipeline keeps per-task state (cached
// task, scope memo, taint, usage counters flushed to the store), and
// every decision is durably audited.
//
// Every -sample it prints the server's resident set (VmRSS from
// /proc/<pid>/status), its Go heap in use and goroutines (from /metrics),
// the decisions made so far and the ledger's size; then the RSS when
// idle, after starting the tasks and at peak, and the slope of RSS and
// heap over the second half of the run.
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
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/serveproc"
)

// config is what a run measures.
type config struct {
	bin      string
	tasks    int
	rate     int
	duration time.Duration
	sample   time.Duration
	conns    int
	serve    []string // extra flags for mandate serve
}

// budgetRSS is DESIGN.md's memory budget at 10k active tasks.
const budgetRSS = 150 << 20

func main() {
	var c config
	flag.StringVar(&c.bin, "bin", "mandate", "the mandate binary to run (go build -o /tmp/mandate ./cmd/mandate)")
	flag.IntVar(&c.tasks, "tasks", 10000, "active tasks to start")
	flag.IntVar(&c.rate, "rate", 2000, "decisions per second, round-robin over the tasks")
	flag.DurationVar(&c.duration, "duration", 3*time.Minute, "how long to keep deciding")
	flag.DurationVar(&c.sample, "sample", 5*time.Second, "how often to sample the server's memory")
	flag.IntVar(&c.conns, "conns", 16, "concurrent connections starting tasks and asking for decisions")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), `usage: mandatesoak [flags] [-- mandate serve flags]

mandatesoak starts mandate serve, starts -tasks tasks with their own task
tokens, asks for -rate AuthZEN decisions a second round-robin over them for
-duration, and reports the server's RSS over time: idle, after starting the
tasks, peak, and its slope over the second half of the run.

`)
		flag.PrintDefaults()
	}
	flag.Parse()
	c.serve = flag.Args()
	if c.tasks <= 0 || c.rate <= 0 || c.duration <= 0 || c.sample <= 0 || c.conns <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	// Interrupted, it still stops the server and removes its data.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, os.Stderr, c); err != nil {
		fmt.Fprintf(os.Stderr, "mandatesoak: %v\n", err)
		os.Exit(1)
	}
}

// run starts the server, the tasks and the decisions, and writes the
// table and the summary to w (progress to progress).
func run(ctx context.Context, w, progress io.Writer, c config) (err error) {
	life := min(c.duration+time.Hour, 24*time.Hour)
	srv, err := serveproc.Start(ctx, serveproc.Options{Bin: c.bin, TrustDomain: trustDomain, Life: life, Args: c.serve})
	if err != nil {
		return err
	}
	defer func() {
		if cerr := srv.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("server: %w", cerr)
		}
	}()
	hc := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		MaxIdleConns: c.conns + 4, MaxIdleConnsPerHost: c.conns + 4, IdleConnTimeout: time.Minute}}
	defer hc.CloseIdleConnections()

	time.Sleep(time.Second) // let start-up garbage settle
	idle, err := srv.Memory()
	if err != nil {
		return err
	}
	a, err := registerAgent(ctx, srv.Socket)
	if err != nil {
		return err
	}
	t0 := time.Now()
	tokens, err := startTasks(ctx, hc, srv.URL+"/oauth/token", a, c.tasks, c.conns, progress)
	if err != nil {
		return err
	}
	setup := time.Since(t0)
	created, err := srv.Memory()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "mandatesoak: mandate serve pid %d at %s, log %s\n", srv.Pid(), srv.URL, filepath.Join(srv.Dir, "server.log"))
	fmt.Fprintf(w, "mandatesoak: %d tasks started in %v (%.0f/s); RSS idle %s, with the tasks %s\n",
		c.tasks, setup.Round(time.Millisecond), float64(c.tasks)/setup.Seconds(), mib(idle.RSS), mib(created.RSS))
	fmt.Fprintf(w, "deciding at %d/s round-robin over %d tasks for %v, %d connections:\n", c.rate, c.tasks, c.duration, c.conns)

	d := &driver{hc: hc, url: srv.URL + "/access/v1/evaluation", tokens: tokens, bodies: bodies(a.ID)}
	samples, err := soak(ctx, w, srv, hc, d, c)
	if err != nil {
		return err
	}
	fmt.Fprintln(w, summary(c, idle, created, samples, d, srv.DataSize()))
	return nil
}

// startTasks starts n tasks over conns connections and returns their task
// tokens. Each connection gets a fresh agent token every minute.
func startTasks(ctx context.Context, hc *http.Client, tokenURL string, a *harness.Agent, n, conns int, progress io.Writer) ([]string, error) {
	tokens := make([]string, n)
	var next, done atomic.Int64
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for range min(conns, n) {
		wg.Go(func() {
			var at string
			var fetched time.Time
			for i := int(next.Add(1) - 1); i < n && ctx.Err() == nil; i = int(next.Add(1) - 1) {
				if time.Since(fetched) > time.Minute {
					var err error
					if at, err = a.Token(ctx, hc, tokenURL); err != nil {
						cancel(err)
						return
					}
					fetched = time.Now()
				}
				tok, err := harness.StartTask(ctx, hc, tokenURL, at, soakTask)
				if err != nil {
					cancel(fmt.Errorf("task %d: %w", i, err))
					return
				}
				tokens[i] = tok
				if k := done.Add(1); k%1000 == 0 {
					fmt.Fprintf(progress, "mandatesoak: %d tasks started\n", k)
				}
			}
		})
	}
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return tokens, nil
}

// bodies are the AuthZEN requests the driver cycles through: each task's
// k-th decision is bodies[k%len(bodies)].
func bodies(agentID string) [][]byte {
	var out [][]byte
	for k := range 4 {
		out = append(out, fmt.Appendf(nil, `{"subject":{"type":"agent","id":%q},"action":{"name":"tool.call"},`+
			`"resource":{"type":"tool","id":"echo/tool-%d","properties":{"server":"echo"}}}`, agentID, k))
		out = append(out, fmt.Appendf(nil, `{"subject":{"type":"agent","id":%q},"action":{"name":"file.read"},`+
			`"resource":{"type":"file","id":"/data/doc-%d","properties":{"sensitivity":"internal"}}}`, agentID, k))
	}
	return out
}

// driver asks for decisions.
type driver struct {
	hc     *http.Client
	url    string
	tokens []string
	bodies [][]byte

	allowed, denied, errs, missed atomic.Int64
	firstErr                      atomic.Pointer[error]
}

func (d *driver) decisions() int64 { return d.allowed.Load() + d.denied.Load() }

// decide asks for decision i: task i mod tasks, request (i div tasks) mod
// bodies.
func (d *driver) decide(ctx context.Context, i int64) {
	n := int64(len(d.tokens))
	body := d.bodies[(i/n)%int64(len(d.bodies))]
	allow, err := d.evaluate(ctx, d.tokens[i%n], body)
	switch {
	case err != nil:
		if ctx.Err() != nil {
			return
		}
		d.errs.Add(1)
		d.firstErr.CompareAndSwap(nil, &err)
	case allow:
		d.allowed.Add(1)
	default:
		d.denied.Add(1)
	}
}

func (d *driver) evaluate(ctx context.Context, tok string, body []byte) (bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, strings.NewReader(string(body)))
	if err != nil {
		return false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	var out struct {
		Decision bool `json:"decision"`
	}
	err = harness.DoJSON(d.hc, req, &out)
	return out.Decision, err
}

// run asks for rate decisions a second on conns connections until ctx
// ends. A decision that finds every connection busy and the queue full is
// not asked for, and counted as missed.
func (d *driver) run(ctx context.Context, rate, conns int) {
	jobs := make(chan int64, rate/10+conns)
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			for i := range jobs {
				d.decide(ctx, i)
			}
		})
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var sent int64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case now := <-tick.C:
			due := int64(now.Sub(start).Seconds() * float64(rate))
			for ; sent < due; sent++ {
				select {
				case jobs <- sent:
				default:
					d.missed.Add(1)
				}
			}
		}
	}
	close(jobs)
	wg.Wait()
}

// sample is one row of the table.
type sample struct {
	at        time.Duration
	mem       serveproc.Memory
	heap      float64 // go_memstats_heap_inuse_bytes
	routines  float64 // go_goroutines
	decisions int64
	ledger    float64 // mandate_audit_tree_size
}

// soak drives decisions for c.duration, sampling every c.sample.
func soak(ctx context.Context, w io.Writer, srv *serveproc.Server, hc *http.Client, d *driver, c config) ([]sample, error) {
	ctx, cancel := context.WithTimeout(ctx, c.duration)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.run(ctx, c.rate, c.conns)
	}()
	fmt.Fprintf(w, "%8s %9s %9s %9s %10s %10s %8s %10s\n", "time", "RSS", "peak RSS", "heap", "goroutines", "decisions", "per s", "ledger")
	var out []sample
	start := time.Now()
	take := func() error {
		m, err := srv.Memory()
		if err != nil {
			return err
		}
		mctx, mcancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer mcancel()
		gauges, err := metrics(mctx, hc, srv.URL, "go_memstats_heap_inuse_bytes", "go_goroutines", "mandate_audit_tree_size")
		if err != nil {
			return err
		}
		s := sample{at: time.Since(start), mem: m, heap: gauges["go_memstats_heap_inuse_bytes"],
			routines: gauges["go_goroutines"], decisions: d.decisions(), ledger: gauges["mandate_audit_tree_size"]}
		rate := 0.0
		if len(out) > 0 {
			prev := out[len(out)-1]
			rate = float64(s.decisions-prev.decisions) / (s.at - prev.at).Seconds()
		}
		out = append(out, s)
		fmt.Fprintf(w, "%8s %9s %9s %9s %10.0f %10d %8.0f %10.0f\n", s.at.Round(time.Second), mib(m.RSS), mib(m.HWM),
			mib(int64(s.heap)), s.routines, s.decisions, rate, s.ledger)
		return nil
	}
	if err := take(); err != nil {
		cancel()
		<-done
		return nil, err
	}
	tick := time.NewTicker(c.sample)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			if err := take(); err != nil {
				cancel()
				<-done
				return nil, err
			}
		case <-ctx.Done():
			<-done
			if err := take(); err != nil {
				return nil, err
			}
			return out, nil
		}
	}
}

// summary is the result of a run.
func summary(c config, idle, created serveproc.Memory, samples []sample, d *driver, dataSize int64) string {
	var b strings.Builder
	last := samples[len(samples)-1]
	peak := slices.MaxFunc(samples, func(x, y sample) int { return cmp.Compare(x.mem.RSS, y.mem.RSS) })
	fmt.Fprintf(&b, "decisions: %d (%.0f/s) allowed=%d denied=%d errors=%d missed=%d; ledger %.0f events, data dir %s\n",
		d.decisions(), float64(d.decisions())/last.at.Seconds(), d.allowed.Load(), d.denied.Load(), d.errs.Load(), d.missed.Load(),
		last.ledger, mib(dataSize))
	if p := d.firstErr.Load(); p != nil {
		fmt.Fprintf(&b, "first error: %v\n", *p)
	}
	if d.missed.Load() > 0 {
		fmt.Fprintf(&b, "warning: %d decisions were not asked for: the server (or this harness) did not keep up with -rate\n", d.missed.Load())
	}
	half := slices.DeleteFunc(slices.Clone(samples), func(s sample) bool { return s.at < last.at/2 })
	rssSlope := slope(half, func(s sample) float64 { return float64(s.mem.RSS) })
	heapSlope := slope(half, func(s sample) float64 { return s.heap })
	fmt.Fprintf(&b, "RSS: idle %s, with %d tasks %s, peak %s (at %v; VmHWM %s), end %s\n",
		mib(idle.RSS), c.tasks, mib(created.RSS), mib(peak.mem.RSS), peak.at.Round(time.Second), mib(last.mem.HWM), mib(last.mem.RSS))
	fmt.Fprintf(&b, "slope over the second half (%d samples): RSS %+.2f MiB/min, heap in use %+.2f MiB/min\n",
		len(half), rssSlope*60/(1<<20), heapSlope*60/(1<<20))
	verdict := "within"
	if last.mem.HWM > budgetRSS {
		verdict = "OVER"
	}
	fmt.Fprintf(&b, "budget: peak RSS %s %s the %s budget", mib(last.mem.HWM), verdict, mib(budgetRSS))
	return b.String()
}

// slope is the least-squares slope of f over the samples, per second.
func slope(samples []sample, f func(sample) float64) float64 {
	n := float64(len(samples))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for _, s := range samples {
		x, y := s.at.Seconds(), f(s)
		sx, sy, sxx, sxy = sx+x, sy+y, sxx+x*x, sxy+x*y
	}
	den := n*sxx - sx*sx
	if den == 0 {
		return 0
	}
	return (n*sxy - sx*sy) / den
}

func mib(b int64) string { return fmt.Sprintf("%.1fMiB", float64(b)/(1<<20)) }
