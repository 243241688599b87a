package server

import (
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestSecretInjectedIntoStdioUpstream is issue 16's delivery, end to end
// with the shipped default policies: a static secret reaches a stdio
// upstream's environment, leased to the task of the session that started
// it (secret.use decided and recorded); the client never sees the value
// (every answer and the whole ledger are searched for it); when the task
// ends, its lease is revoked and the process that held the value is gone.
func TestSecretInjectedIntoStdioUpstream(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "db", Command: exe, Env: []string{stdioEnv + "=1"}}}
	// The operator's classification: using this credential reads (the
	// default policies then let a supervised agent's task lease it).
	class := filepath.Join(t.TempDir(), "classification.yaml")
	if err := os.WriteFile(class, []byte("risks:\n  - {match: \"secret.use:db_password\", risk: read}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Policy.ClassificationFile = class
	s, _ := startServer(t, cfg)
	admin := socketClient(s.SocketPath())
	const value = "pg-PASSWORD-4f9c2e7a"
	call := func(method, path, body string, want int) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://mandate"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := admin.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		return string(b)
	}
	call("PUT", "/admin/v1/secrets/db_password", `{"value":"`+value+`","deliver":[{"upstream":"db","env":"DB_PASSWORD"}]}`, 201)

	_, tok := agentTask(t, s, harness.Registration{Name: "reporter", Tier: string(identity.TierSupervised), Entitle: []string{"tool.call:db/*", "secret.use:db_password"}},
		harness.Task{Scope: "tool.call:db/* secret.use:db_password", Purpose: "report"})
	c := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: s.PublicURL() + "/mcp/db", HTTPClient: &http.Client{Timeout: 30 * time.Second, Transport: bearer{tok}}, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "getenv", Arguments: map[string]any{"name": "DB_PASSWORD"}})
	if err != nil {
		t.Fatal(err)
	}
	var out string
	for _, ct := range res.Content {
		if tc, ok := ct.(*mcp.TextContent); ok {
			out += tc.Text
		}
	}
	if !strings.Contains(out, fmt.Sprintf("sha256=%x", sha256.Sum256([]byte(value)))) {
		t.Fatalf("the upstream did not get the secret: %q", out)
	}
	if strings.Contains(out, value) || !strings.Contains(out, "value=[secret:db_password]") {
		t.Fatalf("the client saw %q, want the value replaced by its placeholder", out)
	}
	var pid int
	fmt.Sscanf(out[strings.LastIndex(out, "pid="):], "pid=%d", &pid)

	tasks := call("GET", "/admin/v1/tasks?agent=reporter", "", 200)
	i := strings.Index(tasks, `"id":"`)
	if i < 0 {
		t.Fatalf("no task in %s", tasks)
	}
	id := tasks[i+6:]
	id = id[:strings.IndexByte(id, '"')]
	if leases := call("GET", "/admin/v1/leases?task="+id, "", 200); !strings.Contains(leases, `"status":"active"`) {
		t.Fatalf("leases while the task runs: %s", leases)
	}
	call("POST", "/admin/v1/tasks/"+id+"/end", `{}`, 200)
	if leases := call("GET", "/admin/v1/leases?task="+id, "", 200); strings.Contains(leases, `"status":"active"`) || !strings.Contains(leases, `"status":"revoked"`) {
		t.Fatalf("leases after the task ended: %s", leases)
	}
	// The process that held the value goes with the task's session.
	deadline := time.Now().Add(2 * time.Second)
	for processAlive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the upstream process %d still runs after its task ended", pid)
		}
		time.Sleep(200 * time.Millisecond)
	}
	ledger := call("GET", "/admin/v1/audit/export", "", 200)
	if strings.Contains(ledger, value) {
		t.Fatal("the ledger holds the secret's value")
	}
	for _, want := range []string{`"secret.use"`, `"secret.lease_issued"`, `"secret.lease_revoked"`} {
		if !strings.Contains(ledger, want) {
			t.Errorf("the ledger lacks %s", want)
		}
	}
}

// processAlive reports whether process pid still runs (on Unix; where a
// process cannot be signalled with 0, it reports false).
func processAlive(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}
