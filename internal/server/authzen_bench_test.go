package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// BenchmarkAuthZENHTTP measures one AuthZEN evaluation over HTTP on a
// real server: a keep-alive client on loopback, an enforcement-point
// token, the decision pipeline with the default policies, and the
// decision's event made durable in the SQLite audit ledger (group
// commit) before the response. Run with -cpu 2; it reports decisions
// per second and the p50/p99 latency seen by the clients.
func BenchmarkAuthZENHTTP(b *testing.B) {
	const pointToken = "mandate_point_bench_token"
	sum := sha256.Sum256([]byte(pointToken))
	dir := b.TempDir()
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.Access.PointTokenHashes = []string{"sha256:" + hex.EncodeToString(sum[:])}
	s := runBenchServer(b, cfg)

	sock := socketClient(s.SocketPath())
	do := func(path, body string) string {
		req, _ := http.NewRequest("POST", "http://mandate"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := sock.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return string(out)
	}
	do("/admin/v1/agents", `{"name": "bench", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "autonomous"}`)
	var tk struct{ ID, Agent string }
	_ = json.Unmarshal([]byte(do("/admin/v1/tasks", `{"agent": "bench", "on_behalf_of": "alice@example.org", "purpose": "p", "scope": ["file.*:/repo/**"]}`)), &tk)
	body := `{"subject": {"type": "agent", "id": "` + tk.Agent + `", "properties": {"task": "` + tk.ID + `"}},
		"action": {"name": "file.write"}, "resource": {"type": "file", "id": "/repo/main.go"}}`
	url := "http://" + s.Addr().String() + "/access/v1/evaluation"
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256}}
	eval := func() time.Duration {
		req, _ := http.NewRequest("POST", url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+pointToken)
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		out, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		if resp.StatusCode != 200 || !strings.Contains(string(out), `"decision":true`) {
			b.Fatalf("evaluation: %d %s", resp.StatusCode, out)
		}
		return took
	}
	eval()
	var mu sync.Mutex
	var lat []time.Duration
	b.SetParallelism(16) // 16 goroutines per CPU: concurrent callers share group commits
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		var mine []time.Duration
		for pb.Next() {
			mine = append(mine, eval())
		}
		mu.Lock()
		lat = append(lat, mine...)
		mu.Unlock()
	})
	elapsed := time.Since(start)
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "decisions/s")
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

// runBenchServer starts a server with cfg and stops it when b ends.
func runBenchServer(b *testing.B, cfg Config) *Server {
	b.Helper()
	s, err := New(b.Context(), cfg)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	return s
}
