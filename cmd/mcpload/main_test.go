//go:build unix

// The test checks that the run leaves no child process behind with kill -0.

package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/serveproc"
)

// TestMain lets the test binary be mcpload's upstream process too.
func TestMain(m *testing.M) {
	if asUpstream() {
		return
	}
	os.Exit(m.Run())
}

// TestRun runs the whole load test briefly against a freshly built
// mandate serve, in each protocol revision and with each upstream: every
// call must succeed, each process's CPU must be measured, and the
// children (gateway and upstream) must be gone afterwards.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts mandate")
	}
	bin, err := serveproc.Build(t.Context(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, protocol := range []string{mcpproxytest.Version20251125, mcpproxytest.Version20260728} {
		for _, up := range []string{"lean", "sdk"} {
			t.Run(protocol+"/"+up, func(t *testing.T) {
				var out bytes.Buffer
				err := run(context.Background(), &out, config{
					rate: 50, duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond,
					conns: 2, upstream: up, protocols: []string{protocol}, mandate: bin, timeout: 10 * time.Second, phases: "both",
				})
				t.Log(out.String())
				if err != nil {
					t.Fatalf("run: %v", err)
				}
				report := out.String()
				if !strings.Contains(report, "protocol="+protocol+" ") {
					t.Errorf("report does not say protocol=%s", protocol)
				}
				// The pass-through proxy is an instrument: net/http's reverse
				// proxy in front of the SDK's stateless server now and then
				// loses a response mid-body (it logs "read error during body
				// copy"), which counts against its own path only.
				counted, want := report, 6
				if up == "sdk" {
					counted, want = regexp.MustCompile(`(?m)^ *proxy: .*$`).ReplaceAllString(report, ""), 4
				}
				if n := len(regexp.MustCompile(`errors=0\b`).FindAllString(counted, -1)); n != want {
					t.Errorf("%d of %d results without errors", n, want)
				}
				for _, re := range []string{
					`proxy: +\d+ calls/s .* CPU: clients \d+\.\d µs/call .*, upstream \d+\.\d µs/call .*, proxy \d+\.\d µs/call`,
					`gateway: \d+ calls/s .* CPU: clients \d+\.\d µs/call .*, upstream \d+\.\d µs/call .*, gateway \d+\.\d µs/call`,
					`added by the pass-through proxy: p50=\S+ p99=\S+`,
					`added by the gateway: +p50=\S+ p99=\S+ \(over the proxy: p50=\S+ p99=\S+\)`,
					`estimate for the gateway alone on \d+ cores`,
					`the gateway's CPU per call over the pass-through proxy's: -?\d+\.\d µs`,
				} {
					if !regexp.MustCompile(re).MatchString(report) {
						t.Errorf("report does not match %q", re)
					}
				}
				// The children are gone.
				m := regexp.MustCompile(`upstream=\w+ \(pid (\d+)\) proxy=pass-through \(pid (\d+)\) gateway=mandate serve \(pid (\d+)`).FindStringSubmatch(report)
				if m == nil {
					t.Fatal("report does not name the children's pids")
				}
				for _, p := range m[1:] {
					pid, _ := strconv.Atoi(p)
					if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
						t.Errorf("pid %d after the run: kill -0 = %v, want ESRCH", pid, err)
					}
				}
			})
		}
	}
}
