package main

import (
	"crypto"
	"fmt"
	"io"
	"net/http"
	"os"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/agentrun"
	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/hook"
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
	var endpoint, token, tokenFile, dpopKeyFile string
	cmd := &cobra.Command{
		Use:   "stdio",
		Short: "Serve a stdio MCP client through the gateway",
		Long: `For MCP clients that can only spawn stdio servers (desktop apps): configure
'mandate mcp stdio' as the server command. It speaks MCP on stdin/stdout and
relays every message, unchanged, to a gateway endpoint over Streamable HTTP,
authenticated with the task's token, so the client's calls are governed
like any other.

The task token comes from --token, else the file --token-file or
$MANDATE_TASK_TOKEN_FILE — read on every request, so a token 'mandate run'
renews is used at once — else $MANDATE_TASK_TOKEN. Under 'mandate run',
$MANDATE_MCP_CONFIG is a ready client configuration that starts this bridge.`,
		Example: `  mandate mcp stdio --url http://127.0.0.1:8420/mcp/github --token "$MANDATE_TASK_TOKEN"

  # in a desktop client's configuration:
  {"command": "mandate", "args": ["mcp", "stdio", "--url", "http://127.0.0.1:8420/mcp"],
   "env": {"MANDATE_TASK_TOKEN_FILE": "/home/me/.mandate/task-token"}}

  # under mandate run, Claude Code with the gateway's tools:
  mandate run --agent coder ... -- sh -c 'claude --mcp-config "$MANDATE_MCP_CONFIG"'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			endpoint = firstNonEmpty(endpoint, a.getenv("MANDATE_MCP_URL"))
			if token == "" {
				tokenFile = firstNonEmpty(tokenFile, a.getenv("MANDATE_TASK_TOKEN_FILE"))
			}
			if tokenFile == "" {
				token = firstNonEmpty(token, a.getenv("MANDATE_TASK_TOKEN"))
			}
			if endpoint == "" || (token == "" && tokenFile == "") {
				return usageError{fmt.Errorf("mcp stdio: --url (or MANDATE_MCP_URL) and --token, --token-file (or MANDATE_TASK_TOKEN_FILE, MANDATE_TASK_TOKEN) are required")}
			}
			var key crypto.Signer
			if dpopKeyFile = firstNonEmpty(dpopKeyFile, a.getenv("MANDATE_DPOP_KEY")); dpopKeyFile != "" {
				var err error
				if key, err = readPrivateJWK(dpopKeyFile); err != nil {
					return err
				}
			}
			cfg := mcpbridge.Config{Endpoint: endpoint, Token: token, DPoPKey: key}
			if tokenFile != "" {
				// The file's token, read on every request, is set over the
				// bridge's own (a check that the file holds one comes first).
				ft := &agentrun.TokenFileTransport{Path: tokenFile, DPoPKey: key}
				tok, err := hook.LoadToken(func(string) string { return tokenFile })
				if err != nil {
					return err
				}
				cfg.Token, cfg.DPoPKey, cfg.HTTPClient = tok, nil, &http.Client{Transport: ft}
			}
			return mcpbridge.Run(cmd.Context(), os.Stdin, nopWriteCloser{a.stdout}, cfg)
		},
	}
	cmd.Flags().StringVar(&endpoint, "url", "", "gateway endpoint URL: <server>/mcp (aggregated) or <server>/mcp/<upstream> (default $MANDATE_MCP_URL)")
	cmd.Flags().StringVar(&dpopKeyFile, "dpop-key", "", "private JWK file of the key a DPoP-bound task token is bound to (default $MANDATE_DPOP_KEY)")
	cmd.Flags().StringVar(&tokenFile, "token-file", "", "file holding the task token, read on every request (default $MANDATE_TASK_TOKEN_FILE)")
	cmd.Flags().StringVar(&token, "token", "", "the task token (default $MANDATE_TASK_TOKEN; prefer the environment: flags are visible to other users)")
	return cmd
}

// readPrivateJWK reads an Ed25519 or P-256 private key from a JWK file.
func readPrivateJWK(path string) (crypto.Signer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%s: not a JWK: %v", path, err)
	}
	s, ok := k.Key.(crypto.Signer)
	if !ok || k.IsPublic() {
		return nil, fmt.Errorf("%s: not a private key", path)
	}
	return s, nil
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }
