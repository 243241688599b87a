package main

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/identity"
)

// maxKeyFileSize bounds a --key file.
const maxKeyFileSize = 64 << 10

func (a *app) agentCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Register and manage agents (workload identities)",
		Long: `Register and manage agents: governed workload identities
spiffe://<trust-domain>/agent/<name>, each with an accountable human owner,
an escalation contact, a trust tier (assist, supervised, autonomous) and the
credentials it authenticates with (public keys for private_key_jwt, or
federated trust in an external OIDC issuer), and an entitlement: the
ceiling of every task it may hold ('mandate agent update --help').

These commands talk to the server's admin API over the local socket in the
data directory, or to --server URL with --token.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, &cf)
	cmd.AddCommand(a.agentRegisterCmd(&cf), a.agentListCmd(&cf), a.agentShowCmd(&cf), a.agentUpdateCmd(&cf), a.agentKeyCmd(&cf), a.agentFederationCmd(&cf))
	for _, t := range []struct{ verb, short, long string }{
		{"suspend", "Suspend an agent: refuse its tokens and revoke its tasks at once",
			"Suspend an agent. Its tokens are refused from this moment and every active task it holds\n(with its delegated descendants) is revoked. 'mandate agent resume' undoes the suspension\n(tasks stay revoked)."},
		{"resume", "Resume a suspended agent",
			"Resume a suspended agent: it can authenticate and start tasks again. Retired agents\ncannot be resumed."},
		{"retire", "Retire an agent for good",
			"Retire an agent: like suspend, but final. Its name stays taken so that its audit trail\nremains unambiguous."},
	} {
		cmd.AddCommand(a.agentTransitionCmd(&cf, t.verb, t.short, t.long))
	}
	return cmd
}

func (a *app) agentRegisterCmd(cf *clientFlags) *cobra.Command {
	var (
		req         admin.RegisterAgentRequest
		tier        string
		labels      []string
		keyFiles    []string
		federations []string
		ef          entitlementFlags
	)
	cmd := &cobra.Command{
		Use:   "register NAME",
		Short: "Register a new agent",
		Long: `Register a new agent named NAME in the server's trust domain.

--owner (the accountable human) and --escalation (who to call when the agent
misbehaves) are required. Give the agent at least one way to authenticate:
--key with a public JWK file (Ed25519 or P-256, with a "kid") for
private_key_jwt, or --federation ISSUER=SUBJECT to trust a JWT from an
external OIDC issuer configured on the server (federation.issuers), such as
a Kubernetes service-account token or a CI OIDC token.

` + entitlementHelp + ` Change it later with 'mandate agent update'.`,
		Example: `  # An agent that signs client assertions with its own key
  mandate agent register build-bot \
      --owner alice@example.com --escalation oncall-platform@example.com \
      --tier supervised --label team=platform --key build-bot.pub.jwk \
      --entitle 'file.read:/repo/**' --entitle 'file.write:/repo/src/**' \
      --max-sensitivity internal --max-task-ttl 8h

  # A CI job that authenticates with its GitHub Actions OIDC token
  mandate agent register release-bot \
      --owner bob@example.com --escalation oncall@example.com \
      --federation 'https://token.actions.githubusercontent.com=repo:org/app:ref:refs/heads/main' \
      --require-dpop`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			req.Name = args[0]
			req.Tier = identity.Tier(tier)
			if req.Labels, err = parseLabels(labels); err != nil {
				return err
			}
			for _, f := range keyFiles {
				keys, err := readPublicKeys(f)
				if err != nil {
					return err
				}
				req.Keys = append(req.Keys, keys...)
			}
			for _, f := range federations {
				fed, err := parseFederation(f)
				if err != nil {
					return err
				}
				req.Federations = append(req.Federations, fed)
			}
			if ef.given() {
				if req.Entitlement, err = ef.entitlement(); err != nil {
					return err
				}
			}
			var ag agentView
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/agents", nil, req, &ag); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Registered %s\n\n", ag.ID)
			return printAgent(a.stdout, &ag)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Owner, "owner", "", "accountable human owner, e.g. alice@example.com (required)")
	f.StringVar(&req.Escalation, "escalation", "", "escalation contact, e.g. a team's on-call address (required)")
	f.StringVar(&tier, "tier", string(identity.TierAssist), "trust tier: assist (read and draft), supervised (writes with approval) or autonomous")
	f.StringVar(&req.Description, "description", "", "what the agent does")
	f.StringArrayVar(&labels, "label", nil, "label KEY=VALUE (repeatable)")
	f.StringArrayVar(&keyFiles, "key", nil, "file with the agent's public JWK, or a JWK set (repeatable)")
	f.StringArrayVar(&federations, "federation", nil, "trust JWTs from ISSUER with subject SUBJECT: ISSUER=SUBJECT (repeatable)")
	f.BoolVar(&req.RequireDPoP, "require-dpop", false, "issue this agent only DPoP-bound tokens")
	ef.add(f)
	f.SortFlags = false
	return cmd
}

func parseLabels(kvs []string) (map[string]string, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	m := make(map[string]string, len(kvs))
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, usageError{fmt.Errorf("--label %q: want KEY=VALUE", kv)}
		}
		m[k] = v
	}
	return m, nil
}

// readPublicKeys reads a JWK or a JWK set from path. Private keys are
// refused: the server must never receive an agent's private key.
func readPublicKeys(path string) ([]jose.JSONWebKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("--key: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("--key %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("--key %s: larger than %d bytes", path, maxKeyFileSize)
	}
	var keys []jose.JSONWebKey
	var set struct {
		Keys []json.RawMessage `json:"keys"`
	}
	if err := json.Unmarshal(data, &set); err == nil && set.Keys != nil {
		for i, raw := range set.Keys {
			var k jose.JSONWebKey
			if err := k.UnmarshalJSON(raw); err != nil {
				return nil, fmt.Errorf("--key %s: keys[%d]: %v", path, i, err)
			}
			keys = append(keys, k)
		}
	} else {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(data); err != nil {
			return nil, fmt.Errorf("--key %s: not a JWK or JWK set: %v", path, err)
		}
		keys = append(keys, k)
	}
	for _, k := range keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("--key %s: contains a private key; register the public key only (mandate never stores agents' private keys)", path)
		}
	}
	return keys, nil
}

func (a *app) agentListCmd(cf *clientFlags) *cobra.Command {
	var status, tier, owner string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List agents",
		Example: `  mandate agent list
  mandate agent list --status suspended
  mandate agent list --owner alice@example.com -o json | jq -r '.agents[].id'`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			q := url.Values{}
			setIf(q, "status", status)
			setIf(q, "tier", tier)
			setIf(q, "owner", owner)
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var resp struct {
				Agents []*identity.Agent `json:"agents"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/agents", q, nil, &resp); err != nil || printed {
				return err
			}
			if len(resp.Agents) == 0 {
				fmt.Fprintln(a.stderr, "No agents. Register one with 'mandate agent register NAME --owner … --escalation …'.")
				return nil
			}
			tw := newTable(a.stdout)
			tw.row("NAME", "TIER", "STATUS", "OWNER", "ESCALATION", "CREDENTIALS", "CREATED")
			for _, ag := range resp.Agents {
				tw.row(ag.ID.Name(), string(ag.Tier), string(ag.Status), ag.Owner, ag.Escalation, credentials(ag), fmtTime(ag.CreatedAt))
			}
			return tw.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "", "only agents with this status: active, suspended or retired")
	f.StringVar(&tier, "tier", "", "only agents of this tier: assist, supervised or autonomous")
	f.StringVar(&owner, "owner", "", "only agents with this owner")
	f.IntVar(&limit, "limit", 0, "at most this many agents (0: all)")
	return cmd
}

func setIf(q url.Values, k, v string) {
	if v != "" {
		q.Set(k, v)
	}
}

func credentials(ag *identity.Agent) string {
	var parts []string
	if n := len(ag.Keys); n > 0 {
		parts = append(parts, plural(n, "key"))
	}
	if n := len(ag.Federations); n > 0 {
		parts = append(parts, plural(n, "federation"))
	}
	if ag.RequireDPoP {
		parts = append(parts, "dpop")
	}
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, ", ")
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return strconv.Itoa(n) + " " + word + "s"
}

func (a *app) agentShowCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show one agent and its entitlement",
		Long:    "Show one agent, by name or full SPIFFE ID, with its credentials and its entitlement.",
		Example: "  mandate agent show build-bot\n  mandate agent show spiffe://mandate.local/agent/build-bot -o json",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), http.MethodGet, "/admin/v1/agents/"+agentPathRef(args[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.printAgentResponse(c, data)
		},
	}
}

// agentPathRef is the path segment for an agent given by name or SPIFFE
// ID: the API addresses agents by name.
func agentPathRef(ref string) string {
	if id, err := identity.ParseID(ref); err == nil {
		ref = id.Name()
	}
	return url.PathEscape(ref)
}

func (a *app) agentTransitionCmd(cf *clientFlags, verb, short, long string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     verb + " NAME",
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  mandate agent %s build-bot --reason 'incident INC-42'", verb),
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/agents/"+agentPathRef(args[0])+"/"+verb,
				nil, map[string]string{"reason": reason})
			if err != nil {
				return err
			}
			return a.printAgentResponse(c, data)
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func (a *app) printAgentResponse(c *client, data []byte) error {
	if c.output == "json" {
		return printJSON(a.stdout, data)
	}
	var ag agentView
	if err := json.Unmarshal(data, &ag); err != nil {
		return fmt.Errorf("decoding the server's response: %w", err)
	}
	return printAgent(a.stdout, &ag)
}

// printAgent prints an agent, and its entitlement when the view has it.
func printAgent(w io.Writer, ag *agentView) error {
	tw := newTable(w)
	tw.row("ID:", ag.ID.String())
	tw.row("Name:", ag.ID.Name())
	if ag.Description != "" {
		tw.row("Description:", ag.Description)
	}
	tw.row("Owner:", ag.Owner)
	tw.row("Escalation:", ag.Escalation)
	tw.row("Tier:", string(ag.Tier))
	tw.row("Status:", string(ag.Status))
	tw.row("Require DPoP:", strconv.FormatBool(ag.RequireDPoP))
	if taint := ag.TaintAt(time.Now()); taint != "" {
		tw.row("Taint:", taint+" until "+ag.TaintUntil.UTC().Format(time.RFC3339)+" (its new tasks start tainted)")
	}
	labels := make([]string, 0, len(ag.Labels))
	for k, v := range ag.Labels {
		labels = append(labels, k+"="+v)
	}
	sort.Strings(labels)
	tw.list("Labels:", labels)
	keys := make([]string, 0, len(ag.Keys))
	for _, k := range ag.Keys {
		keys = append(keys, fmt.Sprintf("%s (%s)", k.KeyID, keyType(k)))
	}
	tw.list("Keys:", keys)
	feds := make([]string, 0, len(ag.Federations))
	for _, f := range ag.Federations {
		feds = append(feds, f.Issuer+"  subject "+f.Subject)
	}
	tw.list("Federations:", feds)
	if err := printEntitlement(tw, ag.Entitlement); err != nil {
		return err
	}
	tw.row("Created:", fmtTime(ag.CreatedAt))
	tw.row("Updated:", fmtTime(ag.UpdatedAt))
	return tw.flush()
}

func keyType(k jose.JSONWebKey) string {
	switch pub := k.Key.(type) {
	case ed25519.PublicKey:
		return "Ed25519"
	case *ecdsa.PublicKey:
		return pub.Curve.Params().Name
	}
	return fmt.Sprintf("%T", k.Key)
}
