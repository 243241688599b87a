package main

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/identity"
)

// agentKeyCmd is 'mandate agent key': rotating an agent's public keys
// without re-registering it. agentFederationCmd is its counterpart for
// federated identities.
func (a *app) agentKeyCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Add or remove an agent's public keys (key rotation)",
		Long: `Add or remove the public keys an agent signs its private_key_jwt client
assertions with. To rotate a key without downtime: add the new key, move the
agent to it, then remove the old one. A removed key is refused for new
assertions at once; tokens already obtained with it live out their short
lifetime (suspend the agent to stop them immediately).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "add NAME FILE",
		Short: "Add a public key (a JWK file with a kid) to an agent",
		Example: `  mandate agent key add build-bot build-bot-2026-12.pub.jwk
  mandate agent key add spiffe://mandate.local/agent/build-bot new.pub.jwk -o json`,
		Args: exactArgs("NAME", "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			keys, err := readPublicKeys(args[1])
			if err != nil {
				return err
			}
			if len(keys) != 1 {
				return errors.New("FILE must hold exactly one public JWK; add keys one at a time")
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/agents/"+agentPathRef(args[0])+"/keys", nil, keys[0])
			if err != nil {
				return err
			}
			return a.printAgentResponse(c, data)
		},
	}, &cobra.Command{
		Use:     "remove NAME KID",
		Short:   "Remove one of an agent's public keys, by kid",
		Example: "  mandate agent key remove build-bot build-bot-2026-06",
		Args:    exactArgs("NAME", "KID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), http.MethodDelete, "/admin/v1/agents/"+agentPathRef(args[0])+"/keys/"+url.PathEscape(args[1]), nil, nil)
			if err != nil {
				return err
			}
			return a.printAgentResponse(c, data)
		},
	})
	return cmd
}

func (a *app) agentFederationCmd(cf *clientFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "federation",
		Short: "Add or remove the external identities an agent is trusted as",
		Long: `Add or remove federated identities: a JWT from ISSUER (configured on the
server in federation.issuers) whose subject is SUBJECT authenticates the agent,
which then holds no stored secret. Use it when a CI pipeline or Kubernetes
service account is renamed. A removed federation is refused at once.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	change := func(use, short, method string) *cobra.Command {
		return &cobra.Command{
			Use:     use + " NAME ISSUER=SUBJECT",
			Short:   short,
			Example: fmt.Sprintf("  mandate agent federation %s ci-bot 'https://token.actions.githubusercontent.com=repo:org/app:ref:refs/heads/main'", use),
			Args:    exactArgs("NAME", "ISSUER=SUBJECT"),
			RunE: func(cmd *cobra.Command, args []string) error {
				f, err := parseFederation(args[1])
				if err != nil {
					return err
				}
				c, err := a.newClient(cf)
				if err != nil {
					return err
				}
				path := "/admin/v1/agents/" + agentPathRef(args[0]) + "/federations"
				var data []byte
				if method == http.MethodPost {
					data, err = c.do(cmd.Context(), method, path, nil, f)
				} else {
					data, err = c.do(cmd.Context(), method, path, url.Values{"issuer": {f.Issuer}, "subject": {f.Subject}}, nil)
				}
				if err != nil {
					return err
				}
				return a.printAgentResponse(c, data)
			},
		}
	}
	cmd.AddCommand(
		change("add", "Trust another external identity for an agent", http.MethodPost),
		change("remove", "Stop trusting an external identity for an agent", http.MethodDelete),
	)
	return cmd
}

// parseFederation parses ISSUER=SUBJECT.
func parseFederation(s string) (identity.Federation, error) {
	iss, sub, ok := strings.Cut(s, "=")
	if !ok || iss == "" || sub == "" {
		return identity.Federation{}, usageError{fmt.Errorf("federation %q: want ISSUER=SUBJECT", s)}
	}
	return identity.Federation{Issuer: iss, Subject: sub}, nil
}
