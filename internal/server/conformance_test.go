package server

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/policy"
)

// conformanceClassification is the example classification file shipped
// for the conformance suite's server, loaded from docs/examples as a user
// would point policy.classification_file at it (not a copy).
var conformanceClassification = filepath.Join("..", "..", "docs", "examples", "classification-conformance.yaml")

// TestConformance is the acceptance test of the MCP gateway's
// transparency, as mandate serve runs it: the official MCP conformance
// suite (@modelcontextprotocol/conformance) against the Go SDK's
// conformance server (everything-server) directly, and through a real
// server (New, Run) whose gateway fronts it as upstream "everything", with
// the shipped default policies, the example classification file, the
// SQLite store and the durable ledger; once per protocol revision: the
// 2025-11-25 suite against a stateful server (sessions), the 2026-07-28
// one against a stateless server (sessionless requests, input_required
// results, subscriptions/listen). The suite's client is an agent
// registered over the admin socket, holding a task token from an OAuth
// token exchange. Every scenario the upstream passes directly must pass
// through the gateway with the same number of checks; every tool call is
// decided by the pipeline (a write, by the classification file) and is in
// the ledger with its outcome.
func TestConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("conformance suite in -short mode")
	}
	dir := mcpproxytest.NPMDeps(t)
	for _, tc := range []struct {
		suite     mcpproxytest.Suite
		stateless bool
		min       int // checks that pass directly, at least (SDK v1.8.0)
	}{
		{mcpproxytest.Suite20251125, false, 40},
		{mcpproxytest.Suite20260728, true, 150},
	} {
		t.Run(tc.suite.Name, func(t *testing.T) {
			conformance(t, dir, tc.suite, tc.stateless, tc.min)
		})
	}
}

func conformance(t *testing.T, dir string, suite mcpproxytest.Suite, stateless bool, minChecks int) {
	upURL := mcpproxytest.StartEverything(t, stateless)
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "everything", URL: upURL}}
	cfg.Policy.ClassificationFile = conformanceClassification
	s, _ := startServer(t, cfg)
	sock := socketClient(s.SocketPath())

	ctx := t.Context()
	ag, err := harness.RegisterAgent(ctx, harness.AdminClient(s.SocketPath()), harness.Registration{
		Name: "conformance", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: string(identity.TierAutonomous),
		Entitle: []string{"tool.call:everything/*", "resource.read:test://**", "prompt.get:everything/*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	tokenURL, err := harness.TokenEndpoint(ctx, hc, s.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	at, err := ag.Token(ctx, hc, tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := harness.StartTask(ctx, hc, tokenURL, at, harness.Task{
		Scope:   "tool.call:everything/* resource.read:test://** prompt.get:everything/*",
		Purpose: "MCP conformance", OnBehalfOf: "alice@example.com",
	})
	if err != nil {
		t.Fatal(err)
	}
	// The suite's client cannot be given a token: put the gateway behind
	// a reverse proxy that adds it, as a configured client would send it.
	gw, _ := url.Parse(s.PublicURL())
	front := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(gw)
			r.Out.Host = r.In.Host // the suite's Host (it tests DNS rebinding protection)
			r.Out.Header.Set("Authorization", "Bearer "+tok)
		},
		FlushInterval: -1, // event streams as they come
	})
	defer front.Close()

	direct := mcpproxytest.RunConformance(t, dir, suite, upURL)
	via := mcpproxytest.RunConformance(t, dir, suite, front.URL+"/mcp/everything")
	total, passed, scenarios := 0, 0, 0
	for name, d := range direct {
		if d.Failed > 0 {
			t.Logf("scenario %s fails directly (%d failed); not required of the gateway", name, d.Failed)
			continue
		}
		total += d.Passed
		scenarios++
		g, ok := via[name]
		if !ok {
			t.Errorf("scenario %s: not run against the gateway", name)
			continue
		}
		passed += g.Passed
		if g.Failed > 0 || g.Passed != d.Passed {
			t.Errorf("scenario %s through the gateway: %d passed, %d failed; directly: %d passed", name, g.Passed, g.Failed, d.Passed)
		}
	}
	t.Logf("conformance: %d scenarios (%d checks) pass directly; %d checks of them pass through the gateway (%d scenarios run)", scenarios, total, passed, len(via))
	if total < minChecks {
		t.Errorf("direct run passed %d checks, want at least %d (SDK v1.8.0)", total, minChecks)
	}

	// The ledger: every tool call decided as a write (the example file),
	// none held for approval, and the outcomes recorded.
	events := func(query string) []map[string]any {
		t.Helper()
		code, out := sockDo(t, sock, "GET", "/admin/v1/audit/events?limit=1000&"+query, "", "")
		if code != 200 {
			t.Fatalf("audit events %s: %d %s", query, code, out)
		}
		var evs struct {
			Events []map[string]any `json:"events"`
		}
		if err := json.Unmarshal([]byte(out), &evs); err != nil {
			t.Fatal(err)
		}
		return evs.Events
	}
	calls, allowed := 0, 0
	for _, ev := range events("type=action.decided&agent=" + url.QueryEscape(ag.ID)) {
		if ev["decision"] == "allow" {
			allowed++
		}
		if ev["action"] != "tool.call" {
			continue
		}
		calls++
		details, _ := ev["details"].(map[string]any)
		if ev["decision"] != "allow" || details["risk"] != "write" {
			t.Errorf("tool call decided %v with risk %v: %v", ev["decision"], details["risk"], ev)
		}
	}
	// The pipeline records the decisions; the gateway, their outcomes.
	results := len(events("type=mcp.result"))
	t.Logf("ledger: %d decisions allowed (%d tool calls), %d outcomes", allowed, calls, results)
	if calls == 0 || results == 0 || results > allowed {
		t.Errorf("%d tool call decisions, %d allowed decisions, %d mcp.result events", calls, allowed, results)
	}
	if code, out := sockDo(t, sock, "POST", "/admin/v1/audit/verify", "", ""); code != 200 || strings.Contains(out, "first_bad_seq") {
		t.Errorf("audit verify: %d %s", code, out)
	}
}

// The example classification file loads as policy.classification_file
// loads it and makes exactly the conformance server's unannotated tools
// writes: without it they are destructive (MCP's defaults), the same tool
// name on another upstream stays destructive, and a tool's annotations
// cannot lower it further.
func TestConformanceClassificationExample(t *testing.T) {
	t.Parallel()
	c, err := loadClassification(conformanceClassification)
	if err != nil {
		t.Fatal(err)
	}
	none, err := loadClassification("")
	if err != nil {
		t.Fatal(err)
	}
	readOnly := true
	for _, tc := range []struct {
		cls      *policy.Classifier
		action   string
		resource string
		ann      *policy.ToolAnnotations
		want     string
	}{
		{none, "tool.call", "everything/test_simple_text", nil, "destructive"},
		{c, "tool.call", "everything/test_simple_text", nil, "write"},
		{c, "tool.call", "everything/test_elicitation", nil, "write"},
		{c, "tool.call", "everything/test_simple_text", &policy.ToolAnnotations{ReadOnlyHint: &readOnly}, "write"},
		{c, "tool.call", "other/test_simple_text", nil, "destructive"},
		{c, "tool.call", "everything/a/b", nil, "destructive"},
		{c, "resource.read", "test://static-text", nil, "read"},
		{c, "prompt.get", "everything/test_simple_prompt", nil, "read"},
	} {
		if got := tc.cls.Classify(tc.action, tc.resource, tc.ann).Risk; got != tc.want {
			t.Errorf("%s:%s (annotations %v) = %s, want %s", tc.action, tc.resource, tc.ann, got, tc.want)
		}
	}
}
