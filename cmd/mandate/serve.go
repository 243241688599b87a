package main

import (
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/heapfloor"
	"github.com/mandatehq/mandate/internal/server"
	"github.com/mandatehq/mandate/internal/web"
)

func (a *app) serveCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the mandate server",
		Long: `Run the mandate server: the OAuth authorization server for agents, the admin
API, /healthz, /readyz and Prometheus /metrics on the HTTP listener, and the
local admin socket <data-dir>/admin.sock (mode 0600).

With no configuration it listens on 127.0.0.1:8420 and keeps its embedded
SQLite store in the data directory ($XDG_DATA_HOME/mandate or
~/.local/share/mandate). Every setting can come from a YAML file (--config),
a MANDATE_* environment variable or a flag; flags win over the environment,
which wins over the file. Unknown keys in the file are errors.

A non-loopback listen address needs TLS (--tls-cert and --tls-key) unless
--allow-insecure-listen says a TLS-terminating proxy is the only client.
SIGINT or SIGTERM shuts the server down gracefully; SIGHUP reloads the
policies (as 'mandate policy reload' does).

The garbage collector lets the heap grow to gc.heap_floor_bytes (64 MiB)
between cycles while little of it is live, instead of collecting every
few MiB; above that, Go's GOGC sets the pace (GOGC=400 trades memory for
CPU) and GOMEMLIMIT caps the heap (see docs/configuration.md, "Memory").

See docs/configuration.md for every key.`,
		Example: `  # Zero configuration: 127.0.0.1:8420, data in ~/.local/share/mandate
  mandate serve

  # A throw-away server for experiments
  mandate serve --data-dir /tmp/mandate --listen 127.0.0.1:9000

  # On the network, with TLS and an admin token for remote administration
  mandate admin token generate      # prints the token and its sha256 line
  mandate serve --listen 0.0.0.0:8443 --tls-cert cert.pem --tls-key key.pem \
      --public-url https://mandate.example.com:8443 \
      --admin-token-hashes sha256:…

  # From a configuration file, overriding one key from the environment
  MANDATE_LOG_LEVEL=debug mandate serve --config /etc/mandate/mandate.yaml`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := server.LoadConfig(server.LoadOptions{Flags: cmd.Flags(), Getenv: a.getenv})
			if err != nil {
				return err
			}
			cfg.Logger = server.NewLogger(a.stderr, cfg.Log)
			s, err := server.New(cmd.Context(), cfg)
			if err != nil {
				return err
			}
			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			done := make(chan struct{})
			defer close(done)
			go func() {
				for {
					select {
					case <-done:
						return
					case <-hup:
						_ = s.ReloadPolicies(cmd.Context()) // failures are logged; the last good set stays
					}
				}
			}()
			if !s.HasIdPs() {
				if link, err := s.LoginLink(); err == nil {
					fmt.Fprintf(a.stdout, "Sign in as the local administrator (one-time link, valid %s; another: mandate admin login-link):\n\n  %s\n\n", web.DefaultLinkTTL, link)
				}
			}
			defer heapfloor.Start(uint64(cfg.GC.HeapFloorBytes)).Stop()
			return s.Run(cmd.Context())
		},
	}
	server.AddFlags(cmd.Flags())
	cmd.Flags().SortFlags = false
	return cmd
}
