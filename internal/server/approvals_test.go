package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
)

// approvalEnv is a server with an MCP upstream whose deploy tool (no
// annotations: destructive) an autonomous agent's task may call, the
// agent's owner alice as the admin socket's person.
type approvalEnv struct {
	s       *Server
	admin   *http.Client
	base    string
	deploys atomic.Int64 // calls the upstream ran
	token   func(onBehalfOf string) string
	// tokenAt is token for an admin-started task, for resource ("" is
	// the issuer: the AuthZEN API).
	tokenAt func(onBehalfOf, resource string) string
}

func newApprovalEnv(t *testing.T, tune func(*Config)) *approvalEnv {
	t.Helper()
	e := &approvalEnv{}
	up := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "deploy", Description: "deploys"}, func(_ context.Context, _ *mcp.CallToolRequest, in struct {
		Env string `json:"env"`
	}) (*mcp.CallToolResult, any, error) {
		e.deploys.Add(1)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deployed " + in.Env}}}, nil, nil
	})
	us := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	t.Cleanup(func() {
		us.CloseClientConnections()
		us.Close()
	})
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "up", URL: us.URL}}
	cfg.Approvals.LocalPerson = "alice@example.org"
	cfg.Approvals.WaitTimeout = 20 * time.Second
	if tune != nil {
		tune(&cfg)
	}
	e.s, _ = startServer(t, cfg)
	e.base = e.s.PublicURL()
	e.admin = harness.AdminClient(e.s.SocketPath())
	ctx := t.Context()
	ag, err := harness.RegisterAgent(ctx, e.admin, harness.Registration{
		Name: "deployer", Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: "autonomous",
		Entitle: []string{"tool.call:up/*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenURL, err := harness.TokenEndpoint(ctx, http.DefaultClient, e.base)
	if err != nil {
		t.Fatal(err)
	}
	e.token = func(onBehalfOf string) string { return e.tokenAt(onBehalfOf, e.base+"/mcp/up") }
	e.tokenAt = func(onBehalfOf, resource string) string {
		agentToken, err := ag.Token(ctx, http.DefaultClient, tokenURL)
		if err != nil {
			t.Fatal(err)
		}
		if onBehalfOf == "alice@example.org" {
			// Started by the agent itself: on behalf of its owner.
			tok, err := harness.StartTask(ctx, http.DefaultClient, tokenURL, agentToken, harness.Task{
				Scope: "tool.call:up/*", Purpose: "ship it", OnBehalfOf: onBehalfOf, Resource: e.base + "/mcp/up",
			})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}
		// Started by an admin for another person; the agent exchanges
		// its token for the task's.
		var started struct{ ID string }
		if code, body := e.api(t, "POST", "/admin/v1/tasks", map[string]any{
			"agent": "deployer", "on_behalf_of": onBehalfOf, "purpose": "ship it", "scope": []string{"tool.call:up/*"},
		}, &started); code != 201 {
			t.Fatalf("start task = %d %s", code, body)
		}
		form := map[string][]string{
			"grant_type": {"urn:ietf:params:oauth:grant-type:token-exchange"}, "subject_token": {agentToken},
			"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"}, "task_id": {started.ID},
		}
		if resource != "" {
			form["resource"] = []string{resource}
		}
		resp, err := http.PostForm(tokenURL, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var tr struct {
			AccessToken string `json:"access_token"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil || tr.AccessToken == "" {
			t.Fatalf("task token for %s: %d %v", started.ID, resp.StatusCode, err)
		}
		return tr.AccessToken
	}
	return e
}

func (e *approvalEnv) session(t *testing.T, tok string) *mcp.ClientSession {
	t.Helper()
	hc := &http.Client{Transport: bearer{tok}}
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: e.base + "/mcp/up", HTTPClient: hc, MaxRetries: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cs.Close() })
	return cs
}

type bearer struct{ tok string }

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

// call calls deploy(env) in the background.
func call(cs *mcp.ClientSession, env string) <-chan error {
	done := make(chan error, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"env": env}})
		if err == nil && res.IsError {
			err = fmt.Errorf("tool error: %v", res.Content)
		}
		done <- err
	}()
	return done
}

// pending waits for the pending request of deploy(env) and returns it.
func (e *approvalEnv) pending(t *testing.T, env string) *approval.Request {
	t.Helper()
	digest, err := e.s.approvals.svc.Digest(json.RawMessage(`{"env":"` + env + `"}`))
	if err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var resp struct{ Approvals []*approval.Request }
		e.api(t, "GET", "/admin/v1/approvals?status=pending", nil, &resp)
		for _, r := range resp.Approvals {
			if r.ArgsDigest == digest {
				return r
			}
		}
	}
	t.Fatalf("no pending approval request for deploy(env=%s)", env)
	return nil
}

// api calls the admin API over the socket, decoding a 2xx answer into
// out, and returns the status and body.
func (e *approvalEnv) api(t *testing.T, method, path string, body any, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, _ := http.NewRequest(method, "http://mandate"+path, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.admin.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode/100 == 2 {
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, b)
		}
	}
	return resp.StatusCode, string(b)
}

func wait(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		t.Fatal("the held call did not return")
		return nil
	}
}

// TestHeldCallEndToEnd: an autonomous agent's destructive call through
// the real gateway waits; the owner approves it and it proceeds, once;
// the same tool with other arguments waits again and is denied with the
// reason; one nobody decides expires; the ledger holds every request,
// decision and decider.
func TestHeldCallEndToEnd(t *testing.T) {
	e := newApprovalEnv(t, func(c *Config) { c.Approvals.ExpireAfter = 4 * time.Second })
	cs := e.session(t, e.token("bob@example.org"))

	staging := call(cs, "staging")
	r := e.pending(t, "staging")
	if e.deploys.Load() != 0 {
		t.Fatal("the upstream ran the call before it was approved")
	}
	var view struct {
		Arguments json.RawMessage `json:"arguments"`
		Approvals []string        `json:"approvals"`
	}
	if code, body := e.api(t, "GET", "/admin/v1/approvals/"+string(r.ID), nil, &view); code != 200 || string(view.Arguments) != `{"env":"staging"}` {
		t.Fatalf("show = %d %s, want the full arguments", code, body)
	}
	if code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(r.ID)+"/approve", map[string]string{"reason": "staging is fine", "digest": r.ArgsDigest}, nil); code != 200 {
		t.Fatalf("approve = %d %s", code, body)
	}
	if err := wait(t, staging); err != nil {
		t.Fatalf("approved call: %v", err)
	}
	if e.deploys.Load() != 1 {
		t.Fatalf("upstream ran %d calls, want 1", e.deploys.Load())
	}
	// Approving again: already decided.
	if code, _ := e.api(t, "POST", "/admin/v1/approvals/"+string(r.ID)+"/approve", map[string]string{}, nil); code != http.StatusConflict {
		t.Errorf("approve a decided request = %d, want 409", code)
	}

	// Other arguments: held again, and denied with the reason.
	prod := call(cs, "prod")
	p := e.pending(t, "prod")
	if p.ID == r.ID {
		t.Fatal("deploy(env=prod) matched the approval of deploy(env=staging)")
	}
	if code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(p.ID)+"/approve", map[string]string{"digest": r.ArgsDigest}, nil); code != http.StatusConflict {
		t.Errorf("approve with another call's digest = %d %s, want 409", code, body)
	}
	if code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(p.ID)+"/deny", map[string]string{"reason": "not during the freeze"}, nil); code != 200 {
		t.Fatalf("deny = %d %s", code, body)
	}
	if err := wait(t, prod); err == nil || !strings.Contains(err.Error(), "denied by alice@example.org: not during the freeze") {
		t.Fatalf("denied call: %v, want the denial and its reason", err)
	}

	// The same staging call again: the approval was once.
	again := call(cs, "staging")
	a2 := e.pending(t, "staging")
	if a2.ID == r.ID {
		t.Fatal("a once approval was found for a second call")
	}
	// Nobody decides: it expires, and the call fails closed.
	if err := wait(t, again); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("expired call: %v, want an expiry", err)
	}
	if code, _ := e.api(t, "POST", "/admin/v1/approvals/"+string(a2.ID)+"/approve", map[string]string{}, nil); code != http.StatusConflict {
		t.Errorf("approve an expired request = %d, want 409", code)
	}
	if code, _ := e.api(t, "POST", "/admin/v1/approvals/"+string(approval.NewID())+"/approve", map[string]string{}, nil); code != http.StatusNotFound {
		t.Errorf("approve an unknown request = %d, want 404", code)
	}
	if e.deploys.Load() != 1 {
		t.Errorf("upstream ran %d calls, want 1", e.deploys.Load())
	}

	evs, err := e.s.backend.ListEvents(t.Context(), audit.Query{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	count := map[audit.Type]int{}
	var decidedBy []string
	for _, ev := range evs {
		count[ev.Type]++
		switch {
		case ev.Type == approval.TypeGranted || ev.Type == approval.TypeDenied:
			decidedBy = append(decidedBy, string(ev.Type)+" by "+ev.Actor+" of "+ev.ApprovalID)
		case ev.Type == audit.TypeActionDecided && ev.Action == "approval.decide" && ev.Decision == "allow" && ev.Actor != "alice@example.org":
			t.Errorf("approval.decide allowed for %s", ev.Actor)
		}
	}
	if count[approval.TypeRequested] != 3 || count[approval.TypeGranted] != 1 || count[approval.TypeDenied] != 1 ||
		count[approval.TypeExpired] != 1 || count[approval.TypeUsed] != 1 || count[approval.TypeRefused] < 3 {
		t.Errorf("ledger: %v", count)
	}
	want := []string{"approval.granted by alice@example.org of " + string(r.ID), "approval.denied by alice@example.org of " + string(p.ID)}
	if strings.Join(decidedBy, "|") != strings.Join(want, "|") {
		t.Errorf("deciders in the ledger = %q, want %q", decidedBy, want)
	}
}

// TestApprovalRefusals: nobody approves an autonomous agent's step-up for
// a task on their own behalf; an agent's task token is not an admin
// credential; a socket without a configured person decides nothing.
func TestApprovalRefusals(t *testing.T) {
	e := newApprovalEnv(t, nil)
	tok := e.token("alice@example.org") // alice's own task
	cs := e.session(t, tok)
	held := call(cs, "prod")
	r := e.pending(t, "prod")
	code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(r.ID)+"/approve", map[string]string{}, nil)
	if code != http.StatusForbidden || !strings.Contains(body, "separation of duties") {
		t.Errorf("alice approves her own task's step-up = %d %s, want 403 separation of duties", code, body)
	}
	// The agent itself, with its task token, over TCP.
	req, _ := http.NewRequest("POST", e.base+"/admin/v1/approvals/"+string(r.ID)+"/approve", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("the agent's task token approving = %d, want 401", resp.StatusCode)
	}
	// She may still deny it.
	if code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(r.ID)+"/deny", map[string]string{"reason": "no"}, nil); code != 200 {
		t.Errorf("deny = %d %s", code, body)
	}
	if err := wait(t, held); err == nil {
		t.Error("the denied call proceeded")
	}
	if e.deploys.Load() != 0 {
		t.Errorf("upstream ran %d calls, want 0", e.deploys.Load())
	}
}
