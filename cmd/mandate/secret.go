package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/secrets"
)

func (a *app) secretCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "secret",
		Short: "Keep secrets and see their leases",
		Long: `Keep secrets that mandate leases to tasks just in time and revokes with them.

A static secret is a value (an API key, a token), sealed at rest under the
key-encryption key. A postgres secret is the connection URL of a role that may
create roles: each lease is then a new login role, valid until the lease ends,
granted what the secret's role template says, and dropped when the task ends.

Values are read from a file, an environment variable or standard input, and
never printed back: list and show give definitions only. Every use of a secret
is a secret.use decision of the task's policies, and every lease, renewal,
revocation and failure is in the audit ledger (with the value's HMAC, never the
value). See docs/secrets.md.

These commands talk to the server's admin API over the local socket in the
data directory, or to --server URL with --token.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, &cf)
	lease := &cobra.Command{
		Use:   "lease",
		Short: "See the leases of secrets to tasks",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	lease.AddCommand(a.secretLeaseListCmd(&cf))
	cmd.AddCommand(a.secretPutCmd(&cf), a.secretListCmd(&cf), a.secretShowCmd(&cf), a.secretRmCmd(&cf),
		a.secretRotateCmd(&cf), a.secretRewrapCmd(&cf), lease)
	return cmd
}

// valueSource is where put and rotate read a value from.
type valueSource struct {
	file, env string
}

func (v *valueSource) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&v.file, "from-file", "", "read the value from this file, byte for byte")
	cmd.Flags().StringVar(&v.env, "from-env", "", "read the value from this environment variable")
}

// read returns the value: from --from-file, --from-env, or else standard
// input, whose one trailing newline (from echo or a heredoc) is dropped.
func (v *valueSource) read(a *app, cmd *cobra.Command) ([]byte, error) {
	switch {
	case v.file != "" && v.env != "":
		return nil, usageError{fmt.Errorf("give --from-file or --from-env, not both")}
	case v.file != "":
		b, err := readLimitedFile(v.file)
		if err != nil {
			return nil, err
		}
		return b, nil
	case v.env != "":
		val := a.getenv(v.env)
		if val == "" {
			return nil, fmt.Errorf("environment variable %s is empty or not set", v.env)
		}
		return []byte(val), nil
	}
	b, err := io.ReadAll(io.LimitReader(cmd.InOrStdin(), secrets.MaxValueSize+2))
	if err != nil {
		return nil, fmt.Errorf("reading the value from standard input: %w", err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	if len(b) == 0 {
		return nil, fmt.Errorf("no value on standard input (use --from-file, --from-env or pipe it in)")
	}
	return b, nil
}

func readLimitedFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, secrets.MaxValueSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > secrets.MaxValueSize {
		return nil, fmt.Errorf("%s is over the %d-byte limit of a secret value", path, secrets.MaxValueSize)
	}
	return b, nil
}

// valueBody is the value in the API's request form: text when it is
// UTF-8, base64 otherwise.
func valueBody(body map[string]any, v []byte) {
	if isText(v) {
		body["value"] = string(v)
	} else {
		body["value_base64"] = v // encoding/json writes []byte as standard base64
	}
}

func isText(b []byte) bool {
	return strings.ToValidUTF8(string(b), "\x00") == string(b) && !bytes.ContainsRune(b, 0)
}

func (a *app) secretPutCmd(cf *clientFlags) *cobra.Command {
	var (
		src         valueSource
		kind, desc  string
		deliver     []string
		labels      []string
		grants, mem []string
		keepValue   bool
	)
	cmd := &cobra.Command{
		Use:   "put NAME [--from-file F | --from-env VAR | < value]",
		Short: "Create or replace a secret",
		Long: `Create a secret, or replace its definition (and value).

NAME is 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter;
it is what tasks name in their scope: secret.use:NAME. The value comes from
--from-file (byte for byte), --from-env, or standard input (one trailing
newline dropped); it is at most 64 KiB. With --keep-value, an existing
secret's definition changes and its value stays.

--deliver says where the value may go (repeatable):
  mcp:UPSTREAM:env:VARIABLE   the MCP stdio upstream's environment
  mcp:UPSTREAM:header:NAME    the MCP HTTP upstream's request header
  egress:HOST                 requests to HOST through the egress proxy
(Delivery by the MCP gateway is not yet available; see docs/secrets.md.)

--kind postgres makes a dynamic secret: the value is the connection URL of a
role that may create roles, and each lease is a new login role granted
--grant clauses (GRANT <clause> TO <role>) and --member-of roles.`,
		Example: `  # A GitHub token, delivered to the github upstream's environment
  printf %s "$GH_TOKEN" | mandate secret put github-token \
      --deliver mcp:github:env:GITHUB_TOKEN --description 'bot token, repo scope'

  mandate secret put stripe-key --from-file ./stripe.key --deliver egress:api.stripe.com
  mandate secret put deploy-key --from-env DEPLOY_KEY --label team=infra

  # Dynamic PostgreSQL credentials, one role per lease
  mandate secret put app-db --kind postgres --from-env PG_ADMIN_URL \
      --grant 'USAGE ON SCHEMA public' --grant 'SELECT ON ALL TABLES IN SCHEMA public' \
      --deliver mcp:db:env:DATABASE_URL

  # Change where it goes, keep the value
  mandate secret put github-token --keep-value --deliver mcp:github:header:Authorization`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			body := map[string]any{"kind": kind, "description": desc}
			var targets []secrets.Target
			for _, d := range deliver {
				t, err := secrets.ParseTarget(d)
				if err != nil {
					return usageError{fmt.Errorf("--deliver: %w", err)}
				}
				targets = append(targets, t)
			}
			body["deliver"] = targets
			if len(labels) > 0 {
				m := map[string]string{}
				for _, l := range labels {
					k, v, ok := strings.Cut(l, "=")
					if !ok || k == "" {
						return usageError{fmt.Errorf("--label %q: want KEY=VALUE", l)}
					}
					m[k] = v
				}
				body["labels"] = m
			}
			if len(grants)+len(mem) > 0 {
				body["postgres"] = secrets.PostgresConfig{Grants: grants, MemberOf: mem}
			}
			if !keepValue {
				v, err := src.read(a, cmd)
				if err != nil {
					return err
				}
				defer clear(v)
				valueBody(body, v)
			} else if src.file != "" || src.env != "" {
				return usageError{fmt.Errorf("--keep-value takes no --from-file or --from-env")}
			}
			var s secrets.Secret
			if printed, err := c.fetch(cmd.Context(), http.MethodPut, "/admin/v1/secrets/"+url.PathEscape(args[0]), nil, body, &s); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Stored %s (version %d)\n\n", s.Name, s.Version)
			return printSecret(a.stdout, &s)
		},
	}
	src.flags(cmd)
	f := cmd.Flags()
	f.BoolVar(&keepValue, "keep-value", false, "change an existing secret's definition only")
	f.StringArrayVar(&deliver, "deliver", nil, "where the value may be delivered: mcp:UPSTREAM:env:VAR, mcp:UPSTREAM:header:NAME or egress:HOST (repeatable)")
	f.StringVar(&desc, "description", "", "what the secret is, for people")
	f.StringArrayVar(&labels, "label", nil, "KEY=VALUE label (repeatable)")
	f.StringVar(&kind, "kind", "static", "static, or postgres (dynamic roles)")
	f.StringArrayVar(&grants, "grant", nil, "postgres: a PRIVILEGES ON OBJECTS clause each lease's role is granted (repeatable)")
	f.StringArrayVar(&mem, "member-of", nil, "postgres: an existing role each lease's role is made a member of (repeatable)")
	f.SortFlags = false
	return cmd
}

func (a *app) secretRotateCmd(cf *clientFlags) *cobra.Command {
	var src valueSource
	cmd := &cobra.Command{
		Use:   "rotate NAME [--from-file F | --from-env VAR | < value]",
		Short: "Give a secret a new value",
		Long: `Give a secret a new value (a new version). Leases of a static secret deliver the
new value from now on; for a postgres secret the value is the admin connection
URL, used for the leases issued and revoked from now on.

To re-seal every secret under a new key-encryption key, see 'mandate secret rewrap'.`,
		Example: `  printf %s "$NEW_TOKEN" | mandate secret rotate github-token
  mandate secret rotate stripe-key --from-file ./stripe-2.key`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			v, err := src.read(a, cmd)
			if err != nil {
				return err
			}
			defer clear(v)
			body := map[string]any{}
			valueBody(body, v)
			var s secrets.Secret
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/secrets/"+url.PathEscape(args[0])+"/rotate", nil, body, &s); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Rotated %s to version %d\n", s.Name, s.Version)
			return nil
		},
	}
	src.flags(cmd)
	return cmd
}

func (a *app) secretListCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List secrets (definitions only)",
		Example: "  mandate secret list\n  mandate secret list -o json | jq -r '.secrets[].name'",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var resp struct {
				Secrets []*secrets.Secret `json:"secrets"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/secrets", nil, nil, &resp); err != nil || printed {
				return err
			}
			if len(resp.Secrets) == 0 {
				fmt.Fprintln(a.stderr, "No secrets.")
				return nil
			}
			tw := newTable(a.stdout)
			tw.row("NAME", "KIND", "VERSION", "DELIVER", "UPDATED")
			for _, s := range resp.Secrets {
				tw.row(string(s.Name), string(s.Kind), strconv.FormatInt(s.Version, 10), strings.Join(targetStrings(s.Deliver), " "), fmtTime(s.UpdatedAt))
			}
			return tw.flush()
		},
	}
}

func (a *app) secretShowCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "show NAME",
		Short:   "Show a secret's definition (never its value)",
		Example: "  mandate secret show github-token\n  mandate secret show app-db -o json | jq .postgres",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var s secrets.Secret
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/secrets/"+url.PathEscape(args[0]), nil, nil, &s); err != nil || printed {
				return err
			}
			return printSecret(a.stdout, &s)
		},
	}
}

func (a *app) secretRmCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rm NAME",
		Short: "Revoke a secret's leases and remove it",
		Long: `Revoke every lease of the secret that has not ended, then remove it. If a
lease's credential cannot be revoked yet (its database is unreachable), the
secret stays, the lease is retried, and rm says so: run it again later.`,
		Example: "  mandate secret rm github-token",
		Args:    exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			if _, err := c.do(cmd.Context(), http.MethodDelete, "/admin/v1/secrets/"+url.PathEscape(args[0]), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Removed %s\n", args[0])
			return nil
		},
	}
}

func (a *app) secretRewrapCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "rewrap",
		Short: "Re-seal every secret under the primary key-encryption key",
		Long: `Re-seal every secret value (and every live lease's credential) that is sealed
under an old key-encryption key, under the primary one. The server does this at
every start; run it after making a new KEK primary on a running server, before
dropping the old KEK from seal.old_kek_files (see docs/secrets.md).`,
		Example: "  mandate secret rewrap\n  mandate secret rewrap -o json | jq .unusable",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var rep secrets.RewrapReport
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/secrets/rewrap", nil, map[string]any{}, &rep); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Resealed %d secret(s) and %d lease credential(s) under %s\n", rep.Secrets, rep.Leases, rep.PrimaryKEK)
			if len(rep.Unusable) > 0 {
				fmt.Fprintf(a.stdout, "Unusable (their stored value does not open; put them again): %v\n", rep.Unusable)
			}
			return nil
		},
	}
}

func (a *app) secretLeaseListCmd(cf *clientFlags) *cobra.Command {
	var (
		taskID, secret, status string
		failed                 bool
		limit                  int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List leases, newest first",
		Long: `List leases, newest first. --failed shows the leases whose revocation failed
(their database was unreachable): they are retried with backoff, and their last
error and next attempt are shown.`,
		Example: `  mandate secret lease list
  mandate secret lease list --task tsk_…
  mandate secret lease list --failed
  mandate secret lease list --secret app-db --status active -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			q := url.Values{}
			setIf(q, "task", taskID)
			setIf(q, "secret", secret)
			setIf(q, "status", status)
			if failed {
				q.Set("failed", "true")
			}
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var resp struct {
				Leases []*secrets.Lease `json:"leases"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/leases", q, nil, &resp); err != nil || printed {
				return err
			}
			if len(resp.Leases) == 0 {
				fmt.Fprintln(a.stderr, "No leases.")
				return nil
			}
			now := time.Now()
			tw := newTable(a.stdout)
			if failed {
				tw.row("ID", "SECRET", "TASK", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR")
				for _, l := range resp.Leases {
					tw.row(string(l.ID), string(l.Secret), string(l.Task), strconv.Itoa(l.Attempts), fmtTime(l.NextAttempt), truncate(l.LastError, 60))
				}
				return tw.flush()
			}
			tw.row("ID", "SECRET", "TASK", "STATUS", "ISSUED", "EXPIRES", "REASON")
			for _, l := range resp.Leases {
				tw.row(string(l.ID), string(l.Secret), string(l.Task), string(l.Status), fmtTime(l.IssuedAt), fmtExpiry(l.ExpiresAt, now), truncate(l.Reason, 40))
			}
			return tw.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&taskID, "task", "", "only this task's leases")
	f.StringVar(&secret, "secret", "", "only this secret's leases")
	f.StringVar(&status, "status", "", "only leases with this status: active, revoked, expired or failed")
	f.BoolVar(&failed, "failed", false, "only leases whose revocation failed and is being retried")
	f.IntVar(&limit, "limit", 0, "at most this many leases (0: all)")
	return cmd
}

func targetStrings(ts []secrets.Target) []string {
	out := make([]string, len(ts))
	for i, t := range ts {
		out[i] = t.String()
	}
	return out
}

func printSecret(w io.Writer, s *secrets.Secret) error {
	tw := newTable(w)
	tw.row("Name:", string(s.Name))
	tw.row("Kind:", string(s.Kind))
	tw.row("Description:", s.Description)
	tw.row("Version:", strconv.FormatInt(s.Version, 10))
	tw.list("Deliver:", targetStrings(s.Deliver))
	var labels []string
	for k, v := range s.Labels {
		labels = append(labels, k+"="+v)
	}
	tw.list("Labels:", labels)
	if s.Postgres != nil {
		tw.list("Grants:", s.Postgres.Grants)
		tw.list("Member of:", s.Postgres.MemberOf)
	}
	tw.row("Created:", fmtTime(s.CreatedAt))
	tw.row("Updated:", fmtTime(s.UpdatedAt)+" by "+s.UpdatedBy)
	return tw.flush()
}
