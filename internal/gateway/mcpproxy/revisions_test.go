package mcpproxy_test

import (
	"context"
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
	"github.com/mandatehq/mandate/internal/task"
)

// versionUpstream is an HTTP MCP server with one read-only "echo" tool
// that records the protocol revision each call arrived in. stateless
// serves 2026-07-28 (and, per request, older revisions); stateful only
// the session-based revisions up to 2025-11-25.
type versionUpstream struct {
	url  string
	mu   sync.Mutex
	seen []string
}

func newVersionUpstream(t *testing.T, stateless bool) *versionUpstream {
	t.Helper()
	u := &versionUpstream{}
	s := mcp.NewServer(&mcp.Implementation{Name: "versions", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, req *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		v := ""
		if ip := req.Session.InitializeParams(); ip != nil {
			v = ip.ProtocolVersion
		}
		u.mu.Lock()
		u.seen = append(u.seen, v)
		u.mu.Unlock()
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{Stateless: stateless}))
	t.Cleanup(srv.Close)
	u.url = srv.URL
	return u
}

func (u *versionUpstream) last() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.seen) == 0 {
		return ""
	}
	return u.seen[len(u.seen)-1]
}

// TestProtocolRevisions: clients of either revision, 2025-11-25 (with a
// session) and 2026-07-28 (sessionless), call a tool through the gateway
// on upstreams of either revision, on the upstream's endpoint and the
// aggregated one; each side speaks its own revision (the upstream records
// the one each call came in).
func TestProtocolRevisions(t *testing.T) {
	for _, upRev := range []string{"2025-11-25", "2026-07-28"} {
		up := newVersionUpstream(t, upRev == "2026-07-28")
		e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: up.url}}, nil)
		tok := taskToken(t, e, "agent-"+upRev, identity.TierAutonomous, "tool.call:up/*")
		for _, clientRev := range []string{"2025-11-25", "2026-07-28"} {
			for _, path := range []string{"/mcp/up", "/mcp"} {
				name := "up=" + upRev + "/client=" + clientRev + path
				t.Run(name, func(t *testing.T) {
					c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
					cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + path, HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: clientRev})
					if err != nil {
						t.Fatalf("Connect: %v", err)
					}
					defer cs.Close()
					if got := cs.InitializeResult().ProtocolVersion; got != clientRev {
						t.Errorf("negotiated %s with the gateway, want %s", got, clientRev)
					}
					tool := "echo"
					if path == "/mcp" {
						tool = "up__echo"
					}
					res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: tool, Arguments: map[string]any{"text": "hi"}})
					if err != nil || text(res) != "hi" {
						t.Fatalf("CallTool = %v, %v", res, err)
					}
					if got := up.last(); got != upRev {
						t.Errorf("upstream saw the call in %q, want %s", got, upRev)
					}
				})
			}
		}
	}
}

// TestProtocolRevisionsStdio: both client revisions reach a stdio
// upstream (the SDK's server, which speaks both over stdio).
func TestProtocolRevisionsStdio(t *testing.T) {
	e := newEnv(t, []mcpproxy.Upstream{stdioUpstream(t, "local")}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:local/echo")
	for _, clientRev := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(clientRev, func(t *testing.T) {
			c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
			cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/local", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: clientRev})
			if err != nil {
				t.Fatalf("Connect: %v", err)
			}
			defer cs.Close()
			if got := cs.InitializeResult().ProtocolVersion; got != clientRev {
				t.Errorf("negotiated %s with the gateway, want %s", got, clientRev)
			}
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
			if err != nil || !strings.HasPrefix(text(res), "hi pid ") {
				t.Fatalf("CallTool = %v, %v", res, err)
			}
		})
	}
}

// TestSubscriptionsListen: a 2026-07-28 client's subscriptions/listen
// stream gets the upstream's list changes.
func TestSubscriptionsListen(t *testing.T) {
	up := newGoUpstream(t)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:go/*")
	changed := make(chan struct{}, 4)
	c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) { changed <- struct{}{} },
	})
	cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/go", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	if _, err := cs.ListTools(t.Context(), nil); err != nil {
		t.Fatal(err)
	}
	up.setEcho("Echo text back, changed.")
	select {
	case <-changed:
	case <-time.After(5 * time.Second):
		t.Fatal("no tools/list_changed on the client's subscriptions/listen stream")
	}
}

// TestTaskSessions: sessionless clients of one task share the task's
// upstream process; another task, even of the same agent, gets its own;
// an oversized sessionless request is refused before anything is decided.
func TestTaskSessions(t *testing.T) {
	e := newEnv(t, []mcpproxy.Upstream{stdioUpstream(t, "local")}, func(c *mcpproxy.Config) { c.Limits.MaxMessageBytes = 4 << 10 })
	ctx := t.Context()
	ag, err := e.auth.Register(ctx, "agent", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	pid := func(tok string) string {
		t.Helper()
		c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/local", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
		if err != nil {
			t.Fatal(err)
		}
		defer cs.Close()
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}})
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := strings.Cut(text(res), " pid ")
		return p
	}
	task := func() string {
		tok, err := e.auth.TaskToken(ctx, ag, "tool.call:local/echo", "test")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	a, b := task(), task()
	pa := pid(a)
	if again := pid(a); again != pa {
		t.Errorf("the same task's second client got process %s, the first %s; want one process per task", again, pa)
	}
	if pb := pid(b); pb == pa {
		t.Errorf("two tasks share upstream process %s", pa)
	}

	decided := len(e.rec.events(audit.TypeMCPCall))
	big := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"text":"` + strings.Repeat("x", 8<<10) + `"},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28"}}}`
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/mcp/local", strings.NewReader(big))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("Mcp-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "tools/call")
	req.Header.Set("Mcp-Name", "echo")
	resp, err := bearerClient(a).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "exceeds the gateway's limit") {
		t.Errorf("oversized request = %d %s, want 413", resp.StatusCode, body)
	}
	if n := len(e.rec.events(audit.TypeMCPCall)); n != decided {
		t.Errorf("an oversized request was decided (%d mcp.call events, %d before)", n, decided)
	}
}

// TestEndedTaskSessions: when a task is revoked, the gateway closes its
// sessions, of either revision, and with them their upstream sessions,
// without waiting for them to fall idle; another task's session stays.
func TestEndedTaskSessions(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "up", Version: "1"}, nil)
	mcp.AddTool(s, &mcp.Tool{Name: "echo", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, _ *mcp.CallToolRequest, in echoIn) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: in.Text}}}, nil, nil
	})
	sdk := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
	var deletes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodDelete {
			deletes.Add(1)
		}
		sdk.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "up", URL: srv.URL}}, func(c *mcpproxy.Config) { c.Limits.SessionTimeout = 4 * time.Second })
	ctx := t.Context()
	ag, err := e.auth.Register(ctx, "agent", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	connect := func(tok, rev string) {
		t.Helper()
		c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
		cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/up", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: rev})
		if err != nil {
			t.Fatal(err)
		}
		// Left open: the gateway, not the client, must end it.
		t.Cleanup(func() { cs.Close() })
		if _, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "hi"}}); err != nil {
			t.Fatal(err)
		}
	}
	revoked, err := e.auth.TaskToken(ctx, ag, "tool.call:up/echo", "revoked")
	if err != nil {
		t.Fatal(err)
	}
	connect(revoked, "2025-11-25")
	connect(revoked, "2026-07-28")
	evs := e.rec.events(audit.TypeMCPCall)
	taskID := evs[len(evs)-1].Task
	other, err := e.auth.TaskToken(ctx, ag, "tool.call:up/echo", "other")
	if err != nil {
		t.Fatal(err)
	}
	connect(other, "2026-07-28")
	if n := deletes.Load(); n != 0 {
		t.Fatalf("%d upstream sessions ended before the revocation", n)
	}
	e.auth.Tokens.Revocations().RevokeTasks(task.ID(taskID))
	deadline := time.Now().Add(3 * time.Second) // within the session timeout
	for deletes.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if n := deletes.Load(); n != 2 {
		t.Errorf("%d upstream sessions ended after the task was revoked; want its 2 (and not the other task's)", n)
	}
}

// TestResourceSubscriptions: a resource subscription, on either
// revision (resources/subscribe on a session; a subscriptions/listen
// stream sessionless), reaches the 2025-11-25 upstream serving the
// resource, and its updates come back to the client.
func TestResourceSubscriptions(t *testing.T) {
	s := mcp.NewServer(&mcp.Implementation{Name: "files", Version: "1"}, &mcp.ServerOptions{
		SubscribeHandler:   func(context.Context, *mcp.SubscribeRequest) error { return nil },
		UnsubscribeHandler: func(context.Context, *mcp.UnsubscribeRequest) error { return nil },
	})
	s.AddResource(&mcp.Resource{Name: "notes", URI: "file:///notes.txt"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
		return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: "file:///notes.txt", Text: "hello"}}}, nil
	})
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil))
	t.Cleanup(srv.Close)
	e := newEnv(t, []mcpproxy.Upstream{{Name: "files", URL: srv.URL}}, nil)
	tok := taskToken(t, e, "agent", identity.TierAutonomous, "resource.read:file:///**")
	for _, rev := range []string{"2025-11-25", "2026-07-28"} {
		t.Run(rev, func(t *testing.T) {
			updated := make(chan string, 4)
			c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, &mcp.ClientOptions{
				ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) { updated <- r.Params.URI },
			})
			cs, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/files", HTTPClient: bearerClient(tok), MaxRetries: -1}, &mcp.ClientSessionOptions{ProtocolVersion: rev})
			if err != nil {
				t.Fatal(err)
			}
			defer cs.Close()
			if err := cs.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "file:///notes.txt"}); err != nil {
				t.Fatalf("Subscribe: %v", err)
			}
			deadline := time.Now().Add(5 * time.Second)
			for {
				// The upstream's subscription may still be on its way.
				_ = s.ResourceUpdated(t.Context(), &mcp.ResourceUpdatedNotificationParams{URI: "file:///notes.txt"})
				select {
				case uri := <-updated:
					if uri != "file:///notes.txt" {
						t.Fatalf("update for %s", uri)
					}
					return
				case <-time.After(50 * time.Millisecond):
				}
				if time.Now().After(deadline) {
					t.Fatal("no resources/updated reached the client")
				}
			}
		})
	}
}
