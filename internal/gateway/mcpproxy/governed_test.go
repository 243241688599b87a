package mcpproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/token"
)

// initialize POSTs an initialize request to path with the given headers
// and returns the response (body read).
func initialize(t *testing.T, e *env, path string, h http.Header) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	for k, vs := range h {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// authRefusals are the pipeline's recorded refusals of credentials.
func authRefusals(e *env) []audit.Event {
	var out []audit.Event
	for _, ev := range e.rec.events(audit.TypeActionDecided) {
		if ev.Decision == audit.DecisionDeny && strings.Contains(ev.Reason, access.ErrUnauthenticated.Error()) {
			out = append(out, ev)
		}
	}
	return out
}

// TestAuthFailureIsRecorded: a credential the gateway refuses is a
// decision of the pipeline, in the ledger with its reason; the 401 tells
// the client nothing of that reason. A request with no credential at all
// (how a client discovers the authorization server) is not recorded.
func TestAuthFailureIsRecorded(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	ag, err := e.auth.Register(t.Context(), "expired", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := e.auth.TaskToken(t.Context(), ag, "tool.call:go/*", "revoked soon")
	if err != nil {
		t.Fatal(err)
	}
	// A token that was good and is revoked: the verifier's reason names it.
	if err := e.auth.Tokens.Revoke(t.Context(), token.Caller{Admin: true}, tok); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, authz, reason string
	}{
		{"revoked", "Bearer " + tok, "revoked"},
		{"garbage", "Bearer not-a-token", "invalid_token"},
		{"basic", "Basic dXNlcjpwYXNz", "unsupported authorization scheme"},
		{"dpop without proof", "DPoP abc", "DPoP header"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := len(authRefusals(e))
			resp, body := initialize(t, e, "/mcp/go", http.Header{"Authorization": {tc.authz}})
			if resp.StatusCode != 401 {
				t.Fatalf("status %d, want 401", resp.StatusCode)
			}
			if strings.TrimSpace(body) != "invalid_token: the access token was not accepted" {
				t.Errorf("401 body %q: want the fixed text, not the cause", body)
			}
			evs := authRefusals(e)
			if len(evs) != before+1 {
				t.Fatalf("%d refusals recorded, want %d", len(evs), before+1)
			}
			ev := evs[len(evs)-1]
			if ev.Point != "mcp" || ev.Resource != e.srv.URL+"/mcp/go" || !strings.Contains(ev.Reason, tc.reason) {
				t.Errorf("refusal event = %+v, want point mcp, the endpoint and a reason with %q", ev, tc.reason)
			}
			if strings.Contains(body, ev.Reason) {
				t.Errorf("401 body %q tells the cause %q", body, ev.Reason)
			}
		})
	}
	before := len(e.rec.events(""))
	resp, _ := initialize(t, e, "/mcp/go", nil)
	if resp.StatusCode != 401 || len(e.rec.events("")) != before {
		t.Errorf("no credential: status %d, %d new events; want 401 and none", resp.StatusCode, len(e.rec.events(""))-before)
	}
	if got := resp.Header.Values("WWW-Authenticate"); len(got) != 2 || strings.Contains(got[0]+got[1], "error=") {
		t.Errorf("no credential: WWW-Authenticate %q; want both schemes without an error (RFC 6750 §3.1)", got)
	}
}

// TestBearerWithDPoPBoundToken: RFC 9449 §7.1: a DPoP-bound token must
// come with the DPoP scheme. Sent as Bearer, even with a valid proof
// beside it, it is refused with a DPoP invalid_token challenge, and the
// refusal is in the ledger.
func TestBearerWithDPoPBoundToken(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	ag, err := e.auth.Register(t.Context(), "bound", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := e.auth.TaskTokenDPoP(t.Context(), ag, "tool.call:go/echo", "dpop", key)
	if err != nil {
		t.Fatal(err)
	}
	proof, err := mcpproxytest.DPoPProof(key, "POST", e.srv.URL+"/mcp/go", tok)
	if err != nil {
		t.Fatal(err)
	}
	before := len(authRefusals(e))
	resp, body := initialize(t, e, "/mcp/go", http.Header{"Authorization": {"Bearer " + tok}, "Dpop": {proof}})
	if resp.StatusCode != 401 {
		t.Fatalf("Bearer + DPoP-bound token + proof: status %d %s, want 401", resp.StatusCode, body)
	}
	ch := resp.Header.Values("WWW-Authenticate")
	if !slices.ContainsFunc(ch, func(c string) bool {
		return strings.HasPrefix(c, "DPoP ") && strings.Contains(c, `error="invalid_token"`)
	}) {
		t.Errorf("WWW-Authenticate %q, want a DPoP challenge with error=\"invalid_token\"", ch)
	}
	evs := authRefusals(e)
	if len(evs) != before+1 || !strings.Contains(evs[len(evs)-1].Reason, "Bearer scheme") {
		t.Fatalf("refusals %+v, want one naming the Bearer scheme", evs[before:])
	}
	// The same token with the DPoP scheme and a fresh proof is accepted.
	proof, _ = mcpproxytest.DPoPProof(key, "POST", e.srv.URL+"/mcp/go", tok)
	if resp, body := initialize(t, e, "/mcp/go", http.Header{"Authorization": {"DPoP " + tok}, "Dpop": {proof}}); resp.StatusCode != 200 {
		t.Fatalf("DPoP scheme: status %d %s, want 200", resp.StatusCode, body)
	}
}

// TestOneRisk: the gateway's events of a call take their risk from the
// pipeline's decision (policy's one classifier): a tool declaring
// destructiveHint false (and openWorldHint unset) is external, on the
// action.decided event and on the mcp.result event alike.
func TestOneRisk(t *testing.T) {
	up := newGoUpstream(t)
	f := false
	mcp.AddTool(up.server, &mcp.Tool{Name: "post", Annotations: &mcp.ToolAnnotations{DestructiveHint: &f}},
		func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
		})
	e := newGovernedEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, policy.ClassifierConfig{}, access.Limits{}, nil)
	cs := connect(t, e, "/mcp/go", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call"))
	if !slices.Contains(toolNames(t, cs), "post") {
		t.Fatal("post not listed for an autonomous agent")
	}
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "post", Arguments: map[string]any{"text": "x"}})
	if err != nil || res.IsError {
		t.Fatalf("post = %v, %v", res, err)
	}
	var decided, result []string
	for _, ev := range e.rec.events(audit.TypeActionDecided) {
		if ev.Resource == "tool:go/post" {
			decided = append(decided, ev.Details["risk"])
		}
	}
	for _, ev := range e.rec.waitEvents(audit.TypeMCPResult, 1) {
		if ev.Resource == "tool:go/post" {
			result = append(result, ev.Details["risk"])
		}
	}
	if len(decided) != 1 || len(result) != 1 || decided[0] != policy.RiskExternal || result[0] != decided[0] {
		t.Fatalf("risk on action.decided %q, on mcp.result %q; want one %q each", decided, result, policy.RiskExternal)
	}
}
