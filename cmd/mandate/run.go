package main

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/agentrun"
	"github.com/mandatehq/mandate/internal/identity"
)

// defaultTrustDomain is mandate serve's default trust_domain.
const defaultTrustDomain = "mandate.local"

func (a *app) runCmd() *cobra.Command {
	var (
		agent, trustDomain, keyFile, server, purpose, sensitivity string
		onBehalfOf, personTokenFile, egress, mcpURL               string
		scopes                                                    []string
		ttl                                                       time.Duration
		dpop                                                      bool
	)
	cmd := &cobra.Command{
		Use:   "run --agent NAME --purpose TEXT --scope PATTERN... [flags] -- COMMAND [ARG...]",
		Short: "Run a command as an agent's task: start it, hand over its credential, end it at exit",
		Long: `Starts a task as the agent does — its private key (--key) authenticates it
(private_key_jwt), the task must fit its entitlement, and it runs on behalf of
the agent's owner or of the person a --person-token proves — then runs
COMMAND with the task's credential and ends the task when COMMAND exits.

COMMAND gets, in its environment:
  MANDATE_TASK_TOKEN_FILE  a file (0600, in a private 0700 directory) holding the
                           task token, replaced atomically before the token expires
                           and removed at exit; never the token itself
  MANDATE_TASK_ID, MANDATE_SERVER, MANDATE_MCP_URL (the MCP gateway endpoint)
  MANDATE_MCP_CONFIG       a ready MCP client configuration (mcpServers) for the
                           gateway through 'mandate mcp stdio'
  MANDATE_DPOP_KEY         with --dpop: the key the tokens are bound to, made for
                           this run
  HTTP_PROXY, HTTPS_PROXY  with --egress: a forwarder on 127.0.0.1 (with a secret
  (and lowercase)          of this run) that adds the task token for the egress
                           proxy; NO_PROXY holds loopback and the mandate server
The agent's key, an admin token and any task token mandate run was given are
removed from it.

SIGINT, SIGTERM, SIGHUP and SIGQUIT are passed on to COMMAND (a terminal's
Ctrl-C reaches it directly). When COMMAND exits, or is killed, the task ends:
every token of it is refused at once. mandate run exits with COMMAND's status
(128+n when signal n killed it; 127 when it cannot be found). If the task
cannot be ended, mandate run says so and exits non-zero (1 when COMMAND
succeeded). If the task is revoked or expires while COMMAND runs, COMMAND is
stopped. See docs/coding-agents.md.`,
		Example: `  # Claude Code as the agent "coder", for the person signed in to the IdP:
  mandate run --agent coder --key ~/.mandate/coder.jwk --server https://mandate.example.com \
      --purpose 'fix the flaky test' --scope 'file.*:/repo/**' --scope 'shell.exec:*' \
      --person-token ~/.mandate/id-token --ttl 2h \
      -- claude

  # any command; its outbound HTTP through the egress proxy, MCP through the gateway:
  MANDATE_AGENT_KEY=build-bot.jwk MANDATE_SERVER=http://127.0.0.1:8420 \
  mandate run --agent build-bot --purpose 'nightly build' --scope 'http.request:*.example.com' \
      --egress http://127.0.0.1:8430 \
      -- sh -c 'curl -s https://api.example.com/ && claude --mcp-config "$MANDATE_MCP_CONFIG"'`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("run: no COMMAND: put it after --, e.g. mandate run --agent coder ... -- claude")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := a.runConfig(runFlags{
				agent: agent, trustDomain: trustDomain, keyFile: keyFile, server: server, purpose: purpose,
				sensitivity: sensitivity, onBehalfOf: onBehalfOf, personTokenFile: personTokenFile,
				egress: egress, mcpURL: mcpURL, scopes: scopes, ttl: ttl, dpop: dpop,
			})
			if err != nil {
				return err
			}
			cfg.Command = args
			cfg.Stdin, cfg.Stdout, cfg.Stderr = cmd.InOrStdin(), a.stdout, a.stderr
			code, err := agentrun.Run(cmd.Context(), cfg)
			if err != nil {
				fmt.Fprintf(a.stderr, "mandate run: %v\n", err)
			}
			if code != 0 {
				return hookExit{code}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.SetInterspersed(false) // flags after COMMAND are COMMAND's
	f.StringVar(&agent, "agent", "", "the agent: its name, or its SPIFFE ID (default $MANDATE_AGENT)")
	f.StringVar(&trustDomain, "trust-domain", "", "the server's trust domain, for an agent given by name (default $MANDATE_TRUST_DOMAIN, else "+defaultTrustDomain+")")
	f.StringVar(&keyFile, "key", "", "the agent's private JWK file, with the kid it is registered under (default $MANDATE_AGENT_KEY)")
	f.StringVar(&server, "server", "", "the mandate server's public URL (default $MANDATE_SERVER)")
	f.StringVar(&purpose, "purpose", "", "what the task is for (required; recorded with every action)")
	f.StringArrayVar(&scopes, "scope", nil, "a scope pattern such as 'file.write:/repo/**' (repeatable; required; within the agent's entitlement)")
	f.DurationVar(&ttl, "ttl", 0, "the task's lifetime, such as 2h (default: the server's, within the entitlement); the command is stopped when it runs out")
	f.StringVar(&sensitivity, "sensitivity", "", "the task's data-sensitivity ceiling: public, internal, confidential or restricted")
	f.StringVar(&personTokenFile, "person-token", "", "file with the ID token of the person the task is for, from an issuer the server trusts to name people (default $MANDATE_PERSON_TOKEN_FILE)")
	f.StringVar(&onBehalfOf, "on-behalf-of", "", "the task's principal, checked by the server: the agent's owner, or the person --person-token proves")
	f.BoolVar(&dpop, "dpop", false, "bind the task's tokens to a key made for this run (DPoP, RFC 9449); needed for agents registered with --require-dpop")
	f.StringVar(&egress, "egress", "", "the egress proxy's URL; the command's HTTP(S) proxy becomes a local forwarder to it (default $MANDATE_EGRESS_URL)")
	f.StringVar(&mcpURL, "mcp-url", "", "the MCP gateway endpoint handed to the command (default <server>/mcp)")
	return cmd
}

// runFlags are mandate run's flags.
type runFlags struct {
	agent, trustDomain, keyFile, server, purpose, sensitivity string
	onBehalfOf, personTokenFile, egress, mcpURL               string
	scopes                                                    []string
	ttl                                                       time.Duration
	dpop                                                      bool
}

// runConfig checks the flags (and their environment defaults) and reads
// the files they name.
func (a *app) runConfig(f runFlags) (agentrun.Config, error) {
	var cfg agentrun.Config
	f.agent = firstNonEmpty(f.agent, a.getenv("MANDATE_AGENT"))
	f.keyFile = firstNonEmpty(f.keyFile, a.getenv("MANDATE_AGENT_KEY"))
	f.server = firstNonEmpty(f.server, a.getenv("MANDATE_SERVER"))
	var missing []string
	for _, m := range []struct{ v, name string }{
		{f.agent, "--agent (or MANDATE_AGENT)"}, {f.keyFile, "--key (or MANDATE_AGENT_KEY)"},
		{f.server, "--server (or MANDATE_SERVER)"}, {f.purpose, "--purpose"}, {strings.Join(f.scopes, ""), "--scope"},
	} {
		if strings.TrimSpace(m.v) == "" {
			missing = append(missing, m.name)
		}
	}
	if len(missing) > 0 {
		return cfg, usageError{fmt.Errorf("run: %s required", strings.Join(missing, ", "))}
	}
	if f.ttl < 0 {
		return cfg, usageError{errors.New("run: --ttl must be positive")}
	}
	id, err := agentID(f.agent, firstNonEmpty(f.trustDomain, a.getenv("MANDATE_TRUST_DOMAIN"), defaultTrustDomain))
	if err != nil {
		return cfg, usageError{err}
	}
	kid, key, err := agentrun.ReadKey(f.keyFile)
	if err != nil {
		return cfg, err
	}
	cfg = agentrun.Config{
		Server:     f.server,
		Credential: agentrun.Credential{Agent: id.String(), KeyID: kid, Key: key},
		Task: agentrun.TaskRequest{
			Purpose: f.purpose, Scope: strings.Join(f.scopes, " "), TTL: f.ttl,
			Sensitivity: f.sensitivity, OnBehalfOf: f.onBehalfOf,
		},
		DPoP:   f.dpop,
		Egress: firstNonEmpty(f.egress, a.getenv("MANDATE_EGRESS_URL")),
		MCPURL: f.mcpURL,
		Env:    os.Environ(),
	}
	if p := firstNonEmpty(f.personTokenFile, a.getenv("MANDATE_PERSON_TOKEN_FILE")); p != "" {
		if cfg.Task.PersonToken, err = agentrun.ReadPersonToken(p); err != nil {
			return cfg, err
		}
	}
	if exe, err := os.Executable(); err == nil {
		cfg.MandateBinary = exe
	}
	return cfg, nil
}

// agentID is the SPIFFE ID of an agent given by name or by ID.
func agentID(agent, trustDomain string) (identity.ID, error) {
	if strings.HasPrefix(agent, "spiffe://") {
		id, err := identity.ParseID(agent)
		if err != nil {
			return identity.ID{}, fmt.Errorf("--agent: %w", err)
		}
		return id, nil
	}
	id, err := identity.NewID(trustDomain, agent)
	if err != nil {
		return identity.ID{}, fmt.Errorf("--agent %q: %w", agent, err)
	}
	return id, nil
}
