package mcpproxy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
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

// relayUpstream is a Go SDK server over Streamable HTTP with tools that
// exercise the raw relay, behind a handler that sees every message.
type relayUpstream struct {
	url string
	srv *httptest.Server
	// ids are the JSON-RPC ids of the tools/call requests received, last
	// the last one's body.
	mu   sync.Mutex
	ids  []string
	last string
	// forget, when set, makes the next tools/call find its session gone.
	forget atomic.Bool
	// cancelled receives the request ids of calls whose context ended.
	cancelled chan string
}

func newRelayUpstream(t *testing.T) *relayUpstream {
	t.Helper()
	u := &relayUpstream{cancelled: make(chan string, 8)}
	s := mcp.NewServer(&mcp.Implementation{Name: "relay-upstream", Version: "1"}, nil)
	ro := &mcp.ToolAnnotations{ReadOnlyHint: true}
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Annotations: ro}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "count", Annotations: ro}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		for i := 1; i <= 5; i++ {
			_ = req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: req.Params.GetProgressToken(), Progress: float64(i), Total: 5})
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "counted"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "ask", Annotations: ro}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{
			Message:         "Who are you?",
			RequestedSchema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}}}`),
		})
		if err != nil {
			return nil, nil, err
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("%s %v", res.Action, res.Content["name"])}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "ask_briefly", Annotations: ro}, func(ctx context.Context, req *mcp.CallToolRequest, in struct {
		Linger bool `json:"linger,omitempty"`
	}) (*mcp.CallToolResult, any, error) {
		// The upstream gives up on its elicitation, cancelling it (the
		// SDK sends the cancellation in the background), and returns at
		// once or carries on a while without the answer.
		ectx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		_, err := req.Session.Elicit(ectx, &mcp.ElicitParams{Message: "Quick!", RequestedSchema: json.RawMessage(`{"type":"object","properties":{}}`)})
		if in.Linger {
			time.Sleep(300 * time.Millisecond)
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint(err)}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "block", Annotations: ro}, func(ctx context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		<-ctx.Done()
		u.cancelled <- "block"
		return nil, nil, ctx.Err()
	})
	mcp.AddTool(s, &mcp.Tool{Name: "slow", Annotations: ro}, func(ctx context.Context, _ *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		select {
		case <-time.After(400 * time.Millisecond):
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "done"}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "big", Annotations: ro}, func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: strings.Repeat("x", 64<<10)}}}, nil, nil
	})
	mcp.AddTool(s, &mcp.Tool{Name: "reconnect", Annotations: ro}, func(_ context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		// SEP-1699: the server ends the stream; the client resumes it.
		req.Extra.CloseSSEStream(mcp.CloseSSEStreamArgs{RetryAfter: 10 * time.Millisecond})
		time.Sleep(100 * time.Millisecond)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "resumed"}}}, nil, nil
	})
	// An event store gives the upstream's events ids, so that its streams
	// can be resumed.
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{EventStore: mcp.NewMemoryEventStore(nil)})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			body, _ := io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
			var m struct {
				ID     json.RawMessage `json:"id"`
				Method string          `json:"method"`
			}
			if json.Unmarshal(body, &m) == nil && m.Method == "tools/call" {
				u.mu.Lock()
				u.ids = append(u.ids, string(m.ID))
				u.last = string(body)
				u.mu.Unlock()
				if u.forget.CompareAndSwap(true, false) {
					http.Error(w, "session not found", http.StatusNotFound)
					return
				}
			}
		}
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	u.url, u.srv = srv.URL, srv
	return u
}

// lastCall is the body of the last tools/call the upstream got.
func (u *relayUpstream) lastCall() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.last
}

func (u *relayUpstream) callIDs() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return slices.Clone(u.ids)
}

// connectWith opens a client session with options (handlers) of its own.
// connectWith connects a 2025-11-25 client with opts: a session, the
// raw relay's ground, on which upstreams' requests (elicitation,
// sampling) are relayed to the client as requests. (connect speaks the
// SDK's latest revision.)
func connectWith(t *testing.T, e *env, path, token string, opts *mcp.ClientOptions) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, opts)
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + path, HTTPClient: bearerClient(token), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		t.Fatalf("Connect(%s): %v", path, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// TestRawRelay: governed calls to an HTTP upstream travel as raw JSON-RPC
// under the gateway's relay ids, and everything a call streams (progress,
// requests for the client, cancellation) still works end to end.
func TestRawRelay(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url, Timeout: 5 * time.Second}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")

	var (
		pmu      sync.Mutex
		progress []float64
	)
	elicitCancelled := make(chan struct{}, 1)
	cs := connectWith(t, e, "/mcp/up", tok, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) {
			pmu.Lock()
			progress = append(progress, r.Params.Progress)
			pmu.Unlock()
		},
		ElicitationHandler: func(ctx context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			if r.Params.Message == "Quick!" {
				select {
				case <-ctx.Done():
					elicitCancelled <- struct{}{}
					return nil, ctx.Err()
				case <-time.After(5 * time.Second):
					return &mcp.ElicitResult{Action: "decline"}, nil
				}
			}
			if r.Params.Message != "Who are you?" {
				return nil, fmt.Errorf("unexpected elicitation %q", r.Params.Message)
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "alice"}}, nil
		},
	})
	ctx := t.Context()

	t.Run("calls travel under relay ids", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil || text(res) != "hi" {
			t.Fatalf("echo = %v, %v", res, err)
		}
		ids := up.callIDs()
		if len(ids) == 0 || !strings.HasPrefix(ids[len(ids)-1], `"mandate-`) {
			t.Fatalf("upstream saw tools/call ids %v; want the gateway's relay ids", ids)
		}
	})

	t.Run("progress arrives in order", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "count", Meta: mcp.Meta{"progressToken": "p1"}})
		if err != nil || text(res) != "counted" {
			t.Fatalf("count = %v, %v", res, err)
		}
		want := []float64{1, 2, 3, 4, 5}
		deadline := time.Now().Add(2 * time.Second)
		for {
			pmu.Lock()
			got := slices.Clone(progress)
			pmu.Unlock()
			if slices.Equal(got, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("progress = %v, want %v", got, want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	})

	t.Run("a stream the upstream ends is resumed", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "reconnect"})
		if err != nil || text(res) != "resumed" {
			t.Fatalf("reconnect = %v, %v", res, err)
		}
	})

	t.Run("the client answers the upstream's elicitation", func(t *testing.T) {
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask"})
		if err != nil || text(res) != "accept alice" {
			t.Fatalf("ask = %v, %v", res, err)
		}
	})

	t.Run("the upstream cancels its elicitation", func(t *testing.T) {
		// The upstream's notifications/cancelled names its own id for the
		// request; the client knows it under the relay id.
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask_briefly", Arguments: map[string]any{"linger": true}}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-elicitCancelled:
		case <-time.After(3 * time.Second):
			t.Fatal("the client's elicitation was not cancelled")
		}
	})

	t.Run("a call ends with its elicitation unanswered", func(t *testing.T) {
		// The answer would have nowhere to go: the client's elicitation
		// is cancelled, also when the upstream's own cancellation comes
		// after its response.
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "ask_briefly"}); err != nil {
			t.Fatal(err)
		}
		select {
		case <-elicitCancelled:
		case <-time.After(3 * time.Second):
			t.Fatal("the client's elicitation was not cancelled")
		}
	})

	t.Run("cancellation reaches the upstream", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		go func() { time.Sleep(200 * time.Millisecond); cancel() }()
		if _, err := cs.CallTool(cctx, &mcp.CallToolParams{Name: "block"}); err == nil {
			t.Fatal("block returned")
		}
		select {
		case <-up.cancelled:
		case <-time.After(5 * time.Second):
			t.Fatal("the upstream's call was not cancelled")
		}
		waitResult(t, e, "tool:up/block", "error")
	})

	t.Run("a lost upstream session is reopened", func(t *testing.T) {
		up.forget.Store(true)
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
		if code, msg := rpcCode(err); code != mcpproxy.CodeUpstreamUnavailable || !strings.Contains(msg, `"retry_after":1`) {
			t.Fatalf("call on a lost session: %v; want CodeUpstreamUnavailable with retry_after", err)
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "again"}})
		if err != nil || text(res) != "again" {
			t.Fatalf("call after reopening = %v, %v", res, err)
		}
	})

	t.Run("params are sent as the gateway read them", func(t *testing.T) {
		// Duplicate keys: a parser that kept the first "name" would run
		// a tool nobody decided on. The upstream gets one reading.
		body := `{"jsonrpc":"2.0","id":"dup","method":"tools/call","params":{"name":"big","name":"echo","arguments":{"text":"first","text":"last"}}}`
		_, got := postMessage(t, e, "/mcp/up", tok, cs.ID(), body)
		if !strings.Contains(got, `"text":"last"`) {
			t.Fatalf("answer %s; want echo of \"last\"", got)
		}
		up.mu.Lock()
		last := up.last
		up.mu.Unlock()
		if strings.Count(last, `"name"`) != 1 || strings.Contains(last, "first") || !strings.Contains(last, `"name":"echo"`) {
			t.Fatalf("upstream received %s; want one name (echo) and one text (last)", last)
		}
		evs := e.rec.events(audit.TypeMCPCall)
		if ev := evs[len(evs)-1]; ev.Resource != "tool:up/echo" {
			t.Fatalf("decided on %s, want tool:up/echo", ev.Resource)
		}
	})

	t.Run("every call has its decision and outcome in the ledger", func(t *testing.T) {
		calls, results := e.rec.events(audit.TypeMCPCall), e.rec.waitEvents(audit.TypeMCPResult, 10)
		if len(calls) != 10 || len(results) != 10 {
			t.Fatalf("%d mcp.call and %d mcp.result events; want 10 and 10", len(calls), len(results))
		}
	})
}

// waitResult waits for the mcp.result event of a call to resource with
// the given outcome.
func waitResult(t *testing.T, e *env, resource, outcome string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		for _, ev := range e.rec.events(audit.TypeMCPResult) {
			if ev.Resource == resource && ev.Details["outcome"] == outcome {
				return
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("no mcp.result for %s with outcome %q in %v", resource, outcome, e.rec.events(audit.TypeMCPResult))
}

// TestRawRelayLimits: the raw relay enforces the upstream timeout
// (cancelling the upstream's work) and the result size limit.
func TestRawRelayLimits(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url, Timeout: 300 * time.Millisecond}}, func(c *mcpproxy.Config) {
		c.Limits.MaxResultBytes = 8 << 10
	})
	cs := connectWith(t, e, "/mcp/up", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*"), nil)
	ctx := t.Context()

	_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "block"})
	if code, msg := rpcCode(err); code != mcpproxy.CodeUpstreamTimeout {
		t.Fatalf("block: %v (%s); want CodeUpstreamTimeout", err, msg)
	}
	select {
	case <-up.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's call was not cancelled after the timeout")
	}
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "big"})
	if code, msg := rpcCode(err); code != mcpproxy.CodeTooLarge {
		t.Fatalf("big: %v (%s); want CodeTooLarge", err, msg)
	}
	// The session still serves.
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "ok"}})
	if err != nil || text(res) != "ok" {
		t.Fatalf("echo after limits = %v, %v", res, err)
	}
	waitResult(t, e, "tool:up/big", "error")
}

// TestSessionIdleTimeout: a session in use stays open however long it
// lives; an idle one is closed after the session timeout.
func TestSessionIdleTimeout(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, func(c *mcpproxy.Config) {
		c.Limits.SessionTimeout = 400 * time.Millisecond
	})
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	cs := connectWith(t, e, "/mcp/up", tok, nil)
	ctx := t.Context()
	for range 8 {
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
			t.Fatalf("call on a session in use: %v", err)
		}
		time.Sleep(150 * time.Millisecond)
	}
	time.Sleep(time.Second)
	// The SDK client would open a new session on its own; ask directly.
	if status, _ := postMessage(t, e, "/mcp/up", tok, cs.ID(), `{"jsonrpc":"2.0","id":1,"method":"ping"}`); status != http.StatusNotFound {
		t.Fatalf("ping on a session idle past the timeout: HTTP %d, want 404", status)
	}
}

// TestRawRelayClientGone: a client that disconnects in the middle of a
// raw-relayed call (without cancelling it) gets the upstream's work
// cancelled, the outcome still recorded, and leaves no goroutine behind.
func TestRawRelayClientGone(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
	// The environment's store and ledger run until the test's cleanup.
	base := runtime.NumGoroutine()
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	cs := connectWith(t, e, "/mcp/up", tok, nil)
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, e.srv.URL+"/mcp/up", strings.NewReader(`{"jsonrpc":"2.0","id":"gone","method":"tools/call","params":{"name":"block"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Session-Id", cs.ID())
	errc := make(chan error, 1)
	go func() {
		resp, err := bearerClient(tok).Do(req)
		if err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	time.Sleep(200 * time.Millisecond)
	cancel() // the connection goes away; no notifications/cancelled is sent
	<-errc
	select {
	case <-up.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream's call was not cancelled after the client went away")
	}
	waitResult(t, e, "tool:up/block", "error")

	cs.Close()
	e.srv.CloseClientConnections()
	e.srv.Close()
	e.gw.Close()
	up.srv.CloseClientConnections()
	up.srv.Close()
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	waitGoroutines(t, base)
}

// TestShutdown: a graceful shutdown lets the calls in flight finish,
// ends idle sessions (and their GET streams) at once, and refuses new
// sessions meanwhile.
func TestShutdown(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	busy := connectWith(t, e, "/mcp/up", tok, nil) // the SDK client keeps a GET stream open
	idle := connectWith(t, e, "/mcp/up", tok, nil)
	for _, cs := range []*mcp.ClientSession{busy, idle} {
		if _, err := cs.ListTools(t.Context(), nil); err != nil {
			t.Fatal(err)
		}
	}
	res := make(chan error, 1)
	go func() {
		r, err := busy.CallTool(t.Context(), &mcp.CallToolParams{Name: "slow"})
		if err == nil && text(r) != "done" {
			err = fmt.Errorf("slow = %q", text(r))
		}
		res <- err
	}()
	time.Sleep(100 * time.Millisecond) // the call is in flight
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	start := time.Now()
	go func() { shut <- e.gw.Shutdown(ctx) }()
	time.Sleep(50 * time.Millisecond)
	if status, _ := postMessage(t, e, "/mcp/up", tok, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"late","version":"1"}}}`); status != http.StatusServiceUnavailable {
		t.Errorf("a new session during shutdown: HTTP %d, want 503", status)
	}
	if err := <-res; err != nil {
		t.Fatalf("the call in flight at shutdown: %v", err)
	}
	if err := <-shut; err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("Shutdown took %v; idle sessions should not hold it up", d)
	}
	waitResult(t, e, "tool:up/slow", "ok")
}

// TestRawRelayFoldedMembers: the raw relay refuses params with a member
// that is not, but case-insensitively matches, one the gateway decides on.
// Go's encoding/json (and so many Go MCP servers) reads "argumentſ" (long
// s) or "Arguments" as "arguments", the last one in the object winning;
// the gateway's re-encoding sorts "argumentſ" after "arguments", so such
// an upstream would run the call with arguments nobody decided on.
func TestRawRelayFoldedMembers(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	cs := connectWith(t, e, "/mcp/up", tok, nil)
	if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, params string }{
		{"long s", `{"name":"echo","arguments":{"text":"decided"},"argument\u017f":{"text":"evil"}}`},
		{"long s, raw", "{\"name\":\"echo\",\"arguments\":{\"text\":\"decided\"},\"argument\u017f\":{\"text\":\"evil\"}}"},
		{"upper case", `{"name":"echo","arguments":{"text":"decided"},"Arguments":{"text":"evil"}}`},
		{"name", `{"name":"echo","NAME":"evil","arguments":{"text":"decided"}}`},
		{"only the folded member", `{"name":"echo","Arguments":{"text":"evil"}}`},
		{"task augmentation", `{"name":"echo","arguments":{"text":"decided"},"Task":{"ttl":"evil"}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			decided := len(e.rec.events(audit.TypeMCPCall))
			body := `{"jsonrpc":"2.0","id":"fold","method":"tools/call","params":` + tc.params + `}`
			_, got := postMessage(t, e, "/mcp/up", tok, cs.ID(), body)
			if !strings.Contains(got, `"id":"fold","error":{"code":-32602`) {
				t.Errorf("POST %s = %s; want an invalid params error", body, got)
			}
			up.mu.Lock()
			last := up.last
			up.mu.Unlock()
			if strings.Contains(last, "evil") {
				t.Errorf("upstream received %s", last)
			}
			if n := len(e.rec.events(audit.TypeMCPCall)); n != decided {
				t.Errorf("%d decisions recorded for a refused call", n-decided)
			}
		})
	}
}

// TestCloseWaitsForCalls: Close cancels the raw-relayed calls in flight
// and returns only once their outcomes are recorded.
func TestCloseWaitsForCalls(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
	cs := connectWith(t, e, "/mcp/up", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*"), nil)
	go func() { _, _ = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "block"}) }()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.rec.events(audit.TypeMCPCall)) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // the call is upstream
	start := time.Now()
	e.gw.Close()
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("Close took %v: it must cancel the calls in flight, not wait them out", d)
	}
	var outcome string
	for _, ev := range e.rec.events(audit.TypeMCPResult) {
		if ev.Resource == "tool:up/block" {
			outcome = ev.Details["outcome"]
		}
	}
	if outcome != "error" {
		t.Fatalf("after Close, the in-flight call's outcome is %q; want it recorded as error", outcome)
	}
}

// TestCallTimeoutPausedWhileClientAnswers: the time the downstream client
// (a person, say) takes to answer an upstream's elicitation does not count
// against the upstream's call timeout; the upstream's own time still does.
func TestCallTimeoutPausedWhileClientAnswers(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url, Timeout: 300 * time.Millisecond}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	cs := connectWith(t, e, "/mcp/up", tok, &mcp.ClientOptions{
		ElicitationHandler: func(ctx context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			select {
			case <-time.After(900 * time.Millisecond): // three call timeouts
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "alice"}}, nil
		},
	})
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "ask"})
	if err != nil || text(res) != "accept alice" {
		t.Fatalf("ask, answered after 900ms with a 300ms call timeout = %v, %v; want the answer", res, err)
	}
	_, err = cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "slow"})
	if code, msg := rpcCode(err); code != mcpproxy.CodeUpstreamTimeout {
		t.Fatalf("slow (400ms of upstream time): %v (%s); want CodeUpstreamTimeout", err, msg)
	}
}

// TestRawRelayIgnoresTaskAugmentation: the gateway does not declare the
// tasks capability, so a task-augmented tools/call is processed normally
// (MCP 2025-11-25, "Tasks"): the upstream gets the call without "task" and
// the client gets the tool's result, not a task it could not reach.
func TestRawRelayIgnoresTaskAugmentation(t *testing.T) {
	up := newRelayUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:up/*")
	cs := connectWith(t, e, "/mcp/up", tok, nil)
	body := `{"jsonrpc":"2.0","id":"t1","method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"},"task":{"ttl":60000}}}`
	code, got := postMessage(t, e, "/mcp/up", tok, cs.ID(), body)
	if code != http.StatusOK || !strings.Contains(got, `"text":"hi"`) || strings.Contains(got, "taskId") {
		t.Fatalf("task-augmented tools/call = %d %s; want the tool's result", code, got)
	}
	up.mu.Lock()
	last := up.last
	up.mu.Unlock()
	if !strings.Contains(last, `"arguments":{"text":"hi"}`) || strings.Contains(last, `"task"`) {
		t.Errorf("upstream received %s; want the call without its task augmentation", last)
	}
}
