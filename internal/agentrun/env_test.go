package agentrun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/serveproc"

	"github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/hook"
	"github.com/mandatehq/mandate/internal/server"
)

// testEnv is a real mandate server (shipped default policies, SQLite in a
// temporary directory, 127.0.0.1) with an autonomous agent entitled to a
// repository directory, shell commands and outbound HTTP, and its private
// key in a file.
type testEnv struct {
	s       *server.Server
	admin   *http.Client
	agent   string
	keyFile string
	repo    string // the repository's real path, canonical (slash) form
	repoOS  string
	dir     string
	stop    func()
}

func newTestEnv(tb testing.TB, mod func(*server.Config)) *testEnv {
	tb.Helper()
	dir, err := os.MkdirTemp("", "mandate-run-test-") // short: unix socket paths are limited
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	if cfg.AdminListener, err = harness.AdminListener(dir); err != nil {
		tb.Fatal(err)
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := server.New(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("server.New = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				tb.Error("server did not stop")
			}
		})
	}
	tb.Cleanup(stop)
	e := &testEnv{s: s, admin: harness.AdminClientAt(s.AdminAddr()), dir: dir, stop: stop}
	e.repoOS = filepath.Join(dir, "repo")
	if err := os.MkdirAll(filepath.Join(e.repoOS, "src"), 0o755); err != nil {
		tb.Fatal(err)
	}
	if e.repo, err = hook.RealPath("", e.repoOS); err != nil {
		tb.Fatal(err)
	}
	a, err := harness.RegisterAgent(tb.Context(), e.admin, harness.Registration{
		Name: "coder", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: "autonomous",
		Entitle: []string{"file.*:" + e.repo + "/**", "shell.exec:*", "http.request:*"}, MaxTaskTTL: "2h",
	})
	if err != nil {
		tb.Fatal(err)
	}
	e.agent = a.ID
	b, err := json.Marshal(jose.JSONWebKey{Key: a.Key, KeyID: a.KeyID, Algorithm: string(jose.EdDSA), Use: "sig"})
	if err != nil {
		tb.Fatal(err)
	}
	e.keyFile = filepath.Join(dir, "coder.jwk")
	if err := os.WriteFile(e.keyFile, b, 0o600); err != nil {
		tb.Fatal(err)
	}
	return e
}

// scope is the scope the tests' tasks ask for.
func (e *testEnv) scope() string {
	return "file.*:" + e.repo + "/** shell.exec:* http.request:*"
}

// config is a Run configuration for the agent, running command.
func (e *testEnv) config(command ...string) Config {
	kid, key, err := ReadKey(e.keyFile)
	if err != nil {
		panic(err)
	}
	return Config{
		Server:     e.s.PublicURL(),
		Credential: Credential{Agent: e.agent, KeyID: kid, Key: key},
		Task:       TaskRequest{Purpose: "fix the build", Scope: e.scope()},
		Command:    command,
		Env:        os.Environ(),
		Timeout:    5 * time.Second,
	}
}

// task reads a task over the admin API.
func (e *testEnv) task(tb testing.TB, id string) map[string]any {
	tb.Helper()
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodGet, "http://mandate/admin/v1/tasks/"+url.PathEscape(id), nil)
	var t map[string]any
	if err := harness.DoJSON(e.admin, req, &t); err != nil {
		tb.Fatal(err)
	}
	return t
}

// tasks lists the agent's tasks over the admin API.
func (e *testEnv) tasks(tb testing.TB) []map[string]any {
	tb.Helper()
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodGet, "http://mandate/admin/v1/tasks?agent="+url.QueryEscape(e.agent), nil)
	var page struct {
		Tasks []map[string]any `json:"tasks"`
	}
	if err := harness.DoJSON(e.admin, req, &page); err != nil {
		tb.Fatal(err)
	}
	return page.Tasks
}

// events returns the task's ledger events of type typ.
func (e *testEnv) events(tb testing.TB, taskID string, typ audit.Type) []*audit.Event {
	tb.Helper()
	q := url.Values{"task": {taskID}, "type": {string(typ)}, "limit": {"1000"}}
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodGet, "http://mandate/admin/v1/audit/events?"+q.Encode(), nil)
	var page struct {
		Events []*audit.Event `json:"events"`
	}
	if err := harness.DoJSON(e.admin, req, &page); err != nil {
		tb.Fatal(err)
	}
	return page.Events
}

// decide asks the server's AuthZEN API about a file read with tok and
// returns the HTTP status: 200 for a token the server accepts (-1 when
// the server cannot be reached). Safe to call from any goroutine.
func (e *testEnv) decide(tok string) int {
	body := `{"subject":{"type":"agent","id":"` + e.agent + `"},"action":{"name":"file.read"},"resource":{"type":"file","id":"` + e.repo + `/src/main.go"}}`
	req, _ := http.NewRequest(http.MethodPost, e.s.PublicURL()+"/access/v1/evaluation", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return -1
	}
	resp.Body.Close()
	return resp.StatusCode
}

// mandateBinary is the mandate command, built once per test binary.
func mandateBinary(tb testing.TB) string { return serveproc.Binary(tb) }

// helperCommand is this test binary run as the helper in mode (see
// TestMain), with its report written to out.
func helperCommand(mode, out string) []string {
	return []string{os.Args[0], "-test.run=^$", "--", "helper", mode, out}
}

// readReport reads a helper's report.
func readReport(tb testing.TB, path string) map[string]string {
	tb.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("helper report: %v", err)
	}
	var m map[string]string
	if err := json.Unmarshal(bytes.TrimSpace(b), &m); err != nil {
		tb.Fatalf("helper report %q: %v", b, err)
	}
	return m
}

// tempDir is t.TempDir, except that a failure to remove it afterwards is
// not a test failure: under Wine 8.0 (the Windows tests in CI) Go cannot
// delete anything (its Deleteat asks for FileDispositionInformationEx,
// which Wine does not implement), so the directory is left in the Wine
// prefix, which CI empties.
func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", strings.ReplaceAll(tb.Name(), "/", "_"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// removeAllBroken says why os.RemoveAll deletes nothing on this platform,
// or is "" where it works. Under Wine 8.0 it fails (see tempDir), so what
// mandate run removes after the command stays, and a test cannot check
// that it is gone; on Windows and Unix it is checked.
var removeAllBroken = sync.OnceValue(func() string {
	dir, err := os.MkdirTemp("", "mandate-removeall-")
	if err != nil {
		return ""
	}
	if err := os.WriteFile(filepath.Join(dir, "f"), nil, 0o600); err != nil {
		return ""
	}
	err = os.RemoveAll(dir)
	if _, serr := os.Lstat(dir); err != nil && serr == nil {
		return fmt.Sprintf("os.RemoveAll cannot delete here (%v)", err)
	}
	return ""
})

// envOf is the variable k of a helper's report: exactly k on Unix, k in
// any case on Windows, whose environment is case-insensitive (of
// HTTP_PROXY and http_proxy the command sees one).
func envOf(rep map[string]string, k string) string {
	if runtime.GOOS != "windows" {
		return rep["env_"+k]
	}
	for rk, v := range rep {
		if strings.EqualFold(rk, "env_"+k) {
			return v
		}
	}
	return ""
}
