package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/server"
)

// TestApprovalCommands: an autonomous agent's destructive MCP call, in a
// task an admin started on bob's behalf, is held; the agent's owner carol
// finds it with 'mandate approval list', reviews the exact
// arguments with 'approval show', approves it with 'approval approve'
// (bound to the digest shown), and the call proceeds; a second call with
// other arguments waits again and 'approval deny' fails it with the reason.
func TestApprovalCommands(t *testing.T) {
	t.Parallel()
	up := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "deploy"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct {
		Env string `json:"env"`
	}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deployed " + in.Env}}}, nil, nil
	})
	us := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	t.Cleanup(us.Close)
	dataDir, base := testServer(t, func(c *server.Config) {
		c.MCP.Upstreams = []server.MCPUpstream{{Name: "up", URL: us.URL}}
		c.Approvals.LocalPerson = "carol@example.com" // the admin socket's person: the owner
		c.Approvals.WaitTimeout = 20 * time.Second
	})
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	b, _ := json.Marshal(jose.JSONWebKey{Key: pub, KeyID: "k1", Algorithm: string(jose.EdDSA), Use: "sig"})
	keyFile := filepath.Join(t.TempDir(), "k1.jwk")
	os.WriteFile(keyFile, b, 0o600)
	mustRun(t, env, "agent", "register", "shipper", "--owner", "carol@example.com", "--escalation", "b@example.com", "--key", keyFile,
		"--tier", "autonomous", "--entitle", "tool.call", "--max-sensitivity", "internal", "--max-task-ttl", "1h")
	started := mustRun(t, env, "task", "start", "--agent", "shipper", "--on-behalf-of", "bob@example.com", "--purpose", "ship", "--scope", "tool.call:up/*", "-o", "json")
	var task struct{ ID string }
	if err := json.Unmarshal([]byte(started), &task); err != nil || task.ID == "" {
		t.Fatalf("task start: %v: %s", err, started)
	}
	tok := exchangeOver(t, base, "spiffe://mandate.local/agent/shipper", priv, "k1", url.Values{"task_id": {task.ID}})
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: base + "/mcp/up", HTTPClient: &http.Client{Transport: bearerRT{tok}}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	call := func(env string) <-chan string {
		done := make(chan string, 1)
		go func() {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"env": env}})
			switch {
			case err != nil:
				done <- "error: " + err.Error()
			case len(res.Content) > 0:
				done <- res.Content[0].(*mcp.TextContent).Text
			default:
				done <- "empty"
			}
		}()
		return done
	}
	pendingID := func() string {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
			if out := mustRun(t, env, "approval", "list"); strings.Contains(out, "apr_") {
				return regexp.MustCompile(`apr_[a-z2-7]{26}`).FindString(out)
			}
		}
		t.Fatal("no pending approval request in 'mandate approval list'")
		return ""
	}

	held := call("staging")
	id := pendingID()
	shown := mustRun(t, env, "approval", "show", id)
	if !strings.Contains(shown, `"env": "staging"`) && !strings.Contains(shown, `"env":"staging"`) {
		t.Fatalf("approval show does not show the arguments:\n%s", shown)
	}
	digest := regexp.MustCompile(`hmac-sha256:[0-9a-f]{64}`).FindString(shown)
	if digest == "" {
		t.Fatalf("approval show names no digest:\n%s", shown)
	}
	if out := mustRun(t, env, "approval", "approve", id, "--digest", digest, "--reason", "staging is fine"); !strings.Contains(out, "approved by carol@example.com") {
		t.Fatalf("approval approve: %s", out)
	}
	if got := <-held; got != "deployed staging" {
		t.Fatalf("the approved call: %q", got)
	}

	held = call("prod")
	id = pendingID()
	mustRun(t, env, "approval", "deny", id, "--reason", "not on a Friday")
	if got := <-held; !strings.Contains(got, "denied") || !strings.Contains(got, "not on a Friday") {
		t.Fatalf("the denied call: %q, want denied with the reason", got)
	}
	for _, typ := range []string{"approval.granted", "approval.denied"} {
		if out := mustRun(t, env, "audit", "query", "--type", typ, "-o", "json"); !strings.Contains(out, "carol@example.com") {
			t.Errorf("the ledger's %s does not name the decider:\n%s", typ, out)
		}
	}
}
