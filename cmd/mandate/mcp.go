package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
)

func (a *app) mcpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "mcp",
		Short: "Connect MCP clients to the MCP gateway",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	cmd.AddCommand(a.mcpStdioCmd())
	return cmd
}

func (a *app) mcpStdioCmd() *cobra.Command {
	var endpoint, token string
	cmd := &cobra.Command{
		Use:   "stdio",
		Short: "Serve a stdio MCP client through the gateway",
		Long: `For MCP clients that can only spawn stdio servers (desktop apps): configure
'mandate mcp stdio' as the server command. It speaks MCP on stdin/stdout and
relays every message, unchanged, to a gateway endpoint over Streamable HTTP,
authenticated with the task's token, so the client's calls are governed
like any other.`,
		Example: `  mandate mcp stdio --url http://127.0.0.1:8420/mcp/github --token "$MANDATE_TASK_TOKEN"

  # in a desktop client's configuration:
  {"command": "mandate", "args": ["mcp", "stdio", "--url", "http://127.0.0.1:8420/mcp"],
   "env": {"MANDATE_TASK_TOKEN": "…"}}`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			endpoint = firstNonEmpty(endpoint, a.getenv("MANDATE_MCP_URL"))
			token = firstNonEmpty(token, a.getenv("MANDATE_TASK_TOKEN"))
			if endpoint == "" || token == "" {
				return usageError{fmt.Errorf("mcp stdio: --url (or MANDATE_MCP_URL) and --token (or MANDATE_TASK_TOKEN) are required")}
			}
			return mcpproxy.Bridge(cmd.Context(), os.Stdin, nopWriteCloser{a.stdout}, mcpproxy.BridgeConfig{Endpoint: endpoint, Token: token})
		},
	}
	cmd.Flags().StringVar(&endpoint, "url", "", "gateway endpoint URL: <server>/mcp (aggregated) or <server>/mcp/<upstream> (default $MANDATE_MCP_URL)")
	cmd.Flags().StringVar(&token, "token", "", "the task token (default $MANDATE_TASK_TOKEN; prefer the environment: flags are visible to other users)")
	return cmd
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
