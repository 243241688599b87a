package mcpproxy_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestInputRequired: a 2026-07-28 upstream's input_required result goes
// to a 2026-07-28 client as it is; the client's retry, with its
// inputResponses and the requestState, is a call of its own, decided and
// recorded like the first, and the upstream completes it. A 2025-11-25
// client meets the same upstream through its session: the gateway's
// upstream client fulfils the input request by asking the client (an
// elicitation request), and retries.
func TestInputRequired(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "asks", Version: "1"}, nil)
	var attempts atomic.Int64
	mcp.AddTool(s, &mcp.Tool{Name: "deploy", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, deployTool(&attempts))
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: srv.URL}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")

	for _, rev := range []string{"2026-07-28", "2025-11-25"} {
		t.Run(rev, func(t *testing.T) {
			attempts.Store(0)
			before := len(e.rec.events(audit.TypeMCPCall))
			var asked atomic.Int64
			c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, &mcp.ClientOptions{
				ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
					asked.Add(1)
					if r.Params.Message != "Deploy?" {
						t.Errorf("elicitation %q", r.Params.Message)
					}
					return &mcp.ElicitResult{Action: "accept"}, nil
				},
			})
			cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/up", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: rev})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "deploy"})
			if err != nil || text(res) != "accept deploy-1" {
				t.Fatalf("deploy = %v, %v", res, err)
			}
			if asked.Load() != 1 || attempts.Load() != 2 {
				t.Errorf("the client was asked %d times, the upstream called %d times; want 1 and 2", asked.Load(), attempts.Load())
			}
			decided := e.rec.events(audit.TypeMCPCall)[before:]
			want := 1 // the gateway's upstream client retries within the call
			if rev == "2026-07-28" {
				want = 2 // the client retries: each attempt is a call
			}
			if len(decided) != want {
				t.Fatalf("%d mcp.call events, want %d: %+v", len(decided), want, decided)
			}
			for _, ev := range decided {
				if ev.Decision != audit.DecisionAllow || ev.Resource != "tool:up/deploy" {
					t.Errorf("decision %+v", ev)
				}
			}
		})
	}
}

// TestParamHeaders: on 2026-07-28, an argument a tool mirrors into an
// Mcp-Param-* header must agree with it (SEP-2243); a request whose
// header says otherwise is refused before it is decided, HTTP 400 with
// CodeHeaderMismatch.
func TestParamHeaders(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "regions", Version: "1"}, nil)
	var calls atomic.Int64
	s.AddTool(&mcp.Tool{Name: "deploy", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true},
		InputSchema: json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"},"opts":{"type":"object","properties":{"n":{"type":"integer","x-mcp-header":"N"}}}}}`)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			calls.Add(1)
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "deployed"}}}, nil
		})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: srv.URL}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")

	post := func(args string, headers map[string]string) (int, string) {
		t.Helper()
		body := `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"deploy","arguments":` + args + `,"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/mcp/up", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
		req.Header.Set("Mcp-Method", "tools/call")
		req.Header.Set("Mcp-Name", "deploy")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := bearerClient(tok).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	for _, tc := range []struct {
		name    string
		args    string
		headers map[string]string
		ok      bool
	}{
		{"agrees", `{"region":"eu","opts":{"n":3}}`, map[string]string{"Mcp-Param-Region": "eu", "Mcp-Param-N": "3"}, true},
		{"base64", `{"region":" eu"}`, map[string]string{"Mcp-Param-Region": "=?base64?IGV1?="}, true},
		{"other value", `{"region":"eu"}`, map[string]string{"Mcp-Param-Region": "us"}, false},
		{"missing header", `{"region":"eu"}`, nil, false},
		{"header for an absent argument", `{}`, map[string]string{"Mcp-Param-Region": "eu"}, false},
		{"nested other value", `{"opts":{"n":3}}`, map[string]string{"Mcp-Param-N": "4"}, false},
		{"folded member read as the SDK reads it", `{"region":"eu","Region":"us"}`, map[string]string{"Mcp-Param-Region": "eu"}, true},
		{"bad base64", `{"region":"eu"}`, map[string]string{"Mcp-Param-Region": "=?base64?***?="}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := calls.Load()
			decided := len(e.rec.events(audit.TypeMCPCall))
			code, body := post(tc.args, tc.headers)
			if tc.ok {
				if code != http.StatusOK || !strings.Contains(body, "deployed") {
					t.Fatalf("= %d %s, want the call relayed", code, body)
				}
				return
			}
			if code != http.StatusBadRequest || !strings.Contains(body, `"code":-32020`) || !strings.Contains(body, `"id":7`) {
				t.Fatalf("= %d %s, want 400 with CodeHeaderMismatch", code, body)
			}
			if calls.Load() != before || len(e.rec.events(audit.TypeMCPCall)) != decided {
				t.Error("a mismatched call was decided or reached the upstream")
			}
		})
	}
}

// TestSessionlessRawRelay: a sessionless client's calls to an HTTP
// upstream of the session revision travel on the raw relay (under the
// gateway's relay ids, on the task's upstream session), and two requests
// of the task may use the same id at once, each on its own POST.
func TestSessionlessRawRelay(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url, Timeout: 5 * time.Second}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/up", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	ctx := t.Context()

	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
	if err != nil || text(res) != "hi" {
		t.Fatalf("echo = %v, %v", res, err)
	}
	if ids := up.callIDs(); len(ids) == 0 || !strings.HasPrefix(ids[len(ids)-1], `"mandate-`) {
		t.Fatalf("upstream saw tools/call ids %v; want the gateway's relay ids", ids)
	}
	if last := up.lastCall(); strings.Contains(last, "io.modelcontextprotocol/protocolVersion") {
		t.Errorf("the 2025-11-25 upstream got the sessionless _meta: %s", last)
	}

	var wg sync.WaitGroup
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			code, body := postSessionless(t, e, tok, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"slow","_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, "slow")
			if code != http.StatusOK || !strings.Contains(body, "done") {
				t.Errorf("call %d with id 1: %d %s", i, code, body)
			}
		}()
	}
	wg.Wait()
}

// postSessionless POSTs one 2026-07-28 request for tool to /mcp/up.
func postSessionless(t *testing.T, e *env, tok, body, tool string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/mcp/up", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", tool)
	resp, err := bearerClient(tok).Do(req)
	if err != nil {
		t.Error(err)
		return 0, ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deployTool asks for a confirmation (input_required, requestState
// "deploy-1") and, given one, answers "<action> <state>"; it counts its
// calls in attempts, if set.
func deployTool(attempts *atomic.Int64) mcp.ToolHandlerFor[any, any] {
	return func(_ context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		if attempts != nil {
			attempts.Add(1)
		}
		resp, ok := req.Params.InputResponses["confirm"].(*mcp.ElicitResult)
		if !ok {
			return &mcp.CallToolResult{
				InputRequests: mcp.InputRequestMap{"confirm": &mcp.ElicitParams{Message: "Deploy?", RequestedSchema: json.RawMessage(`{"type":"object","properties":{}}`)}},
				RequestState:  "deploy-1",
			}, nil, nil
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: resp.Action + " " + req.Params.RequestState}}}, nil, nil
	}
}

// TestRequestStateBinding: the requestState a sessionless client gets
// with an input_required result is bound to its task and call: its own
// retry goes through (the upstream gets its own state back), while the
// same state replayed by another task, for another tool, or a state the
// client made up is refused before it is decided, and recorded; on HTTP
// (the raw relay) and stdio (the SDK's client) upstreams alike.
func TestRequestStateBinding(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "asks", Version: "1"}, nil)
	var attempts atomic.Int64
	mcp.AddTool(s, &mcp.Tool{Name: "deploy", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, deployTool(&attempts))
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: true}))
	t.Cleanup(srv.Close)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: srv.URL}, stdioUpstream(t, "local")}, nil)
	ctx := t.Context()
	ag, err := e.auth.Register(ctx, "agent", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/mcp/up", "/mcp/local"} {
		t.Run(path, func(t *testing.T) {
			session := func() *mcp.ClientSession {
				tok, err := e.auth.TaskToken(ctx, ag, "tool.call:up/* tool.call:local/*", "test")
				if err != nil {
					t.Fatal(err)
				}
				c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, &mcp.ClientOptions{MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true}})
				cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.srv.URL + path, HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cs.Close() })
				return cs
			}
			a, b := session(), session()
			first, err := a.CallTool(ctx, &mcp.CallToolParams{Name: "deploy"})
			if err != nil || len(first.InputRequests) != 1 {
				t.Fatalf("deploy = %+v, %v; want input_required", first, err)
			}
			state := first.RequestState
			if !strings.HasPrefix(state, "mandate.") || !strings.HasSuffix(state, ".deploy-1") {
				t.Fatalf("requestState %q, want the upstream's, sealed by the gateway", state)
			}
			answer := mcp.InputResponseMap{"confirm": &mcp.ElicitResult{Action: "accept"}}
			for _, tc := range []struct {
				name string
				cs   *mcp.ClientSession
				tool string
				st   string
			}{
				{"another task's", b, "deploy", state},
				{"for another tool", a, "echo", state},
				{"made up", a, "deploy", "deploy-1"},
				{"tampered", a, "deploy", strings.TrimSuffix(state, "deploy-1") + "deploy-2"},
			} {
				refused := len(e.rec.events(audit.TypeMCPCall))
				_, err := tc.cs.CallTool(ctx, &mcp.CallToolParams{Name: tc.tool, Arguments: map[string]any{"text": "x"}, InputResponses: answer, RequestState: tc.st})
				if code, msg := rpcCode(err); code != -32602 || !strings.Contains(msg, "requestState was not issued") {
					t.Errorf("retry with %s state: %v; want it refused", tc.name, err)
				}
				evs := e.rec.events(audit.TypeMCPCall)[refused:]
				if len(evs) != 1 || evs[0].Decision != audit.DecisionDeny || !strings.Contains(evs[0].Reason, "requestState") {
					t.Errorf("retry with %s state recorded as %+v; want one refusal", tc.name, evs)
				}
			}
			res, err := a.CallTool(ctx, &mcp.CallToolParams{Name: "deploy", InputResponses: answer, RequestState: state})
			if err != nil || text(res) != "accept deploy-1" {
				t.Fatalf("the task's own retry = %+v, %v", res, err)
			}
		})
	}
}

// TestParkedCalls: a 2025-11-25 upstream's elicitation in the middle of a
// sessionless client's call reaches the client as an input_required
// result; the client's retry carries the answer upstream and gets the
// result. Each attempt is decided and recorded (the first with the
// outcome input_required); the upstream sees one call. A retry must be
// the same task's, for the same call and arguments.
func TestParkedCalls(t *testing.T) {
	up := newRelayUpstream(t)
	local := stdioUpstream(t, "local")
	local.Timeout, local.Env = 5*time.Second, []string{"MCPPROXY_TEST_STDIO=2025-11-25"}
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url, Timeout: 5 * time.Second}, local}, nil)
	ctx := t.Context()
	ag, err := e.auth.Register(ctx, "agent", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	client := func(opts *mcp.ClientOptions, path string) *mcp.ClientSession {
		t.Helper()
		tok, err := e.auth.TaskToken(ctx, ag, "tool.call:up/* tool.call:local/*", "test")
		if err != nil {
			t.Fatal(err)
		}
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, opts).Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.srv.URL + path, HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}

	for _, path := range []string{"/mcp/up", "/mcp/local"} {
		t.Run("the client answers on "+path, func(t *testing.T) {
			var asked atomic.Int64
			cs := client(&mcp.ClientOptions{ElicitationHandler: func(_ context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				asked.Add(1)
				if r.Params.Message != "Who are you?" {
					t.Errorf("asked %q", r.Params.Message)
				}
				return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "alice"}}, nil
			}}, path)
			calls, results := len(e.rec.events(audit.TypeMCPCall)), len(e.rec.events(audit.TypeMCPResult))
			upCalls := len(up.callIDs())
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask"})
			if err != nil || text(res) != "accept alice" {
				t.Fatalf("ask = %v, %v; want the upstream's answer to alice", res, err)
			}
			if asked.Load() != 1 {
				t.Errorf("the client was asked %d times, want 1", asked.Load())
			}
			if path == "/mcp/up" && len(up.callIDs()) != upCalls+1 {
				t.Errorf("the upstream was called %d times, want 1", len(up.callIDs())-upCalls)
			}
			decided := e.rec.events(audit.TypeMCPCall)[calls:]
			outcomes := e.rec.waitEvents(audit.TypeMCPResult, results+2)[results:]
			if len(decided) != 2 || len(outcomes) != 2 {
				t.Fatalf("%d decisions and %d outcomes; want 2 of each", len(decided), len(outcomes))
			}
			for i, want := range []string{"input_required", "ok"} {
				if decided[i].Decision != audit.DecisionAllow || outcomes[i].Details["outcome"] != want {
					t.Errorf("attempt %d: %s, outcome %s; want allow, %s", i+1, decided[i].Decision, outcomes[i].Details["outcome"], want)
				}
			}
		})
	}

	t.Run("retries are bound", func(t *testing.T) {
		// Declares elicitation; answers by hand.
		manual := &mcp.ClientOptions{MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
			ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) { return nil, errors.New("unused") }}
		a, b := client(manual, "/mcp/up"), client(manual, "/mcp/up")
		first, err := a.CallTool(ctx, &mcp.CallToolParams{Name: "ask", Arguments: map[string]any{}})
		if err != nil || len(first.InputRequests) != 1 {
			t.Fatalf("ask = %+v, %v; want input_required", first, err)
		}
		var key string
		for k, q := range first.InputRequests {
			if p, ok := q.(*mcp.ElicitParams); !ok || p.Message != "Who are you?" {
				t.Fatalf("input request %s = %#v", k, q)
			}
			key = k
		}
		answer := mcp.InputResponseMap{key: &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "bob"}}}
		for _, tc := range []struct {
			name string
			cs   *mcp.ClientSession
			args map[string]any
		}{
			{"by another task", b, map[string]any{}},
			{"with other arguments", a, map[string]any{"linger": true}},
		} {
			_, err := tc.cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask", Arguments: tc.args, InputResponses: answer, RequestState: first.RequestState})
			if code, _ := rpcCode(err); code != -32602 {
				t.Errorf("retry %s: %v; want it refused", tc.name, err)
			}
		}
		res, err := a.CallTool(ctx, &mcp.CallToolParams{Name: "ask", Arguments: map[string]any{}, InputResponses: answer, RequestState: first.RequestState})
		if err != nil || text(res) != "accept bob" {
			t.Fatalf("the task's retry = %+v, %v", res, err)
		}
		if _, err := a.CallTool(ctx, &mcp.CallToolParams{Name: "ask", Arguments: map[string]any{}, InputResponses: answer, RequestState: first.RequestState}); err == nil {
			t.Error("a second retry of a call that ended was accepted")
		}
	})

	t.Run("a task's waiting calls are bounded", func(t *testing.T) {
		cs := client(&mcp.ClientOptions{MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: true},
			ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) { return nil, errors.New("unused") }}, "/mcp/up")
		for i := range 64 {
			if res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask"}); err != nil || len(res.InputRequests) != 1 {
				t.Fatalf("call %d = %+v, %v; want it waiting for input", i, res, err)
			}
		}
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask"})
		if code, msg := rpcCode(err); code != mcpproxy.CodeRateLimited || !strings.Contains(msg, "already wait") {
			t.Fatalf("the 65th waiting call: %v; want CodeRateLimited", err)
		}
	})
}

// TestParkedCallsNeedTheCapability: a task whose client does not declare
// elicitation gets an upstream session that does not either, so the
// upstream does not ask; and when another client of a task whose first
// one declared it does not, the gateway refuses the upstream's request
// rather than ask a client that cannot answer.
func TestParkedCallsNeedTheCapability(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url, Timeout: 5 * time.Second}}, nil)
	connect := func(tok string, opts *mcp.ClientOptions) *mcp.ClientSession {
		t.Helper()
		cs, err := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, opts).Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/up", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cs.Close() })
		return cs
	}
	res, err := connect(taskToken(t, e, "plain", identity.TierAutonomous, "tool.call:up/*"), nil).CallTool(t.Context(), &mcp.CallToolParams{Name: "ask"})
	if err != nil || !res.IsError || len(res.InputRequests) != 0 || !strings.Contains(text(res), "does not support elicitation") {
		t.Fatalf("ask = %+v (%s), %v; want the upstream told that the client cannot be asked", res, text(res), err)
	}

	tok := taskToken(t, e, "mixed", identity.TierAutonomous, "tool.call:up/*")
	asker := connect(tok, &mcp.ClientOptions{ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "alice"}}, nil
	}})
	if res, err := asker.CallTool(t.Context(), &mcp.CallToolParams{Name: "ask"}); err != nil || text(res) != "accept alice" {
		t.Fatalf("ask by the client that can answer = %v, %v", res, err)
	}
	res, err = connect(tok, nil).CallTool(t.Context(), &mcp.CallToolParams{Name: "ask"})
	if err != nil || !res.IsError || len(res.InputRequests) != 0 || !strings.Contains(text(res), "did not declare the elicitation capability") {
		t.Fatalf("ask by the task's other client = %+v (%s), %v; want the upstream's elicitation refused", res, text(res), err)
	}
}
