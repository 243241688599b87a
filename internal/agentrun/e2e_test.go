package agentrun

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/hook"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/server"
)

// stdioUpstreamEnv, set, makes this test binary the stdio MCP server the
// end-to-end test's gateway starts as its upstream "db" (see TestMain).
const stdioUpstreamEnv = "AGENTRUN_TEST_STDIO_UPSTREAM"

// stdioUpstream serves "getenv" (read-only): a variable's SHA-256, its
// value and the process id — so a test can tell what the process was
// given, and see that the gateway keeps the value from the client.
func stdioUpstream() {
	s := mcp.NewServer(&mcp.Implementation{Name: "db", Version: "1"}, nil)
	type in struct {
		Name string `json:"name"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "getenv", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		v := os.Getenv(a.Name)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("sha256=%x value=%s pid=%d", sha256.Sum256([]byte(v)), v, os.Getpid())}}}, nil, nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
}

// e2eScript is the helper's "e2e" mode: what an agent under mandate run
// does, reported into rep. It
//   - asks `$AGENTRUN_MANDATE hook claude-code` about the PreToolUse
//     event AGENTRUN_PAYLOAD (a Write), writes the file when allowed, and
//     reports the PostToolUse event AGENTRUN_POST_PAYLOAD;
//   - GETs AGENTRUN_ALLOWED and AGENTRUN_DENIED through $HTTP_PROXY (named
//     explicitly, as curl -x does: Go's client never proxies loopback);
//   - calls the tool db__getenv for DB_PASSWORD through the gateway, with
//     the MCP client configuration $MANDATE_MCP_CONFIG (mandate mcp stdio,
//     reading $MANDATE_TASK_TOKEN_FILE).
//
// Every answer it gets goes into rep, and its whole environment.
func e2eScript(rep map[string]string) {
	rep["environ"] = strings.Join(os.Environ(), "\n")
	rep["hook_exit"], rep["hook_out"] = runHook(os.Getenv("AGENTRUN_PAYLOAD"))
	if rep["hook_exit"] == "0" && strings.Contains(rep["hook_out"], `"permissionDecision":"allow"`) {
		var ev struct {
			ToolInput struct {
				FilePath string `json:"file_path"`
				Content  string `json:"content"`
			} `json:"tool_input"`
		}
		_ = json.Unmarshal([]byte(os.Getenv("AGENTRUN_PAYLOAD")), &ev)
		if err := os.WriteFile(ev.ToolInput.FilePath, []byte(ev.ToolInput.Content), 0o600); err != nil {
			rep["write"] = err.Error()
		}
		rep["post_exit"], rep["post_out"] = runHook(os.Getenv("AGENTRUN_POST_PAYLOAD"))
	}
	proxy, err := url.Parse(os.Getenv("HTTP_PROXY"))
	if err != nil {
		rep["allowed"] = "error: HTTP_PROXY: " + err.Error()
		return
	}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	rep["allowed"] = getWith(hc, os.Getenv("AGENTRUN_ALLOWED"))
	rep["denied"] = getWith(hc, os.Getenv("AGENTRUN_DENIED"))
	rep["mcp"], rep["mcp_stderr"] = callThroughConfig()
}

// getWith GETs target with hc: "<status> <body>".
func getWith(hc *http.Client, target string) string {
	resp, err := hc.Get(target)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, b)
}

// callThroughConfig starts the "mandate" server of $MANDATE_MCP_CONFIG
// as an MCP client would, and calls db__getenv through it.
func callThroughConfig() (result, stderr string) {
	b, err := os.ReadFile(os.Getenv("MANDATE_MCP_CONFIG"))
	if err != nil {
		return "error: " + err.Error(), ""
	}
	var cfg struct {
		Servers map[string]struct {
			Command string            `json:"command"`
			Args    []string          `json:"args"`
			Env     map[string]string `json:"env"`
		} `json:"mcpServers"`
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		return "error: MANDATE_MCP_CONFIG: " + err.Error(), ""
	}
	srv, ok := cfg.Servers["mandate"]
	if !ok {
		return "error: no mandate server in " + string(b), ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.Command(srv.Command, srv.Args...)
	cmd.Env = os.Environ()
	for k, v := range srv.Env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var errb bytes.Buffer
	cmd.Stderr = &errb
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "e2e-script", Version: "1"}, nil).
		Connect(ctx, &mcp.CommandTransport{Command: cmd}, nil)
	if err != nil {
		return "error: connect: " + err.Error(), errb.String()
	}
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "db__getenv", Arguments: map[string]any{"name": "DB_PASSWORD"}})
	cs.Close()
	if err != nil {
		return "error: " + err.Error(), errb.String()
	}
	var out strings.Builder
	if res.IsError {
		out.WriteString("tool error: ")
	}
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			out.WriteString(tc.Text)
		}
	}
	return out.String(), errb.String()
}

// acceptCounter counts the connections a listener accepts.
type acceptCounter struct {
	net.Listener
	n atomic.Int64
}

func (l *acceptCounter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

// countingServer is a loopback HTTP server answering "upstream <host>",
// counting the connections it accepts.
func countingServer(t *testing.T) (host string, accepts *acceptCounter) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "upstream "+r.Host)
	}))
	l := &acceptCounter{Listener: srv.Listener}
	srv.Listener = l
	srv.Start()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://"), l
}

// hookToolUseID is the Write's tool_use_id, its decision's and outcome's
// request ID in the ledger.
const hookToolUseID = "toolu_e2e_1"

// claudeEvent is a Claude Code hook event for a Write of path.
func claudeEvent(event, cwd, path, content string) string {
	ev := map[string]any{
		"session_id": "e2e", "transcript_path": filepath.Join(cwd, "t.jsonl"), "cwd": cwd,
		"permission_mode": "default", "hook_event_name": event, "tool_name": "Write",
		"tool_input":  map[string]string{"file_path": path, "content": content},
		"tool_use_id": hookToolUseID,
	}
	if event == "PostToolUse" {
		ev["tool_response"] = map[string]any{"filePath": path, "success": true}
	}
	b, _ := json.Marshal(ev)
	return string(b)
}

// TestRunEndToEndGoverned is issue 17's end to end: the built `mandate
// run --egress` around a script, against a real server with the shipped
// default policies, its real egress proxy and an MCP stdio upstream that
// a secret is delivered to. The script has the hook allow a file write
// and writes it, reaches an allowed loopback host through the proxy and
// is refused another (which never sees a connection), and calls the
// upstream's tool through the gateway, which holds the secret it never
// sees. After the script exits 0 the token is refused everywhere, the
// task has ended, the lease is revoked, and the ledger holds every step
// — and the secret's value is nowhere in it nor in anything the script
// got.
//
// The agent is supervised: the shipped policies never let an autonomous
// agent use a secret without a step-up approval, and no approver is
// wired. So the operator's classification makes the secret's use and the
// allowed host reads and labels the work directory a draft, which the
// default policies let a supervised agent do without an approval.
func TestRunEndToEndGoverned(t *testing.T) {
	t.Parallel()
	const value = "pg-E2E-PASSWORD-7d41c09b"
	allowedHost, allowedAccepts := countingServer(t)
	deniedHost, deniedAccepts := countingServer(t)

	workOS, err := os.MkdirTemp("", "mandate-e2e-work-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(workOS) })
	work, err := hook.RealPath("", workOS)
	if err != nil {
		t.Fatal(err)
	}
	class := filepath.Join(workOS, "classification.yaml")
	classification := fmt.Sprintf("risks:\n"+
		"  - {match: %q, risk: read}\n  - {match: %q, risk: read}\n"+
		"resources:\n  - {match: %q, labels: [draft]}\n",
		"secret.use:db_password", "http.request:"+allowedHost, "file.write:"+work+"/**")
	if err := os.WriteFile(class, []byte(classification), 0o600); err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	e := newTestEnv(t, func(c *server.Config) {
		c.Egress.Listen = "127.0.0.1:0"
		c.Egress.AllowPrivate = []string{"127.0.0.0/8"} // the test servers are on loopback
		c.MCP.Upstreams = []server.MCPUpstream{{Name: "db", Command: exe, Env: []string{stdioUpstreamEnv + "=1"}}}
		c.Policy.ClassificationFile = class
	})
	if e.s.EgressAddr() == nil {
		t.Fatal("no egress listener")
	}
	admin := func(method, path, body string, want int) []byte {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://mandate"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := e.admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return b
	}
	admin("PUT", "/admin/v1/secrets/db_password", `{"value":"`+value+`","deliver":[{"upstream":"db","env":"DB_PASSWORD"}]}`, 201)

	scope := []string{"file.write:" + work + "/**", "http.request:" + allowedHost, "tool.call:db/*", "secret.use:db_password"}
	a, err := harness.RegisterAgent(t.Context(), e.admin, harness.Registration{
		Name: "reporter", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: "supervised",
		Entitle: scope, MaxTaskTTL: "1h",
	})
	if err != nil {
		t.Fatal(err)
	}
	e.agent = a.ID
	jwk, err := json.Marshal(jose.JSONWebKey{Key: a.Key, KeyID: a.KeyID, Algorithm: string(jose.EdDSA), Use: "sig"})
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(e.dir, "reporter.jwk")
	if err := os.WriteFile(keyFile, jwk, 0o600); err != nil {
		t.Fatal(err)
	}

	bin := mandateBinary(t)
	target := filepath.Join(workOS, "report.md")
	out := filepath.Join(e.dir, "report.json")
	args := []string{"run", "--agent", "reporter", "--key", keyFile, "--server", e.s.PublicURL(),
		"--purpose", "write the nightly report", "--egress", "http://" + e.s.EgressAddr().String()}
	for _, s := range scope {
		args = append(args, "--scope", s)
	}
	cmd := exec.Command(bin, append(append(args, "--"), helperCommand("e2e", out)...)...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"), "SYSTEMROOT=" + os.Getenv("SYSTEMROOT"), "AGENTRUN_MANDATE=" + bin,
		"AGENTRUN_PAYLOAD=" + claudeEvent("PreToolUse", workOS, target, "# nightly\n"),
		"AGENTRUN_POST_PAYLOAD=" + claudeEvent("PostToolUse", workOS, target, "# nightly\n"),
		"AGENTRUN_ALLOWED=http://" + allowedHost + "/status", "AGENTRUN_DENIED=http://" + deniedHost + "/exfiltrate",
	}
	var output bytes.Buffer
	cmd.Stdout, cmd.Stderr = &output, &output
	start := time.Now()
	err = cmd.Run()
	t.Logf("mandate run took %v:\n%s", time.Since(start), output.String())
	if err != nil {
		t.Fatalf("mandate run = %v, want exit status 0\n%s", err, output.String())
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("the script's report: %v\n%s", err, output.String())
	}
	rep := readReport(t, out)
	tok, taskID := rep["token"], rep["task_id"]
	if tok == "" || !strings.HasPrefix(taskID, "tsk_") {
		t.Fatalf("report = %v", rep)
	}

	// What the script saw.
	if rep["hook_exit"] != "0" || !strings.Contains(rep["hook_out"], `"permissionDecision":"allow"`) {
		t.Errorf("hook on the Write = exit %s: %s, want an allow", rep["hook_exit"], rep["hook_out"])
	}
	if b, err := os.ReadFile(target); err != nil || string(b) != "# nightly\n" || rep["write"] != "" {
		t.Errorf("the written file = %q, %v (%s)", b, err, rep["write"])
	}
	if rep["post_exit"] != "0" {
		t.Errorf("hook on the PostToolUse = exit %s: %s", rep["post_exit"], rep["post_out"])
	}
	if rep["allowed"] != "200 upstream "+allowedHost {
		t.Errorf("GET of the allowed host through the proxy = %q, want 200 from it", rep["allowed"])
	}
	if got := rep["denied"]; !strings.HasPrefix(got, "403 ") || !strings.Contains(got, "scope") {
		t.Errorf("GET of the denied host through the proxy = %q, want 403 with the reason", got)
	}
	if n := allowedAccepts.n.Load(); n != 1 {
		t.Errorf("the allowed host accepted %d connections, want 1", n)
	}
	if n := deniedAccepts.n.Load(); n != 0 {
		t.Errorf("the denied host accepted %d connections, want none", n)
	}
	if got := rep["mcp"]; !strings.Contains(got, fmt.Sprintf("sha256=%x ", sha256.Sum256([]byte(value)))) || !strings.Contains(got, "value=[secret:db_password]") {
		t.Errorf("db__getenv through the gateway = %q (bridge: %s), want the secret's SHA-256 and its placeholder", got, rep["mcp_stderr"])
	}
	if bytes.Contains(raw, []byte(value)) || bytes.Contains(output.Bytes(), []byte(value)) {
		t.Errorf("the script received the secret's value:\n%s\n%s", raw, output.String())
	}
	if strings.Contains(rep["environ"], tok) {
		t.Error("the task token is in the script's environment")
	}

	// After: the token refused, the task ended, the lease revoked.
	if st := e.decide(tok); st != http.StatusUnauthorized {
		t.Errorf("a decision with the token after the run = %d, want 401", st)
	}
	if st := mcpStatus(t, e.s.PublicURL()+"/mcp", tok); st != http.StatusUnauthorized {
		t.Errorf("the gateway with the token after the run = %d, want 401", st)
	}
	if st := egressStatus(t, e.s.EgressAddr().String(), tok, "http://"+allowedHost+"/after"); st != http.StatusProxyAuthRequired {
		t.Errorf("the egress proxy with the token after the run = %d, want 407", st)
	}
	if n := allowedAccepts.n.Load(); n != 1 {
		t.Errorf("the allowed host accepted %d connections after the run, want the one during it", n)
	}
	// The upstream process that held the secret went with the task's session.
	var pid int
	if i := strings.LastIndex(rep["mcp"], "pid="); i >= 0 {
		fmt.Sscanf(rep["mcp"][i:], "pid=%d", &pid)
	}
	for end := time.Now().Add(5 * time.Second); pid > 0 && processAlive(pid); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Errorf("the upstream process %d that held the secret still runs after the task ended", pid)
			break
		}
	}
	if got := e.task(t, taskID); got["status"] != "ended" || got["status_reason"] != "mandate run: the command exited with status 0" {
		t.Errorf("task = %v %v, want ended with the exit status", got["status"], got["status_reason"])
	}
	var leases struct {
		Leases []secrets.Lease `json:"leases"`
	}
	if err := json.Unmarshal(admin("GET", "/admin/v1/leases?task="+url.QueryEscape(taskID), "", 200), &leases); err != nil {
		t.Fatal(err)
	}
	if len(leases.Leases) != 1 || leases.Leases[0].Status != secrets.LeaseRevoked || leases.Leases[0].Secret != "db_password" {
		t.Errorf("the task's leases = %+v, want db_password's, revoked", leases.Leases)
	}

	// The ledger holds every step, in order (outcomes are recorded after
	// the answer: wait for them), and an export of it verifies offline
	// against a checkpoint signed after the run.
	var steps map[string]int64
	var missing []string
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		steps, missing = runSteps(t, admin("GET", "/admin/v1/audit/export", "", 200), taskID, "file:"+work+"/report.md", allowedHost, deniedHost)
		if len(missing) == 0 || time.Now().After(end) {
			break
		}
	}
	for _, m := range missing {
		t.Errorf("the ledger lacks %s", m)
	}
	for _, o := range [][2]string{
		{"hook allow", "hook outcome"}, {"egress allow", "egress outcome"},
		{"secret.use allow", "lease issued"}, {"lease issued", "tool allow"}, {"tool allow", "tool outcome"},
		{"tool outcome", "lease revoked"}, {"hook outcome", "task ended"}, {"egress deny", "task ended"}, {"tool outcome", "task ended"},
	} {
		if steps[o[0]] != 0 && steps[o[1]] != 0 && steps[o[0]] >= steps[o[1]] {
			t.Errorf("the ledger has %s (seq %d) after %s (seq %d)", o[0], steps[o[0]], o[1], steps[o[1]])
		}
	}
	var cp struct{ Note, Key string }
	if err := json.Unmarshal(admin("POST", "/admin/v1/audit/checkpoint", "", 200), &cp); err != nil {
		t.Fatal(err)
	}
	ledger := admin("GET", "/admin/v1/audit/export", "", 200)
	if vr, err := audit.VerifyExport(bytes.NewReader(ledger), [][]byte{[]byte(cp.Note)}, cp.Key); err != nil || !vr.OK() {
		t.Errorf("VerifyExport(the ledger after the run) = %+v, %v", vr, err)
	}
	if bytes.Contains(ledger, []byte(value)) {
		t.Error("the ledger holds the secret's value")
	}
}

// runSteps reads an exported ledger and returns the sequence number of
// each step of the run — all events of the task: the hook's decision on
// the file write and its outcome, the egress proxy's allow and deny and
// the allowed request's outcome, the secret.use decision and the lease's
// issue, the tool call's decision and outcome, the lease's revocation,
// the task's end — and the steps it lacks.
func runSteps(tb testing.TB, ledger []byte, taskID, file, allowedHost, deniedHost string) (map[string]int64, []string) {
	tb.Helper()
	var evs []audit.Event
	sc := bufio.NewScanner(bytes.NewReader(ledger))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev audit.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			tb.Fatalf("ledger line %q: %v", sc.Bytes(), err)
		}
		if ev.Task == taskID {
			evs = append(evs, ev)
		}
	}
	decided := func(point, action, res, decision string) func(audit.Event) bool {
		return func(ev audit.Event) bool {
			return ev.Type == audit.TypeActionDecided && ev.Point == point && ev.Action == action && ev.Resource == res && ev.Decision == decision
		}
	}
	completed := func(point, action, res string) func(audit.Event) bool {
		return func(ev audit.Event) bool {
			return ev.Type == audit.TypeActionCompleted && ev.Point == point && ev.Action == action && ev.Resource == res && ev.Outcome != nil && ev.Outcome.Status == "ok"
		}
	}
	want := []struct {
		name string
		is   func(audit.Event) bool
	}{
		// The hook decides through the AuthZEN API (docs/coding-agents.md):
		// the decision is the API's, the outcome the hook's, one request.
		{"hook allow", func(ev audit.Event) bool {
			return decided("authzen", "file.write", file, "allow")(ev) && ev.RequestID == hookToolUseID
		}},
		{"hook outcome", func(ev audit.Event) bool {
			return completed("hook", "file.write", file)(ev) && ev.RequestID == hookToolUseID
		}},
		{"egress allow", decided("egress", "http.request", "host:"+allowedHost, "allow")},
		{"egress deny", decided("egress", "http.request", "host:"+deniedHost, "deny")},
		{"egress outcome", completed("egress", "http.request", "host:"+allowedHost)},
		{"secret.use allow", decided("secrets", "secret.use", "secret:db_password", "allow")},
		{"lease issued", func(ev audit.Event) bool {
			return ev.Type == secrets.TypeLeaseIssued && ev.Resource == "secret:db_password"
		}},
		{"tool allow", decided("mcp", "tool.call", "tool:db/getenv", "allow")},
		// The gateway's outcome names the tool as the decision does.
		{"tool outcome", func(ev audit.Event) bool {
			return ev.Type == audit.TypeMCPResult && ev.Action == "tool.call" && ev.Resource == "tool:db/getenv" && ev.Details["outcome"] == "ok"
		}},
		{"lease revoked", func(ev audit.Event) bool {
			return ev.Type == secrets.TypeLeaseRevoked && ev.Resource == "secret:db_password"
		}},
		{"task ended", func(ev audit.Event) bool { return ev.Type == audit.TypeTaskEnded }},
	}
	seqs := map[string]int64{}
	var missing []string
	for _, w := range want {
		for _, ev := range evs {
			if w.is(ev) {
				seqs[w.name] = ev.Seq
				break
			}
		}
		if seqs[w.name] == 0 {
			missing = append(missing, w.name)
		}
	}
	if len(missing) > 0 {
		var b strings.Builder
		for _, ev := range evs {
			fmt.Fprintf(&b, "\n  %d %s point=%s %s %s %s request=%s %v", ev.Seq, ev.Type, ev.Point, ev.Action, ev.Resource, ev.Decision, ev.RequestID, ev.Details)
		}
		missing = append(missing, "(the task's events:"+b.String()+")")
	}
	return seqs, missing
}

// egressStatus is the egress proxy's status for a GET of target with
// tok as the proxy password.
func egressStatus(tb testing.TB, proxyAddr, tok, target string) int {
	tb.Helper()
	proxy := &url.URL{Scheme: "http", Host: proxyAddr, User: url.UserPassword(ProxyUser, tok)}
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxy)}}
	resp, err := hc.Get(target)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// processAlive reports whether process pid still runs (where a process
// cannot be signalled with 0, as on Windows, it reports false).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

// mcpStatus is the gateway's status for an initialize with tok.
func mcpStatus(tb testing.TB, endpoint, tok string) int {
	tb.Helper()
	body := `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"after","version":"1"}}}`
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodPost, endpoint, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
