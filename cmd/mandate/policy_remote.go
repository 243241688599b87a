package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
)

// The commands on the server's policy admin API (docs/policies.md, "Admin
// API"). API-managed documents carry an ETag (their version): put and
// delete can be made conditional on it, so that two admins editing the
// same document do not silently overwrite each other.

func (a *app) policyListCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "List the server's live policies",
		Long: `List the policies of the server's live set: the defaults, the policy
directory's and the API-managed documents' (positions api:NAME:LINE:COL).
'mandate policy show NAME' prints an API-managed document with its ETag.`,
		Example: `  mandate policy list
  mandate policy list --server https://mandate.example.com:8443 --token "$MANDATE_ADMIN_TOKEN" -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), "GET", "/admin/v1/policies", nil, nil)
			if err != nil {
				return err
			}
			return a.printPolicyList(c, data)
		},
	}
}

func (a *app) printPolicyList(c *client, data []byte) error {
	if c.output == "json" {
		return printJSON(a.stdout, data)
	}
	var pl struct {
		Policies  []policy.Info `json:"policies"`
		LastError string        `json:"last_error"`
	}
	if err := json.Unmarshal(data, &pl); err != nil {
		return err
	}
	t := newTable(a.stdout)
	t.row("ID", "EFFECT", "APPROVAL", "ACTIONS", "POSITION")
	for _, p := range pl.Policies {
		acts := strings.Join(p.Actions, ",")
		if len(p.Actions) == len(policy.Actions) {
			acts = "*"
		}
		t.row(p.ID, p.Effect, p.Approval, truncate(acts, 40), p.Position)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if pl.LastError != "" {
		fmt.Fprintf(a.stdout, "\nthe last reload failed (the set above is the last good one):\n%s\n", pl.LastError)
	}
	return nil
}

func (a *app) policyShowCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show NAME",
		Short: "Print an API-managed policy document and its ETag",
		Long: `Print the API-managed policy document NAME: its ETag, when and by whom it
was last changed, the digest of its text, then the Cedar text itself. Pass
the ETag to 'policy put --if-match' or 'policy delete --if-match' to change
the document only if nobody else has changed it since. With -o json it
prints the API's JSON, whose version is the ETag's number.`,
		Example: `  mandate policy show no-prod-writes
  mandate policy show no-prod-writes -o json`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, hdr, err := c.doWithHeaders(cmd.Context(), "GET", policyPath(args[0]), nil, nil, nil)
			if err != nil {
				return err
			}
			if c.output == "json" {
				return printJSON(a.stdout, data)
			}
			var doc httpapi.PolicyDocument
			if err := json.Unmarshal(data, &doc); err != nil {
				return fmt.Errorf("decoding the server's response: %w", err)
			}
			t := newTable(a.stdout)
			t.row("Name:", doc.Name)
			t.row("ETag:", hdr.Get("ETag"))
			t.row("Updated:", fmtTime(doc.UpdatedAt)+" by "+doc.UpdatedBy)
			t.row("Digest:", doc.Digest)
			if err := t.flush(); err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "\n%s\n", strings.TrimRight(doc.Text, "\n"))
			return err
		},
	}
}

func (a *app) policyPutCmd(cf *clientFlags) *cobra.Command {
	var ifMatch string
	var create bool
	cmd := &cobra.Command{
		Use:   "put NAME FILE",
		Short: "Add or replace an API-managed policy document on the server",
		Long: `Store FILE (Cedar policies; - for stdin) as the API-managed policy document
NAME on the server. The server compiles its whole policy set with the new
document first and refuses it, changing nothing, if it does not compile.
The new document's ETag is printed after the live policies.

To avoid overwriting someone else's change, make the put conditional:
  --if-match ETAG   replace the document only if it is still at ETAG (from
                    'policy show' or the previous put); --if-match '*'
                    replaces it only if it exists
  --create          store the document only if NAME does not exist yet
If the condition does not hold, nothing changes and the error shows the
document's current ETag. Without a condition the put replaces whatever is
stored, and is refused only if another change lands while it is made.`,
		Example: `  mandate policy put no-prod-writes ./no-prod-writes.cedar
  mandate policy put --create no-prod-writes ./no-prod-writes.cedar
  mandate policy show no-prod-writes              # ETag: "3"
  mandate policy put --if-match 3 no-prod-writes ./no-prod-writes.cedar`,
		Args: exactArgs("NAME", "FILE"),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			var text []byte
			var err error
			if args[1] == "-" {
				text, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), policy.MaxSourceSize+1))
			} else {
				text, err = os.ReadFile(args[1])
			}
			if err != nil {
				return err
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			cond := http.Header{}
			switch {
			case create:
				cond.Set("If-None-Match", "*")
			case ifMatch != "":
				cond.Set("If-Match", quoteETag(ifMatch))
			}
			data, hdr, err := c.doWithHeaders(cmd.Context(), "PUT", policyPath(name), nil, cond, map[string]string{"text": string(text)})
			if err != nil {
				return explainPolicyConflict(cmd.Context(), c, name, "put", cond, err)
			}
			if err := a.printPolicyList(c, data); err != nil {
				return err
			}
			if c.output == "json" {
				return nil
			}
			_, err = fmt.Fprintf(a.stdout, "\npolicy %s stored: ETag %s\n", name, hdr.Get("ETag"))
			return err
		},
	}
	cmd.Flags().StringVar(&ifMatch, "if-match", "", `change the document only if its ETag is still ETAG (quotes optional), or '*': only if it exists`)
	cmd.Flags().BoolVar(&create, "create", false, "store the document only if NAME does not exist yet (If-None-Match: *)")
	cmd.MarkFlagsMutuallyExclusive("if-match", "create")
	return cmd
}

func (a *app) policyDeleteCmd(cf *clientFlags) *cobra.Command {
	var ifMatch string
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete an API-managed policy document on the server",
		Long: `Delete the API-managed policy document NAME and reload the policy set.
With --if-match ETAG it is deleted only if it is still at ETAG (from 'policy
show'); otherwise nothing changes and the error shows its current ETag.`,
		Example: `  mandate policy delete no-prod-writes
  mandate policy delete --if-match 3 no-prod-writes`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			cond := http.Header{}
			if ifMatch != "" {
				cond.Set("If-Match", quoteETag(ifMatch))
			}
			if _, _, err := c.doWithHeaders(cmd.Context(), "DELETE", policyPath(args[0]), nil, cond, nil); err != nil {
				return explainPolicyConflict(cmd.Context(), c, args[0], "delete", cond, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&ifMatch, "if-match", "", `delete the document only if its ETag is still ETAG (quotes optional), or '*': any revision`)
	return cmd
}

func (a *app) policyReloadCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "reload",
		Short:   "Make the server reload its policies now",
		Example: `  mandate policy reload`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			data, err := c.do(cmd.Context(), "POST", "/admin/v1/policies/reload", nil, nil)
			if err != nil {
				return err
			}
			return a.printPolicyList(c, data)
		},
	}
}

func policyPath(name string) string { return "/admin/v1/policies/" + name }

// quoteETag turns an ETag as a user types it (3, or "3" when the shell
// kept the quotes) into the header value; * stays as it is.
func quoteETag(s string) string {
	if s == "*" || strings.HasPrefix(s, `"`) {
		return s
	}
	return `"` + s + `"`
}

// explainPolicyConflict turns the server's 412 (a precondition that no
// longer holds) and 409 (a concurrent change) answers to a change of
// document name into errors that say what happened and what to do; the
// 412 one shows the document's current ETag. Other errors pass unchanged.
func explainPolicyConflict(ctx context.Context, c *client, name, op string, cond http.Header, err error) error {
	notDone := "policy " + name + " was not changed"
	if op == "delete" {
		notDone = "policy " + name + " was not deleted"
	}
	switch apiStatus(err) {
	case http.StatusConflict:
		return fmt.Errorf("%s: another change to it landed while this %s was being made (409 Conflict); check it with 'mandate policy show %s' and retry", notDone, op, name)
	case http.StatusPreconditionFailed:
	default:
		return err
	}
	_, hdr, getErr := c.doWithHeaders(ctx, "GET", policyPath(name), nil, nil, nil)
	current := hdr.Get("ETag")
	switch {
	case apiStatus(getErr) == http.StatusNotFound:
		return fmt.Errorf("%s: it does not exist (412 Precondition Failed on If-Match %s)", notDone, cond.Get("If-Match"))
	case getErr != nil:
		return fmt.Errorf("%s: %v (and reading its current ETag failed: %v)", notDone, err, getErr)
	case cond.Get("If-None-Match") != "":
		return fmt.Errorf("%s: it already exists, at ETag %s (412 Precondition Failed on --create); drop --create to replace it, or pass --if-match '%s'", notDone, current, current)
	}
	return fmt.Errorf("%s: someone changed it since ETag %s; it is now at ETag %s (412 Precondition Failed). Review it with 'mandate policy show %s', then retry with --if-match '%s'", notDone, cond.Get("If-Match"), current, name, current)
}
