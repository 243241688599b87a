package mcpproxytest

import (
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/proctime"
)

// BenchParallelism is how many callers per P BenchCalls runs.
const BenchParallelism = 8

// BenchCalls benchmarks echo calls to the MCP endpoint (with token, if
// set) in protocol revision version from BenchParallelism callers per P, each with a lean client
// session of its own dialed (and warmed with one call) before the timer
// starts. Besides ns/op (wall time per call) it reports cpu-µs/op: the
// process's CPU time (user and system, from getrusage) per call, the
// fairer figure on a shared machine.
func BenchCalls(b *testing.B, endpoint, token, version string) {
	n := BenchParallelism * runtime.GOMAXPROCS(0)
	tr := &http.Transport{MaxIdleConns: n, MaxIdleConnsPerHost: n, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	clients := make([]*LeanClient, n)
	for i := range clients {
		c, err := DialLeanClient(b.Context(), LeanClientConfig{Endpoint: endpoint, Transport: tr, Token: token, ClientName: "bench", ProtocolVersion: version})
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(b.Context())
		clients[i] = c
		if err := c.Call(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.SetParallelism(BenchParallelism)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := proctime.CPU()
	b.RunParallel(func(pb *testing.PB) {
		c := clients[next.Add(1)-1]
		for pb.Next() {
			if err := c.Call(b.Context()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	cpu := proctime.CPU() - cpu0
	b.StopTimer()
	b.ReportMetric(float64(cpu.Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}
