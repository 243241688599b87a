package agentrun

import (
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"
)

// BenchmarkForwarder: one plain HTTP request through the local
// forwarder to a loopback egress proxy (keep-alive), against the same
// request sent to the egress proxy directly; reports the p50/p99 of each
// and the added p50.
func BenchmarkForwarder(b *testing.B) {
	stub := newStubEgress(b, func(tok string) bool { return tok == "tok" })
	fwd, err := newForwarder(stub.URL(), func() string { return "tok" }, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer fwd.Close()
	pu, _ := url.Parse(fwd.URL())
	direct, _ := url.Parse(stub.URL())
	direct.User = url.UserPassword(ProxyUser, "tok")
	through := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(pu)}}
	straight := &http.Client{Transport: &http.Transport{Proxy: http.ProxyURL(direct)}}
	get := func(hc *http.Client) time.Duration {
		start := time.Now()
		resp, err := hc.Get("http://allowed.example/x")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			b.Fatalf("status %d", resp.StatusCode)
		}
		return time.Since(start)
	}
	var via, dir []time.Duration
	b.ResetTimer()
	for b.Loop() {
		via = append(via, get(through))
		dir = append(dir, get(straight))
	}
	b.StopTimer()
	pct := func(ds []time.Duration, p float64) float64 {
		slices.Sort(ds)
		return float64(ds[int(p*float64(len(ds)-1))].Microseconds())
	}
	b.ReportMetric(pct(via, 0.50), "fwd-p50-µs")
	b.ReportMetric(pct(via, 0.99), "fwd-p99-µs")
	b.ReportMetric(pct(dir, 0.50), "direct-p50-µs")
	b.ReportMetric(pct(dir, 0.99), "direct-p99-µs")
}
