package main

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/spf13/cobra"
)

// adminTokenPrefix marks mandate admin tokens so that secret scanners and
// humans recognise them.
const adminTokenPrefix = "mandate_admin_"

func (a *app) adminCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "admin",
		Short: "Administer the server itself (admin tokens)",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	tok := &cobra.Command{
		Use:   "token",
		Short: "Manage admin tokens for the admin API over TCP",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	var output string
	gen := &cobra.Command{
		Use:   "generate",
		Short: "Generate a new random admin token and its configuration line",
		Long: `Generate a new random admin token (256 bits) and print it with its SHA-256
digest. The server stores only the digest: put the "sha256:<hex>" line in
admin.token_hashes (or --admin-token-hashes / MANDATE_ADMIN_TOKEN_HASHES),
and give the token to the administrator, who passes it as --token or
MANDATE_ADMIN_TOKEN with --server. The token is shown once.

Administration over the local socket (the default) needs no token.`,
		Example: `  mandate admin token generate
  mandate admin token generate -o json | jq -r .hash`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var b [32]byte
			_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
			token := adminTokenPrefix + base64.RawURLEncoding.EncodeToString(b[:])
			sum := sha256.Sum256([]byte(token))
			hash := "sha256:" + hex.EncodeToString(sum[:])
			switch output {
			case "json":
				return json.NewEncoder(a.stdout).Encode(map[string]string{"token": token, "hash": hash})
			case "table", "":
				_, err := fmt.Fprintf(a.stdout, `Admin token (shown once; store it as a secret):

  %s

Allow it on the server with one of:

  admin:                                   # in the YAML config file
    token_hashes:
      - %s

  --admin-token-hashes %s
  MANDATE_ADMIN_TOKEN_HASHES=%s

Then: mandate agent list --server https://<host>:<port> --token <token>
`, token, hash, hash, hash)
				return err
			}
			return usageError{fmt.Errorf("--output %q: want table or json", output)}
		},
	}
	gen.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	tok.AddCommand(gen)
	cmd.AddCommand(tok, a.loginLinkCmd())
	return cmd
}

func (a *app) loginLinkCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "login-link",
		Short: "Make a one-time sign-in link for the local administrator",
		Long: `Make a one-time sign-in link for the local administrator of the zero-
configuration start: opening it in a browser signs in to mandate's pages
(consent for MCP clients, /me) as the local administrator, with no identity
provider. The link works once, for 15 minutes. It is made over the local
admin socket only: whoever can use the socket is a local admin already.`,
		Example: `  mandate admin login-link
  mandate admin login-link -o json | jq -r .url`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if cf.server != "" {
				return usageError{fmt.Errorf("--server: login links are made over the local admin socket only")}
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var resp struct {
				URL       string `json:"url"`
				ExpiresIn string `json:"expires_in"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/login-links", nil, nil, &resp); err != nil || printed {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%s\n(one-time, valid %s)\n", resp.URL, resp.ExpiresIn)
			return err
		},
	}
	a.addClientFlags(cmd, cf)
	return cmd
}
