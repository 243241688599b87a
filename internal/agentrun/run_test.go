package agentrun

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/server"
)

// writePayload is a Claude Code PreToolUse event for a Write in the
// repository.
func (e *testEnv) writePayload() string {
	b, _ := json.Marshal(map[string]any{
		"session_id": "s1", "transcript_path": filepath.Join(e.repoOS, "t.jsonl"), "cwd": e.repoOS,
		"permission_mode": "default", "hook_event_name": "PreToolUse", "tool_name": "Write",
		"tool_input":  map[string]string{"file_path": filepath.Join(e.repoOS, "src", "new.go"), "content": "package main\n"},
		"tool_use_id": "toolu_run_1",
	})
	return string(b)
}

// runArgs is the mandate run command line for the test agent.
func (e *testEnv) runArgs(extra ...string) []string {
	args := []string{"run", "--agent", "coder", "--key", e.keyFile, "--server", e.s.PublicURL(), "--purpose", "fix the build"}
	for _, s := range strings.Fields(e.scope()) {
		args = append(args, "--scope", s)
	}
	return append(args, extra...)
}

// TestRunEndToEnd: the built `mandate run` around a script (this test
// binary) that reads the token file, has `mandate hook claude-code`
// decide a file write, reaches a host through the local forwarder to a
// stub egress proxy, opens a CONNECT tunnel, and exits 3. mandate run
// exits 3; the script saw its token only in a 0600 file in a 0700
// directory, never in its environment, nor the agent's key or an admin
// token; the egress proxy saw the task token; afterwards the file is
// gone, the token is refused and the task ended, as the ledger says.
func TestRunEndToEnd(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	bin := mandateBinary(t)
	stub := newStubEgress(t, func(tok string) bool { return e.decide(tok) == http.StatusOK })
	out := filepath.Join(e.dir, "report.json")
	cmd := exec.Command(bin, append(e.runArgs("--egress", stub.URL(), "--"), helperCommand("script", out)...)...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "SYSTEMROOT=" + os.Getenv("SYSTEMROOT"),
		"AGENTRUN_MANDATE=" + bin, "AGENTRUN_PAYLOAD=" + e.writePayload(), "AGENTRUN_TARGET=http://allowed.example/x",
		"MANDATE_ADMIN_TOKEN=admin-secret", "MANDATE_TASK_TOKEN=stale", "MANDATE_AGENT_KEY=" + e.keyFile,
		"HTTP_PROXY=http://bypass.example:1", "NO_PROXY=*",
	}
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stderr, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("mandate run = %v, want exit status 3\n%s", err, stderr.String())
	}
	rep := readReport(t, out)
	tok, taskID := rep["token"], rep["task_id"]
	if tok == "" || !strings.HasPrefix(taskID, "tsk_") {
		t.Fatalf("report = %v", rep)
	}
	if runtime.GOOS != "windows" && (rep["file_mode"] != "600" || rep["dir_mode"] != "700") {
		t.Errorf("token file mode %s in a directory of mode %s, want 600 in 700", rep["file_mode"], rep["dir_mode"])
	}
	if k := rep["token_in_env"]; k != "" {
		t.Errorf("the task token is in the command's environment, in %s", k)
	}
	for _, k := range []string{"MANDATE_ADMIN_TOKEN", "MANDATE_TASK_TOKEN", "MANDATE_AGENT_KEY"} {
		if v, ok := rep["env_"+k]; ok {
			t.Errorf("the command inherited %s=%s", k, v)
		}
	}
	if rep["env_MANDATE_SERVER"] != e.s.PublicURL() || rep["env_MANDATE_MCP_URL"] != e.s.PublicURL()+"/mcp" || rep["env_MANDATE_TASK_TOKEN_FILE"] != rep["token_file"] {
		t.Errorf("MANDATE_SERVER %q, MANDATE_MCP_URL %q, MANDATE_TASK_TOKEN_FILE %q", rep["env_MANDATE_SERVER"], rep["env_MANDATE_MCP_URL"], rep["env_MANDATE_TASK_TOKEN_FILE"])
	}
	for _, k := range []string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"} {
		if u, err := url.Parse(envOf(rep, k)); err != nil || u.Hostname() != "127.0.0.1" || u.User == nil {
			t.Errorf("%s = %q, want the local forwarder with this run's secret", k, envOf(rep, k))
		}
	}
	if envOf(rep, "NO_PROXY") != "localhost,127.0.0.1,::1" {
		t.Errorf("NO_PROXY = %q, want loopback only (the inherited one replaced)", envOf(rep, "NO_PROXY"))
	}
	tokenFileJSON, _ := json.Marshal(rep["token_file"])
	if mc := rep["mcp_config"]; !strings.Contains(mc, `"stdio"`) || !strings.Contains(mc, string(tokenFileJSON)) || strings.Contains(mc, tok) {
		t.Errorf("MCP configuration = %s, want the stdio bridge with the token file, not the token", mc)
	}

	if rep["hook_exit"] != "0" || !strings.Contains(rep["hook_out"], `"permissionDecision":"allow"`) {
		t.Errorf("hook = exit %s: %s, want an allow", rep["hook_exit"], rep["hook_out"])
	}
	if rep["get"] != "200 via egress http://allowed.example/x" {
		t.Errorf("GET through the proxy = %q", rep["get"])
	}
	if rep["connect"] != "200 Connection established pong" {
		t.Errorf("CONNECT through the proxy = %q", rep["connect"])
	}
	if seen := stub.tokens(); len(seen) != 2 || seen[0] != tok || seen[1] != tok {
		t.Errorf("the egress proxy saw %d credentials, want the task token twice", len(seen))
	}

	// After: nothing left, the token refused, the task ended.
	if why := removeAllBroken(); why != "" {
		t.Logf("not checked that the token file's directory is gone: %s", why)
	} else if _, err := os.Stat(filepath.Dir(rep["token_file"])); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the token file's directory is still there: %v", err)
	}
	if st := e.decide(tok); st != http.StatusUnauthorized {
		t.Errorf("a decision with the token after the run = %d, want 401", st)
	}
	if got := e.task(t, taskID); got["status"] != "ended" || got["status_reason"] != "mandate run: the command exited with status 3" {
		t.Errorf("task = %v %v, want ended with the exit status", got["status"], got["status_reason"])
	}
	ended := e.events(t, taskID, audit.TypeTaskEnded)
	if len(ended) != 1 || ended[0].Actor != e.agent {
		t.Errorf("task.ended events = %+v, want one by the agent", ended)
	}
	var writes []string
	for _, ev := range e.events(t, taskID, audit.TypeActionDecided) {
		if ev.Action == "file.write" {
			writes = append(writes, ev.Resource+"="+ev.Decision)
		}
	}
	if want := "file:" + e.repo + "/src/new.go=allow"; len(writes) != 1 || writes[0] != want {
		t.Errorf("file.write decisions = %v, want [%s]", writes, want)
	}
	if s := stderr.String(); !strings.Contains(s, "mandate run: task "+taskID+" started on behalf of alice@example.com") || !strings.Contains(s, "mandate run: task "+taskID+" ended") {
		t.Errorf("stderr = %q", s)
	}
}

// TestRunRenewal: with short-lived task tokens, the token file is
// replaced with fresh tokens while the command runs, atomically (never a
// torn read), and the hook works with the file's token after the first
// token has expired.
func TestRunRenewal(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(c *server.Config) { c.Tokens.TaskTTL = 2 * time.Second })
	out := filepath.Join(e.dir, "report.json")
	cfg := e.config(helperCommand("watch", out)...)
	cfg.Env = append(cfg.Env, "AGENTRUN_WATCH=5s", "AGENTRUN_MANDATE="+mandateBinary(t), "AGENTRUN_PAYLOAD="+e.writePayload())
	var stderr bytes.Buffer
	cfg.Stderr = &stderr
	code, err := Run(t.Context(), cfg)
	if code != 0 || err != nil {
		t.Fatalf("Run = %d, %v\n%s", code, err, stderr.String())
	}
	rep := readReport(t, out)
	if rep["torn"] != "" {
		t.Fatalf("a read of the token file saw %s", rep["torn"])
	}
	if seen := strings.Fields(rep["seen"]); len(seen) < 3 {
		t.Errorf("%d tokens seen in 5s of 2s tokens, want at least 3", len(seen))
	}
	if rep["hook_exit"] != "0" || !strings.Contains(rep["hook_out"], `"permissionDecision":"allow"`) {
		t.Errorf("hook after renewals = exit %s: %s", rep["hook_exit"], rep["hook_out"])
	}
	if strings.Contains(stderr.String(), "failed") {
		t.Errorf("stderr = %s", stderr.String())
	}
}

// TestRunTaskRevoked: an admin revokes the task while the command runs;
// the next renewal is refused and mandate run stops the command.
func TestRunTaskRevoked(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, func(c *server.Config) { c.Tokens.TaskTTL = 2 * time.Second })
	out := filepath.Join(e.dir, "report.json")
	cfg := e.config(helperCommand("sleep", out)...)
	var stderr bytes.Buffer
	cfg.Stderr = &stderr
	done := make(chan int, 1)
	start := time.Now()
	go func() { code, _ := Run(t.Context(), cfg); done <- code }()
	taskID := waitReport(t, out)["task_id"]
	req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://mandate/admin/v1/tasks/"+taskID+"/revoke", strings.NewReader(`{"reason":"runaway"}`))
	req.Header.Set("Content-Type", "application/json")
	if err := harness.DoJSON(e.admin, req, nil); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-done:
		t.Logf("Run = %d after %v", code, time.Since(start))
		if code == 0 || time.Since(start) > 30*time.Second {
			t.Errorf("Run = %d after %v, want the command stopped", code, time.Since(start))
		}
	case <-time.After(45 * time.Second):
		t.Fatal("the command was not stopped after its task was revoked")
	}
	if s := stderr.String(); !strings.Contains(s, "is no longer active") || !strings.Contains(s, "had stopped already (revoked)") {
		t.Errorf("stderr = %q", s)
	}
}

// TestRunEndFails: the server is gone when the command exits: mandate
// run says loudly that the task did not end and fails, though the
// command succeeded.
func TestRunEndFails(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	out := filepath.Join(e.dir, "report.json")
	goFile := filepath.Join(e.dir, "go")
	cfg := e.config(helperCommand("wait", out)...)
	cfg.Env = append(cfg.Env, "AGENTRUN_GO="+goFile)
	var stderr bytes.Buffer
	cfg.Stderr = &stderr
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() { code, err := Run(t.Context(), cfg); done <- result{code, err} }()
	rep := waitReport(t, out)
	e.stop()
	if err := os.WriteFile(goFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.code != ExitFailed || r.err == nil || !strings.Contains(r.err.Error(), "did not end") {
		t.Errorf("Run = %d, %v; want %d and an error saying the task did not end", r.code, r.err, ExitFailed)
	}
	if s := stderr.String(); !strings.Contains(s, "TASK "+rep["task_id"]+" DID NOT END") || !strings.Contains(s, "mandate task end "+rep["task_id"]) {
		t.Errorf("stderr = %q", s)
	}
	if why := removeAllBroken(); why != "" {
		t.Logf("not checked that the token file is gone: %s", why)
	} else if _, err := os.Stat(rep["token_file"]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the token file is still there: %v", err)
	}
}

// TestRunRefusals: what mandate run refuses before running anything — an
// unproven person, a scope beyond the entitlement, a wrong key — and a
// command that cannot be started, whose task still ends.
func TestRunRefusals(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"an unproven person", func(c *Config) { c.Task.OnBehalfOf = "bob@example.com" }, "--person-token"},
		{"a scope beyond the entitlement", func(c *Config) { c.Task.Scope = "shell.exec:* secret.use:*" }, "within the agent's entitlement"},
		{"another agent's name", func(c *Config) { c.Credential.Agent = "spiffe://mandate.local/agent/other" }, "--key is the private half"},
		{"a person token from nowhere", func(c *Config) { c.Task.PersonToken = "eyJhbGciOiJub25lIn0.eyJzdWIiOiJib2IifQ.x" }, "starting the task"},
	} {
		cfg := e.config(helperCommand("script", filepath.Join(e.dir, "never.json"))...)
		tc.mod(&cfg)
		code, err := Run(t.Context(), cfg)
		if code != ExitFailed || err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: Run = %d, %v; want %d and an error with %q", tc.name, code, err, ExitFailed, tc.want)
		}
	}
	if n := len(e.tasks(t)); n != 0 {
		t.Errorf("refused runs started %d tasks", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "never.json")); !errors.Is(err, os.ErrNotExist) {
		t.Error("a refused run ran its command")
	}

	code, err := Run(t.Context(), e.config(filepath.Join(e.dir, "no-such-program")))
	if code != ExitNotFound || err == nil {
		t.Errorf("Run(missing program) = %d, %v; want %d", code, err, ExitNotFound)
	}
	ts := e.tasks(t)
	if len(ts) != 1 || ts[0]["status"] != "ended" {
		t.Errorf("tasks after a command that could not start = %v, want one, ended", ts)
	}
}

// waitReport waits for a helper's report.
func waitReport(tb testing.TB, path string) map[string]string {
	tb.Helper()
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return readReport(tb, path)
		}
	}
	tb.Fatal("the command did not report")
	return nil
}
