package mcpproxy_test

import (
	"bytes"
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

var summaryLine = regexp.MustCompile(`(?m)^[✓✗] ([a-z0-9-]+): (\d+) passed, (\d+) failed`)

type scenarioResult struct{ passed, failed int }

// runConformance runs the official MCP conformance suite's server
// scenarios against url and returns the per-scenario results.
func runConformance(t *testing.T, dir, url string) map[string]scenarioResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	outDir := t.TempDir()
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", ".bin", "conformance"), "server", "--url", url, "-o", outDir)
	cmd.Env = nodeEnv(dir)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := map[string]scenarioResult{}
	for _, m := range summaryLine.FindAllStringSubmatch(out.String(), -1) {
		p, _ := strconv.Atoi(m[2])
		f, _ := strconv.Atoi(m[3])
		res[m[1]] = scenarioResult{p, f}
		if f > 0 {
			files, _ := filepath.Glob(filepath.Join(outDir, "server-"+m[1]+"-*", "*.json"))
			for _, fn := range files {
				b, _ := os.ReadFile(fn)
				t.Logf("%s: %s", fn, b)
			}
		}
	}
	if len(res) == 0 {
		t.Fatalf("conformance %s: no results (err %v):\n%s", url, err, out.String())
	}
	if testing.Verbose() || t.Failed() {
		t.Logf("conformance %s:\n%s", url, out.String())
	}
	return res
}

// TestConformance is the acceptance test of the gateway's transparency:
// the official MCP conformance suite, run against the gateway fronting the
// Go SDK's conformance server, passes every scenario that the server
// passes when tested directly.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite in -short mode")
	}
	dir := npmDeps(t)
	upURL := startEverything(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "everything", URL: upURL}}, nil)
	ctx := context.Background()
	ag, err := e.auth.Register(ctx, "conformance", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.auth.TaskToken(ctx, ag, "tool.call resource.read prompt.get", "conformance")
	if err != nil {
		t.Fatal(err)
	}
	// The suite's client cannot be given a token: serve the gateway
	// behind a listener whose requests carry it, as a configured client's
	// would.
	front := httptest.NewServer(withToken(e.gw, tok))
	defer front.Close()

	direct := runConformance(t, dir, upURL)
	via := runConformance(t, dir, front.URL+"/mcp/everything")
	total, passed := 0, 0
	for name, d := range direct {
		total += d.passed
		if d.failed > 0 {
			t.Logf("scenario %s fails directly (%d failed); not required of the gateway", name, d.failed)
			continue
		}
		g, ok := via[name]
		if !ok {
			t.Errorf("scenario %s: not run against the gateway", name)
			continue
		}
		passed += g.passed
		if g.failed > 0 || g.passed != d.passed {
			t.Errorf("scenario %s through the gateway: %d passed, %d failed; directly: %d passed", name, g.passed, g.failed, d.passed)
		}
	}
	t.Logf("conformance: %d checks pass directly, %d through the gateway", total, passed)
	if total < 40 {
		t.Errorf("direct run passed %d checks, want at least 40 (SDK v1.8.0)", total)
	}
	if n := len(e.rec.events(audit.TypeMCPCall)); n == 0 {
		t.Error("no mcp.call events recorded")
	}
	if a, r := len(e.rec.events(audit.TypeMCPCall)), len(e.rec.events(audit.TypeMCPResult)); r == 0 || r > a {
		t.Errorf("%d mcp.call and %d mcp.result events", a, r)
	}
}
