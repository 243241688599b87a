package mcpproxy_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
)

// credentials is a Credentials that gives each task a value of its own
// (unit tests only; the server's leases them from the secrets broker).
type credentials struct {
	mu    sync.Mutex
	asked map[string]int // by task
	ttl   time.Duration
	fail  error
}

func (c *credentials) value(task string) string { return "s3cr3t-" + task }

func (c *credentials) For(_ context.Context, p *mcpproxy.Principal, upstream string) (mcpproxy.Injection, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fail != nil {
		return mcpproxy.Injection{}, c.fail
	}
	if c.asked == nil {
		c.asked = map[string]int{}
	}
	c.asked[p.Task]++
	v := c.value(p.Task)
	inj := mcpproxy.Injection{
		Env:     []string{"DB_PASSWORD=" + v},
		Headers: map[string]string{"X-Api-Key": v},
		Secrets: map[string]string{v: "db"},
	}
	if c.ttl > 0 {
		inj.Until = time.Now().Add(c.ttl)
	}
	return inj, nil
}

func sum(v string) string { return fmt.Sprintf("%x", sha256.Sum256([]byte(v))) }

// TestCredentialsStdio: a stdio upstream's process gets its session's
// task's credentials in its environment; two tasks get their own; the
// value never reaches the client (a placeholder does); credentials that
// cannot be had refuse the upstream; a process outlives no lease.
func TestCredentialsStdio(t *testing.T) {
	creds := &credentials{}
	e := newEnv(t, []mcpproxy.Upstream{stdioUpstream(t, "proc")}, func(c *mcpproxy.Config) { c.Credentials = creds })
	getenv := func(cs *mcp.ClientSession) (string, error) {
		res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "getenv", Arguments: map[string]any{"text": "DB_PASSWORD"}})
		if err != nil {
			return "", err
		}
		return text(res), nil
	}
	tasks := map[string]*mcp.ClientSession{}
	for _, name := range []string{"one", "two"} {
		tok := taskToken(t, e, name, identity.TierAutonomous, "tool.call")
		tasks[name] = connect(t, e, "/mcp/proc", tok)
	}
	for name, cs := range tasks {
		out, err := getenv(cs)
		if err != nil {
			t.Fatalf("%s: getenv: %v", name, err)
		}
		var task string
		for k := range creds.asked {
			if strings.Contains(out, "sha256="+sum(creds.value(k))) {
				task = k
			}
		}
		if task == "" {
			t.Fatalf("%s: the upstream did not get a task's value: %q", name, out)
		}
		if strings.Contains(out, creds.value(task)) || !strings.Contains(out, "value=[secret:db]") {
			t.Errorf("%s: the client saw %q, want the value replaced by [secret:db]", name, out)
		}
		for other := range creds.asked {
			if other != task && strings.Contains(out, sum(creds.value(other))) {
				t.Errorf("%s: got task %s's credential", name, other)
			}
		}
	}
	if len(creds.asked) != 2 {
		t.Fatalf("credentials asked for %v, want each of the two tasks", creds.asked)
	}

	// No credentials, no upstream.
	creds.mu.Lock()
	creds.fail = errors.New("secret.use denied: no policy permits this action")
	creds.mu.Unlock()
	c := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil)
	tok := taskToken(t, e, "three", identity.TierAutonomous, "tool.call")
	_, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: e.srv.URL + "/mcp/proc", HTTPClient: bearerClient(tok), MaxRetries: -1}, nil)
	if err == nil || !strings.Contains(err.Error(), "secret.use denied") {
		t.Fatalf("an upstream whose credentials were refused: %v, want the refusal", err)
	}
}

// TestCredentialsExpire: when its leases end, the upstream's process is
// closed, and the next call starts one with the credentials then leased.
func TestCredentialsExpire(t *testing.T) {
	creds := &credentials{ttl: 300 * time.Millisecond}
	e := newEnv(t, []mcpproxy.Upstream{stdioUpstream(t, "proc")}, func(c *mcpproxy.Config) { c.Credentials = creds })
	cs := connect(t, e, "/mcp/proc", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call"))
	pid := func() string {
		t.Helper()
		for range 50 {
			res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "getenv", Arguments: map[string]any{"text": "DB_PASSWORD"}})
			if err == nil {
				out := text(res)
				return out[strings.LastIndex(out, "pid="):]
			}
			time.Sleep(50 * time.Millisecond) // a restart waits out its backoff
		}
		t.Fatal("getenv never answered")
		return ""
	}
	first := pid()
	time.Sleep(500 * time.Millisecond)
	if second := pid(); second == first {
		t.Fatalf("the same process (%s) after its lease ended", first)
	}
	var asked int
	for _, n := range creds.asked {
		asked += n
	}
	if asked < 2 {
		t.Fatalf("credentials asked %d times, want again after the lease ended", asked)
	}
}

// TestCredentialsHTTP: an HTTP upstream's requests carry the session's
// credentials as headers, on the raw relay and the SDK's handshake alike,
// and what it echoes is scrubbed.
func TestCredentialsHTTP(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	up := mcp.NewServer(&mcp.Implementation{Name: "hdr", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "whoami", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, req *mcp.CallToolRequest, _ any) (*mcp.CallToolResult, any, error) {
		k := req.Extra.Header.Get("X-Api-Key")
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "key=" + k + " sha256=" + sum(k)}}}, nil, nil
	})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("X-Api-Key"))
		mu.Unlock()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	creds := &credentials{}
	e := newEnv(t, []mcpproxy.Upstream{{Name: "hdr", URL: srv.URL}}, func(c *mcpproxy.Config) { c.Credentials = creds })
	cs := connect(t, e, "/mcp/hdr", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call"))
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "whoami"})
	if err != nil {
		t.Fatal(err)
	}
	var task string
	for k := range creds.asked {
		task = k
	}
	v := creds.value(task)
	if out := text(res); strings.Contains(out, v) || !strings.Contains(out, "key=[secret:db] sha256="+sum(v)) {
		t.Fatalf("whoami through the gateway: %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	for i, k := range seen {
		if k != v {
			t.Errorf("upstream request %d carried X-Api-Key %q, want the task's credential", i, k)
		}
	}
}
