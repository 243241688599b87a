package main

import (
	"bytes"
	"context"
	"io"
	"math"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestSlope(t *testing.T) {
	t.Parallel()
	at := func(s int, y float64) sample { return sample{at: time.Duration(s) * time.Second, heap: y} }
	heap := func(s sample) float64 { return s.heap }
	for _, tc := range []struct {
		name    string
		samples []sample
		want    float64
	}{
		{"none", nil, 0},
		{"one", []sample{at(1, 5)}, 0},
		{"flat", []sample{at(0, 7), at(10, 7), at(20, 7)}, 0},
		{"line", []sample{at(0, 1), at(10, 21), at(20, 41)}, 2},
		{"noisy", []sample{at(0, 0), at(1, 3), at(2, 2), at(3, 5)}, 1.4},
		{"same time", []sample{at(4, 1), at(4, 9)}, 0},
	} {
		if got := slope(tc.samples, heap); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("%s: slope = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestParseMetrics(t *testing.T) {
	t.Parallel()
	text := `# HELP go_goroutines Number of goroutines that currently exist.
# TYPE go_goroutines gauge
go_goroutines 37
go_memstats_heap_inuse_bytes 1.2345e+07
mandate_audit_tree_size{x="y"} 9
mandate_audit_tree_size 20018
`
	got, err := parseMetrics(strings.NewReader(text), "go_goroutines", "go_memstats_heap_inuse_bytes", "mandate_audit_tree_size", "absent")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]float64{"go_goroutines": 37, "go_memstats_heap_inuse_bytes": 12345000, "mandate_audit_tree_size": 20018}
	if len(got) != len(want) {
		t.Errorf("parseMetrics = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("parseMetrics[%s] = %v, want %v", k, got[k], v)
		}
	}
}

// TestRun soaks a freshly built mandate briefly: every decision must be
// answered and the report complete.
func TestRun(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and starts mandate")
	}
	bin := filepath.Join(t.TempDir(), "mandate")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/mandatehq/mandate/cmd/mandate").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	var out bytes.Buffer
	err := run(context.Background(), &out, io.Discard, config{
		bin: bin, tasks: 20, rate: 100, duration: 2 * time.Second, sample: 500 * time.Millisecond, conns: 4,
	})
	t.Log(out.String())
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	for _, re := range []string{
		`20 tasks started`,
		`allowed=[1-9]\d* denied=[1-9]\d* errors=0 `,
		`RSS: idle \d+\.\dMiB, with 20 tasks \d+\.\dMiB, peak \d+\.\dMiB`,
		`slope over the second half \(\d+ samples\): RSS [-+]\d+\.\d\d MiB/min`,
	} {
		if !regexp.MustCompile(re).MatchString(out.String()) {
			t.Errorf("report does not match %q", re)
		}
	}
}
