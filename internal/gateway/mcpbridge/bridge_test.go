package mcpbridge_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
)

// gateway is a real MCP gateway in front of one Go SDK upstream "go"
// (an echo tool), with a real authorization server that issues its task
// tokens.
type gateway struct {
	auth     *mcpproxytest.Authority
	endpoint string // the upstream's endpoint on the gateway
}

func newGateway(t *testing.T) *gateway {
	t.Helper()
	up := httptest.NewServer(mcpproxytest.SDKEchoServer())
	t.Cleanup(up.Close)
	ups := []mcpproxy.Upstream{{Name: "go", URL: up.URL}}
	srv := httptest.NewUnstartedServer(nil)
	base := "http://" + srv.Listener.Addr().String()
	a, err := mcpproxytest.NewAuthority(context.Background(), t.TempDir(), base, mcpproxy.Resources(mcpproxy.Config{PublicURL: base, Upstreams: ups})...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	authn, err := a.Authenticator(nil)
	if err != nil {
		t.Fatal(err)
	}
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams: ups, Authenticator: authn, Decider: mcpproxytest.Decider{}, Audit: a.Audit,
		PublicURL: base, AuthorizationServers: []string{base},
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = gw
	srv.Start()
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		gw.Close()
	})
	return &gateway{auth: a, endpoint: base + "/mcp/go"}
}

// TestRun: a stdio-only client of either protocol revision reaches the
// gateway through Run (what `mandate mcp stdio` runs) with a Bearer or a
// DPoP-bound task token, speaks its revision with the gateway, is
// governed the same way as a Streamable HTTP client, and Run returns nil
// once the client goes away.
func TestRun(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	for _, tc := range []struct {
		name     string
		scope    string
		dpop     bool
		rev      string
		wantCode int64 // 0: the echo is answered
	}{
		{name: "bearer", scope: "tool.call:go/echo", rev: "2025-11-25"},
		{name: "bearer sessionless", scope: "tool.call:go/echo", rev: "2026-07-28"},
		{name: "dpop", scope: "tool.call:go/echo", dpop: true, rev: "2025-11-25"},
		{name: "dpop sessionless", scope: "tool.call:go/echo", dpop: true, rev: "2026-07-28"},
		{name: "outside the scope", scope: "tool.call:go/other", rev: "2026-07-28", wantCode: mcpproxy.CodeDenied},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := t.Context()
			ag, err := g.auth.Register(ctx, strings.ReplaceAll(tc.name, " ", "-"), identity.TierAutonomous)
			if err != nil {
				t.Fatal(err)
			}
			cfg := mcpbridge.Config{Endpoint: g.endpoint}
			if tc.dpop {
				_, key, _ := ed25519.GenerateKey(rand.Reader)
				cfg.DPoPKey = key
				cfg.Token, err = g.auth.TaskTokenDPoP(ctx, ag, tc.scope, "bridge", key)
			} else {
				cfg.Token, err = g.auth.TaskToken(ctx, ag, tc.scope, "bridge")
			}
			if err != nil {
				t.Fatal(err)
			}
			cs, done := connect(t, cfg, tc.rev)
			if got := cs.InitializeResult().ProtocolVersion; got != tc.rev {
				t.Errorf("negotiated %s through the bridge, want %s", got, tc.rev)
			}
			res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "over stdio"}})
			if tc.wantCode == 0 {
				if err != nil || text(res) != "over stdio" {
					t.Fatalf("echo = %v, %v; want \"over stdio\"", res, err)
				}
			} else if code := rpcCode(err); code != tc.wantCode {
				t.Fatalf("echo: error %v (code %d), want code %d", err, code, tc.wantCode)
			}
			cs.Close()
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("Run = %v after the client closed, want nil", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Run did not return after the client closed")
			}
		})
	}
}

// TestRunBoundTokenWithoutKey: a DPoP-bound token relayed as a Bearer
// token (the key not configured) is refused by the gateway: the bridge
// reports the failure instead of serving a client it cannot connect.
func TestRunBoundTokenWithoutKey(t *testing.T) {
	t.Parallel()
	g := newGateway(t)
	ag, err := g.auth.Register(t.Context(), "bound", identity.TierAutonomous)
	if err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	tok, err := g.auth.TaskTokenDPoP(t.Context(), ag, "tool.call:go/echo", "bridge", key)
	if err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, nil)
	cs, done := connectClient(t, c, mcpbridge.Config{Endpoint: g.endpoint, Token: tok}, "")
	if cs != nil {
		cs.Close()
		t.Fatal("a client connected through the bridge with a bound token and no key")
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Run = nil, want the gateway's refusal")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after the gateway refused the token")
	}
}

// connect starts Run with cfg between in-memory pipes and connects an MCP
// client to its stdio side; done receives Run's result.
func connect(t *testing.T, cfg mcpbridge.Config, rev string) (*mcp.ClientSession, <-chan error) {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "desktop", Version: "1"}, nil)
	cs, done := connectClient(t, c, cfg, rev)
	if cs == nil {
		t.Fatalf("connect through the bridge failed: Run = %v", <-done)
	}
	return cs, done
}

// connectClient is connect for client c speaking revision rev (the SDK's
// latest if ""); it returns a nil session if the client could not
// initialize.
func connectClient(t *testing.T, c *mcp.Client, cfg mcpbridge.Config, rev string) (*mcp.ClientSession, <-chan error) {
	t.Helper()
	cr, bw := io.Pipe() // bridge → client
	br, cw := io.Pipe() // client → bridge
	done := make(chan error, 1)
	go func() {
		err := mcpbridge.Run(context.Background(), br, bw, cfg)
		// Run has stopped reading and writing: unblock the client.
		bw.Close()
		br.Close()
		done <- err
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: cr, Writer: cw}, &mcp.ClientSessionOptions{ProtocolVersion: rev})
	if err != nil {
		cw.Close()
		return nil, done
	}
	return cs, done
}

func text(res *mcp.CallToolResult) string {
	if res == nil {
		return ""
	}
	var b strings.Builder
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			b.WriteString(tc.Text)
		}
	}
	return b.String()
}

func rpcCode(err error) int64 {
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return we.Code
	}
	return 0
}
