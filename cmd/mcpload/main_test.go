package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"
	"time"
)

// TestRun runs the whole load test briefly against both gateways: every
// call must succeed.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("starts mandate's server")
	}
	for _, gw := range []string{"server", "bare"} {
		t.Run(gw, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), &out, config{
				rate: 50, duration: 300 * time.Millisecond, warmup: 100 * time.Millisecond,
				conns: 2, upstream: "lean", gateway: gw, timeout: 10 * time.Second, phases: "both",
			})
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			t.Log(out.String())
			if n := len(regexp.MustCompile(`errors=0\b`).FindAllString(out.String(), -1)); n != 4 {
				t.Errorf("%d of 4 results without errors:\n%s", n, out.String())
			}
		})
	}
}
