package mcpproxy_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
)

// An MCP server behind the gateway, and an agent whose task may only
// read: it sees and calls the read-only tool; the destructive one is
// hidden and denied.
func Example() {
	ctx := context.Background()

	// The upstream: any MCP server; here an in-process one over HTTP.
	up := mcp.NewServer(&mcp.Implementation{Name: "notes", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "read_note", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "buy milk"}}}, nil, nil
		})
	mcp.AddTool(up, &mcp.Tool{Name: "delete_notes"},
		func(context.Context, *mcp.CallToolRequest, any) (*mcp.CallToolResult, any, error) {
			return &mcp.CallToolResult{}, nil, nil
		})
	upSrv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	defer upSrv.Close()

	// mandate's token server issues the agent's task token.
	gwSrv := httptest.NewUnstartedServer(nil)
	base := "http://" + gwSrv.Listener.Addr().String()
	dir, _ := os.MkdirTemp("", "mcpproxy-example-")
	defer os.RemoveAll(dir)
	authority, err := mcpproxytest.NewAuthority(ctx, dir, base)
	if err != nil {
		panic(err)
	}
	defer authority.Close()

	// The access pipeline (the shipped default policies) authenticates
	// and decides every call; the gateway enforces its answers.
	pipeline, err := authority.Pipeline(access.Config{})
	if err != nil {
		panic(err)
	}
	governed := mcpproxy.NewPipeline(pipeline)
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams:     []mcpproxy.Upstream{{Name: "notes", URL: upSrv.URL}},
		Authenticator: governed,
		Decider:       governed,
		Audit:         authority.Audit,
		PublicURL:     base,
	})
	if err != nil {
		panic(err)
	}
	defer gw.Close()
	gwSrv.Config.Handler = gw
	gwSrv.Start()
	defer gwSrv.Close()

	agent, _ := authority.Register(ctx, "note-reader", identity.TierAssist)
	token, _ := authority.TaskToken(ctx, agent, "tool.call:notes/*", "summarize my notes")

	// The agent connects to the gateway's endpoint for the upstream.
	client := mcp.NewClient(&mcp.Implementation{Name: "agent", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp/notes", HTTPClient: bearerClient(token)}, nil)
	if err != nil {
		panic(err)
	}
	defer cs.Close()
	tools, _ := cs.ListTools(ctx, nil)
	for _, t := range tools.Tools {
		fmt.Println("tool:", t.Name)
	}
	res, _ := cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_note"})
	fmt.Println("read_note:", res.Content[0].(*mcp.TextContent).Text)
	_, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "delete_notes"})
	fmt.Println("delete_notes:", err)
	// Output:
	// tool: read_note
	// read_note: buy milk
	// delete_notes: calling "tools/call": denied: no policy permits this action (denied by default)
}
