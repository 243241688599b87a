package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// stdioEnv, set, makes the test binary a stdio MCP server (for tests of
// stdio upstreams behind a real server).
const stdioEnv = "MANDATE_SERVER_TEST_STDIO"

func TestMain(m *testing.M) {
	if os.Getenv(stdioEnv) != "" {
		stdioServer()
		return
	}
	os.Exit(m.Run())
}

// stdioServer serves "getenv": a variable's SHA-256 and value, and the
// process id, so that a test can tell what the process was given (and
// see that the value itself never reaches the client).
func stdioServer() {
	s := mcp.NewServer(&mcp.Implementation{Name: "stdio-test", Version: "1"}, nil)
	type in struct {
		Name string `json:"name"`
	}
	mcp.AddTool(s, &mcp.Tool{Name: "getenv", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, _ *mcp.CallToolRequest, a in) (*mcp.CallToolResult, any, error) {
		v := os.Getenv(a.Name)
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprintf("sha256=%x value=%s pid=%d", sha256.Sum256([]byte(v)), v, os.Getpid())}}}, nil, nil
	})
	_ = s.Run(context.Background(), &mcp.StdioTransport{})
}
