package egress_test

import (
	"io"
	"net/http"
	"net/url"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/heapfloor"
	"github.com/mandatehq/mandate/internal/identity"
)

// benchTargets starts a loopback upstream and a proxy in front of it (the
// real pipeline with the default policies, every decision and outcome
// durable in the SQLite ledger) and returns the upstream's URL and a
// client for each way: direct and through the proxy.
func benchTargets(b *testing.B, o envOpts) (target string, direct, proxied *http.Client) {
	up := newUpstream(b, false)
	o.allowPrivate = loopback
	e := newEnv(b, o)
	tok := e.taskToken(b, "bench", identity.TierAutonomous, "http.request:"+up.addr())
	n := 16 * runtime.GOMAXPROCS(0)
	direct = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConns: n, MaxIdleConnsPerHost: n}}
	pu := &url.URL{Scheme: "http", Host: e.proxy, User: url.UserPassword("agent", tok)}
	proxied = &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu), MaxIdleConns: n, MaxIdleConnsPerHost: n}}
	// As mandate serve runs (gc.heap_floor_bytes' default).
	floor := heapfloor.Start(64 << 20)
	b.Cleanup(func() {
		floor.Stop()
		direct.CloseIdleConnections()
		proxied.CloseIdleConnections()
	})
	return "http://" + up.addr() + "/bench", direct, proxied
}

func fetch(c *http.Client, u string) error {
	resp, err := c.Get(u)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = &url.Error{Op: "GET", URL: u, Err: io.ErrUnexpectedEOF}
	}
	return err
}

// BenchmarkEgress measures plain HTTP GETs on loopback, direct and
// through the proxy, in the same run, from 8 keep-alive clients per P:
// ns/op is the throughput (wall time per request); p50-µs and p99-µs are
// the latency each request saw. The proxied figure includes the
// pipeline's decision and two durable ledger events per request.
func BenchmarkEgress(b *testing.B) {
	target, direct, proxied := benchTargets(b, envOpts{})
	for _, bc := range []struct {
		name string
		c    *http.Client
	}{{"direct", direct}, {"proxied", proxied}} {
		b.Run(bc.name, func(b *testing.B) {
			if err := fetch(bc.c, target); err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(8)
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				for pb.Next() {
					t0 := time.Now()
					if err := fetch(bc.c, target); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(t0))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkEgressPaced sends requests at a fixed 1,000 per second, direct
// and through the proxy, and reports the p50 and p99 latency of each: the
// proxy's added latency is the difference. proxied-no-ledger is the same
// proxy recording nothing, to tell its cost from the durable ledger's. The schedule is shared by
// pacedWorkers keep-alive clients, request i due at i ms (each worker
// takes every pacedWorkers-th; one that is late sends at once). b.N is
// the number of requests per way (-benchtime 5000x: five seconds each).
func BenchmarkEgressPaced(b *testing.B) {
	target, direct, proxied := benchTargets(b, envOpts{})
	leanTarget, _, lean := benchTargets(b, envOpts{noLedger: true})
	for _, bc := range []struct {
		name, target string
		c            *http.Client
	}{{"direct", target, direct}, {"proxied", target, proxied}, {"proxied-no-ledger", leanTarget, lean}} {
		b.Run(bc.name, func(b *testing.B) { runPaced(b, bc.c, bc.target) })
	}
}

// runPaced sends b.N GETs of target with c at 1,000 per second from
// pacedWorkers clients and reports the rate and the p50 and p99 latency.
func runPaced(b *testing.B, c *http.Client, target string) {
	for range pacedWorkers {
		if err := fetch(c, target); err != nil {
			b.Fatal(err)
		}
	}
	const interval = time.Millisecond // 1k req/s
	lat := make([]time.Duration, b.N)
	var failed atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range pacedWorkers {
		wg.Go(func() {
			for i := w; i < b.N; i += pacedWorkers {
				if d := time.Until(start.Add(time.Duration(i) * interval)); d > 0 {
					time.Sleep(d)
				}
				t0 := time.Now()
				if err := fetch(c, target); err != nil {
					failed.Add(1)
				}
				lat[i] = time.Since(t0)
			}
		})
	}
	wg.Wait()
	b.StopTimer()
	if n := failed.Load(); n > 0 {
		b.Fatalf("%d requests failed", n)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	reportLatency(b, lat)
}

// pacedWorkers is how many clients share BenchmarkEgressPaced's schedule.
const pacedWorkers = 16

func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}
