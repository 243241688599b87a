package hook

import (
	"bytes"
	"os"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/serveproc"
)

// mandateBinary is the mandate command, built once per test binary.
func mandateBinary(tb testing.TB) string { return serveproc.Binary(tb) }

// runBinary runs `mandate hook claude-code` with in on stdin.
func runBinary(tb testing.TB, bin string, in []byte, env ...string) (int, string, string) {
	tb.Helper()
	cmd := exec.Command(bin, "hook", "claude-code")
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	cmd.Stdin = bytes.NewReader(in)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		tb.Fatal(err)
	}
	return code, out.String(), errb.String()
}

// TestHookProcess: the built binary, as Claude Code runs it: a decision
// on stdout for a good event; exit status 2 with the reason alone on
// stderr for garbage, an unreachable server and no configuration.
func TestHookProcess(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t)
	bin := mandateBinary(t)
	env := []string{"MANDATE_SERVER=" + e.s.PublicURL(), "MANDATE_TASK_TOKEN=" + e.token}

	code, stdout, stderr := runBinary(t, bin, e.payload(t, "pre_write.json"), env...)
	if code != 0 {
		t.Fatalf("exit %d, stderr %q", code, stderr)
	}
	if d, _ := decision(t, stdout); d != AnswerAllow {
		t.Errorf("decision %s, want allow", d)
	}
	code, stdout, _ = runBinary(t, bin, e.payload(t, "pre_write_outside.json"), env...)
	if d, _ := decision(t, stdout); code != 0 || d != AnswerDeny {
		t.Errorf("outside: exit %d decision %s, want 0 and deny", code, d)
	}

	for _, tc := range []struct {
		name   string
		in     []byte
		env    []string
		reason string
	}{
		{"garbage stdin", []byte("{\"hook_event_name\": \"PreToolUse\", garbage"), env, "hook event"},
		{"server down", e.payload(t, "pre_write.json"), []string{"MANDATE_SERVER=http://127.0.0.1:1", "MANDATE_TASK_TOKEN=" + e.token}, "cannot be reached"},
		{"no server configured", e.payload(t, "pre_write.json"), []string{"MANDATE_TASK_TOKEN=" + e.token}, "no server"},
		{"deadline", e.payload(t, "pre_write.json"), append(slices.Clone(env), "MANDATE_HOOK_DEADLINE=1ns"), "deadline"},
	} {
		code, stdout, stderr := runBinary(t, bin, tc.in, tc.env...)
		lines := strings.Split(strings.TrimSpace(stderr), "\n")
		if code != ExitBlock || stdout != "" || len(lines) != 1 || !strings.HasPrefix(lines[0], "mandate hook: ") || !strings.Contains(stderr, tc.reason) {
			t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and one reason line with %q", tc.name, code, stdout, stderr, tc.reason)
		}
	}
}

// BenchmarkHookProcess: one PreToolUse decision as Claude Code makes it —
// the mandate process started, the event read, the server asked over
// loopback (the decision durably audited), the answer written — per op.
// Reports p50 and p99 of the whole invocation.
func BenchmarkHookProcess(b *testing.B) {
	e := newTestEnv(b)
	bin := mandateBinary(b)
	env := []string{"MANDATE_SERVER=" + e.s.PublicURL(), "MANDATE_TASK_TOKEN=" + e.token}
	in := e.payload(b, "pre_write.json")
	var lat []time.Duration
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		code, _, stderr := runBinary(b, bin, in, env...)
		lat = append(lat, time.Since(start))
		if code != 0 {
			b.Fatalf("exit %d: %s", code, stderr)
		}
	}
	slices.Sort(lat)
	pct := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.Logf("slowest: %v", lat[max(0, len(lat)-8):])
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
}
