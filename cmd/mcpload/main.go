// Command mcpload measures the MCP gateway against calling its upstream
// directly, in one run: the latency the gateway adds at a fixed call rate,
// and the gateway's maximum throughput.
//
// It starts, in one process, an upstream MCP server (Go SDK, Streamable
// HTTP, one "echo" tool), a real mandate authority (token server over
// SQLite in a temporary directory), and the gateway in front of the
// upstream with the scope/tier decider of mcpproxytest and the SQLite
// audit ledger (or an in-memory recorder with -audit=memory). Clients are
// Go SDK sessions authenticated with a task token.
//
//	go run ./cmd/mcpload -rate 1000 -duration 10s -conns 16
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
)

func main() {
	rate := flag.Int("rate", 1000, "calls per second for the latency phase")
	dur := flag.Duration("duration", 10*time.Second, "length of each phase")
	conns := flag.Int("conns", 16, "client sessions")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: leave as is)")
	auditKind := flag.String("audit", "sqlite", "audit recorder: sqlite (durable ledger) or memory")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	if err := run(*rate, *dur, *conns, *auditKind); err != nil {
		log.Print(err)
		os.Exit(1)
	}
}

type echoIn struct {
	Text string `json:"text"`
}

func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

func run(rate int, dur time.Duration, conns int, auditKind string) error {
	ctx := context.Background()
	up := mcp.NewServer(&mcp.Implementation{Name: "echo", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "echo", Description: "Echo text.", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	upURL, stopUp, err := serve(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	if err != nil {
		return err
	}
	defer stopUp()

	dir, err := os.MkdirTemp("", "mcpload-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	base := "http://" + l.Addr().String()
	a, err := mcpproxytest.NewAuthority(ctx, dir, base)
	if err != nil {
		return err
	}
	defer a.Close()
	var rec audit.Recorder = a.Audit
	if auditKind == "memory" {
		rec = &countRecorder{}
	}
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams:     []mcpproxy.Upstream{{Name: "echo", URL: upURL}},
		Authenticator: mcpproxytest.Authenticator{Verifier: a.Tokens.Verifier()},
		Decider:       mcpproxytest.Decider{}, Audit: rec, PublicURL: base,
	})
	if err != nil {
		return err
	}
	defer gw.Close()
	gsrv := &http.Server{Handler: gw}
	go gsrv.Serve(l)
	defer gsrv.Close()

	ag, err := a.Register(ctx, "load", identity.TierAutonomous)
	if err != nil {
		return err
	}
	tok, err := a.TaskToken(ctx, ag, "tool.call:echo/*", "load test")
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: &bearer{tok: tok, base: &http.Transport{MaxIdleConnsPerHost: 1024}}}

	fmt.Printf("mcpload: GOMAXPROCS=%d NumCPU=%d conns=%d audit=%s\n", runtime.GOMAXPROCS(0), runtime.NumCPU(), conns, auditKind)
	direct, err := sessions(ctx, upURL, hc, conns)
	if err != nil {
		return err
	}
	via, err := sessions(ctx, base+"/mcp/echo", hc, conns)
	if err != nil {
		return err
	}
	// Warm up both paths.
	if _, _, _, err := interleaved(ctx, direct, via, 500, time.Second); err != nil {
		return err
	}
	// Direct and gateway calls alternate on the same schedule, so that
	// noise from other load on the machine hits both alike.
	dl, gl, nerr, err := interleaved(ctx, direct, via, rate, dur)
	if err != nil {
		return err
	}
	dp50, dp99 := pct(dl, 50), pct(dl, 99)
	gp50, gp99 := pct(gl, 50), pct(gl, 99)
	fmt.Printf("latency at %d calls/s on each path (interleaved) for %s, errors %d:\n", rate, dur, nerr)
	fmt.Printf("  direct:  n=%d p50=%v p90=%v p99=%v\n", len(dl), dp50, pct(dl, 90), dp99)
	fmt.Printf("  gateway: n=%d p50=%v p90=%v p99=%v\n", len(gl), gp50, pct(gl, 90), gp99)
	fmt.Printf("  added:   p50=%v p99=%v\n", gp50-dp50, gp99-dp99)

	dn, dErr := maxRate(ctx, direct, dur)
	gn, gErr := maxRate(ctx, via, dur)
	fmt.Printf("throughput over %s with %d sessions:\n", dur, conns)
	fmt.Printf("  direct:  %.0f calls/s (errors %d)\n", float64(dn)/dur.Seconds(), dErr)
	fmt.Printf("  gateway: %.0f calls/s (errors %d)\n", float64(gn)/dur.Seconds(), gErr)
	return nil
}

type bearer struct {
	tok  string
	base http.RoundTripper
}

func (b *bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return b.base.RoundTrip(r)
}

type countRecorder struct{ n atomic.Int64 }

func (c *countRecorder) Record(context.Context, audit.Event) error { c.n.Add(1); return nil }

func sessions(ctx context.Context, url string, hc *http.Client, n int) ([]*mcp.ClientSession, error) {
	var out []*mcp.ClientSession
	for range n {
		c := mcp.NewClient(&mcp.Implementation{Name: "mcpload", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: url, HTTPClient: hc, DisableStandaloneSSE: true}, nil)
		if err != nil {
			return nil, fmt.Errorf("connect %s: %w", url, err)
		}
		out = append(out, cs)
	}
	return out, nil
}

var args = map[string]any{"text": "hello"}

func call(ctx context.Context, cs *mcp.ClientSession) error {
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
	if err == nil && res.IsError {
		err = fmt.Errorf("tool error")
	}
	return err
}

// interleaved issues calls at rate per second on each of two paths,
// spread over the session pairs, alternating between the paths, and
// returns each path's sorted latencies.
func interleaved(ctx context.Context, a, b []*mcp.ClientSession, rate int, d time.Duration) ([]time.Duration, []time.Duration, int, error) {
	var mu sync.Mutex
	var la, lb []time.Duration
	var errs atomic.Int64
	var wg sync.WaitGroup
	n := min(len(a), len(b))
	interval := time.Duration(float64(time.Second) * float64(n) / float64(rate))
	end := time.Now().Add(d)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			next := time.Now().Add(interval * time.Duration(i) / time.Duration(n))
			var ma, mb []time.Duration
			for k := 0; next.Before(end); k++ {
				time.Sleep(time.Until(next))
				first, second, lf, ls := a[i], b[i], &ma, &mb
				if k%2 == 1 {
					first, second, lf, ls = b[i], a[i], &mb, &ma
				}
				for _, p := range []struct {
					cs  *mcp.ClientSession
					out *[]time.Duration
				}{{first, lf}, {second, ls}} {
					t0 := time.Now()
					if err := call(ctx, p.cs); err != nil {
						errs.Add(1)
					} else {
						*p.out = append(*p.out, time.Since(t0))
					}
				}
				next = next.Add(interval)
			}
			mu.Lock()
			la, lb = append(la, ma...), append(lb, mb...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.Sort(la)
	slices.Sort(lb)
	return la, lb, int(errs.Load()), nil
}

// maxRate issues calls back to back on every session for d.
func maxRate(ctx context.Context, ss []*mcp.ClientSession, d time.Duration) (int64, int64) {
	var n, errs atomic.Int64
	var wg sync.WaitGroup
	end := time.Now().Add(d)
	for _, cs := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(end) {
				if err := call(ctx, cs); err != nil {
					errs.Add(1)
				} else {
					n.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	return n.Load(), errs.Load()
}

func pct(s []time.Duration, p int) time.Duration {
	if len(s) == 0 {
		return 0
	}
	return s[(len(s)-1)*p/100]
}
