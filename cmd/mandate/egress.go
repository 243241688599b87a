package main

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"
)

func (a *app) egressCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "egress",
		Short: "Work with the HTTP egress proxy",
		Long: `Work with mandate's HTTP egress proxy (egress.listen), which decides every
outbound request of an agent and, for the hosts in egress.intercept, terminates
their TLS with mandate's own certificate authority. See docs/egress.md.

These commands talk to the server's admin API over the local socket in the
data directory, or to --server URL with --token.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, &cf)
	cmd.AddCommand(a.egressCACmd(&cf))
	return cmd
}

func (a *app) egressCACmd(cf *clientFlags) *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "ca",
		Short: "Print the interception CA's certificate (PEM) for clients to trust",
		Long: `Print the certificate of mandate's interception CA, in PEM: the bundle an
agent's tools must trust for the hosts the egress proxy intercepts
(egress.intercept). Its private key never leaves the server's data directory,
where it is sealed under the key-encryption key.

Point the usual variables at the file (mandate run does it for you):

  SSL_CERT_FILE        OpenSSL-based tools, curl, Go, Python's ssl, Ruby
  NODE_EXTRA_CA_CERTS  Node.js and npm (added to Node's own roots)
  REQUESTS_CA_BUNDLE   Python requests, pip
  GIT_SSL_CAINFO       git

SSL_CERT_FILE and REQUESTS_CA_BUNDLE replace the system roots for those tools:
give them a bundle of the system roots and this certificate when the agent also
reaches hosts that are not intercepted (which keep their own certificates).

The certificate is renewed 30 days before it expires and whenever the
egress.intercept patterns change (its name constraints name the intercepted
hosts): export it again then.`,
		Example: `  mandate egress ca > mandate-ca.pem
  mandate egress ca --out ~/.config/mandate/ca.pem
  mandate egress ca | cat /etc/ssl/certs/ca-certificates.crt - > bundle.pem   # system roots + mandate's
  mandate egress ca --server https://mandate.example.com:8443 --token "$MANDATE_ADMIN_TOKEN"`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			b, err := c.do(cmd.Context(), http.MethodGet, "/admin/v1/egress/ca", nil, nil)
			if err != nil {
				if apiStatus(err) == http.StatusNotFound {
					return fmt.Errorf("%w\nset egress.listen and egress.intercept on the server to make the CA", err)
				}
				return err
			}
			blk, _ := pem.Decode(b)
			if blk == nil || blk.Type != "CERTIFICATE" {
				return errors.New("the server's answer is not a PEM certificate")
			}
			if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
				return fmt.Errorf("the server's CA certificate does not parse: %w", err)
			}
			if out == "" {
				_, err := a.stdout.Write(b)
				return err
			}
			if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
				return err
			}
			if err := os.WriteFile(out, b, 0o644); err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "Wrote the egress CA certificate to %s\n", out)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "write the PEM to this file (mode 0644) instead of standard output")
	return cmd
}
