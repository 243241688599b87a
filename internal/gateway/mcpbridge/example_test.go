package mcpbridge_test

import (
	"context"
	"net/http"
	"os"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
)

// What `mandate mcp stdio` does: serve the MCP client on this process's
// stdin and stdout through a gateway endpoint, with the task token as a
// Bearer credential (set DPoPKey to the key a DPoP-bound token is bound
// to).
func ExampleRun() {
	err := mcpbridge.Run(context.Background(), os.Stdin, os.Stdout, mcpbridge.Config{
		Endpoint: "https://mandate.example.com/mcp/github",
		Token:    os.Getenv("MANDATE_TASK_TOKEN"),
	})
	if err != nil {
		os.Exit(1)
	}
}

// A Go agent that speaks Streamable HTTP itself presents its task token
// with Transport.
func ExampleTransport() {
	hc := &http.Client{Transport: &mcpbridge.Transport{Token: os.Getenv("MANDATE_TASK_TOKEN")}}
	c := mcp.NewClient(&mcp.Implementation{Name: "my-agent", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: "https://mandate.example.com/mcp", HTTPClient: hc}, nil)
	if err != nil {
		return
	}
	defer cs.Close()
}
