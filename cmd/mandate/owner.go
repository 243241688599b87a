package main

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/identity"
)

func (a *app) ownerCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "owner",
		Short: "Act on the people who own agents",
		Args:  cobra.ArbitraryArgs,
		RunE:  groupRun,
	}
	a.addClientFlags(cmd, &cf)
	var reason string
	off := &cobra.Command{
		Use:   "offboard PERSON",
		Short: "Take a departing person out of every agent they own",
		Long: `Take a departing person out of every agent they own, in one command:
every active agent they own is suspended (its tokens are refused at once),
which revokes its tasks and everything delegated from them; the pending
approval requests of their agents are cancelled; and every agent that needs
a new owner is listed. Each change is its own audit event (agent.suspended,
task.revoked, approval.cancelled). Running it again changes nothing more.

The listed agents stay suspended until someone takes them over: mandate has
no ownership transfer yet, so register a replacement under its new owner
('mandate agent register'), or resume one ('mandate agent resume NAME') only
once its owner of record may answer for it.`,
		Example: `  mandate owner offboard alice@example.com --reason 'left the company'
  mandate owner offboard alice@example.com -o json | jq -r '.need_new_owner[]'`,
		Args: exactArgs("PERSON"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(&cf)
			if err != nil {
				return err
			}
			var res admin.OffboardResult
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/owners/"+url.PathEscape(args[0])+"/offboard",
				nil, map[string]string{"reason": reason}, &res); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Offboarded %s: suspended %s, revoked %s, cancelled %s.\n", res.Person,
				plural(len(res.Suspended), "agent"), plural(len(res.RevokedTasks), "task"), plural(len(res.CancelledApprovals), "pending approval"))
			if len(res.NeedNewOwner) > 0 {
				fmt.Fprintf(a.stdout, "Need a new owner: %s\n", ids(res.NeedNewOwner))
			}
			return nil
		},
	}
	off.Flags().StringVar(&reason, "reason", "", "why (recorded with every change)")
	cmd.AddCommand(off)
	return cmd
}

func ids(xs []identity.ID) string {
	out := make([]string, len(xs))
	for i, x := range xs {
		out[i] = x.Name()
	}
	return strings.Join(out, ", ")
}
