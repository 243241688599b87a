package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/approval"
)

func (a *app) approvalCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "approval",
		Short: "Review and decide held actions (step-up approvals)",
		Long: `Review and decide held actions. When policy answers approval_required — a
supervised agent's write, an autonomous agent's deploy, destructive or
privileged call, or secret use — mandate opens an approval request bound to
the exact call: the agent, task, action, resource and the digest of its
arguments. The enforcement point holds the call (approvals.wait_timeout); an
approval lifts exactly that call once (--reach once, the default), or this
action on this resource with any arguments for the rest of the task
(--reach task). Requests expire after approvals.expire_after.

Who may decide is policy (approval.decide; by default the agent's owner or a
member of approvals.approvers, and nobody approves an autonomous agent's
step-up for a task on their own behalf). Deciding needs a person: over the
local socket, the server's approvals.local_person; over TCP, an admin token
configured with person=<id>. Every request, decision and refusal is in the
audit log.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, &cf)
	cmd.AddCommand(a.approvalListCmd(&cf), a.approvalShowCmd(&cf), a.approvalDecideCmd(&cf, true), a.approvalDecideCmd(&cf, false))
	return cmd
}

func (a *app) approvalListCmd(cf *clientFlags) *cobra.Command {
	var status, taskID, agent, owner string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List approval requests (pending ones by default)",
		Example: `  mandate approval list
  mandate approval list --status approved --task tsk_…
  mandate approval list --owner alice@example.com --status all -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			q := url.Values{}
			if status != "all" {
				setIf(q, "status", status)
			}
			setIf(q, "task", taskID)
			setIf(q, "agent", agent)
			setIf(q, "owner", owner)
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var resp struct {
				Approvals []*approval.Request `json:"approvals"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/approvals", q, nil, &resp); err != nil || printed {
				return err
			}
			if len(resp.Approvals) == 0 {
				fmt.Fprintln(a.stderr, "No approval requests.")
				return nil
			}
			now := time.Now()
			tw := newTable(a.stdout)
			tw.row("ID", "STATUS", "AGENT", "ACTION", "RESOURCE", "TASK", "NEEDS", "EXPIRES")
			for _, r := range resp.Approvals {
				tw.row(string(r.ID), string(r.Status), agentName(r.Agent), r.Action, truncate(r.Resource, 40), string(r.Task),
					strings.Join(r.Approvals, ","), fmtExpiry(r.ExpiresAt, now))
			}
			return tw.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&status, "status", "pending", "pending, approved, denied, expired, cancelled, or all")
	f.StringVar(&taskID, "task", "", "only requests of this task")
	f.StringVar(&agent, "agent", "", "only requests of this agent (SPIFFE ID)")
	f.StringVar(&owner, "owner", "", "only requests of agents this person owns")
	f.IntVar(&limit, "limit", 0, "at most this many (0: up to 1000)")
	return cmd
}

// approvalView is what show prints: the request and its full arguments.
type approvalView struct {
	approval.Request
	Arguments json.RawMessage `json:"arguments"`
}

func (a *app) approvalShowCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "show ID",
		Short: "Show one approval request with its full arguments",
		Long: `Show one approval request: who asked, for which task and on whose behalf,
the policies that held it, and the call's full arguments (canonical JSON) —
what an approval would let through. The audit log keeps only their digest.`,
		Example: "  mandate approval show apr_…\n  mandate approval show apr_… -o json | jq .arguments",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var v approvalView
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/approvals/"+url.PathEscape(args[0]), nil, nil, &v); err != nil || printed {
				return err
			}
			return printApproval(a.stdout, &v)
		},
	}
}

func (a *app) approvalDecideCmd(cf *clientFlags, approve bool) *cobra.Command {
	var reason, reach, digest string
	verb, short := "deny", "Deny a held action: the waiting call fails with your reason"
	example := "  mandate approval deny apr_… --reason 'not during the freeze'"
	if approve {
		verb, short = "approve", "Approve a held action: the waiting call proceeds"
		example = `  mandate approval approve apr_… --reason 'staging deploy, expected'
  # every call of this tool for the rest of the task, whatever its arguments
  mandate approval approve apr_… --reach task
  # only if the arguments are still the ones you reviewed
  mandate approval approve apr_… --digest hmac-sha256:…`
	}
	cmd := &cobra.Command{
		Use:   verb + " ID",
		Short: short,
		Long: short + `.

The decision is the server's policy's too (approval.decide): it refuses a
person who may not decide the request, an unknown, expired or already
decided request, a --digest other than the request's, and an approval the
policy no longer asks for. Decide as the person your credential names (see
'mandate approval --help').`,
		Example: example,
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			body := map[string]string{"reason": reason}
			if approve {
				if _, err := approval.ParseReach(reach); err != nil {
					return usageError{fmt.Errorf("--reach: want once or task, got %q", reach)}
				}
				body["reach"], body["digest"] = reach, digest
			}
			var r approval.Request
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/approvals/"+url.PathEscape(args[0])+"/"+verb, nil, body, &r); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "%s is %s by %s", r.ID, r.Status, r.Decider)
			if r.Status == approval.StatusApproved {
				fmt.Fprintf(a.stdout, " (reach %s, until %s)", r.Reach, fmtTime(r.ApprovedUntil))
			}
			fmt.Fprintln(a.stdout)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&reason, "reason", "", "why (recorded in the audit log and shown to the agent on a denial)")
	if approve {
		f.StringVar(&reach, "reach", "once", "once (this call) or task (this action on this resource, any arguments, for the rest of the task)")
		f.StringVar(&digest, "digest", "", "refuse unless the request's arguments digest is this one (from 'approval show')")
	}
	return cmd
}

func printApproval(w io.Writer, v *approvalView) error {
	now := time.Now()
	tw := newTable(w)
	tw.row("ID:", string(v.ID))
	tw.row("Status:", string(v.Status))
	tw.row("Agent:", v.Agent+" ("+v.AgentTier+", owner "+v.AgentOwner+")")
	tw.row("Task:", string(v.Task))
	tw.row("On behalf of:", v.OnBehalfOf)
	if len(v.Chain) > 1 {
		tw.list("Delegation chain:", v.Chain)
	}
	tw.row("Action:", v.Action+" "+v.Resource)
	tw.list("Held by:", v.Reasons)
	tw.row("Needs:", strings.Join(v.Approvals, ", "))
	tw.row("Digest:", v.ArgsDigest)
	tw.row("Created:", fmtTime(v.CreatedAt))
	if v.Status == approval.StatusPending {
		tw.row("Expires:", fmtExpiry(v.ExpiresAt, now))
	}
	if v.Decider != "" {
		tw.row("Decided:", v.Decider+" at "+fmtTime(v.DecidedAt))
	}
	if v.Reason != "" {
		tw.row("Reason:", v.Reason)
	}
	if v.Status == approval.StatusApproved {
		tw.row("Reach:", string(v.Reach)+" until "+fmtTime(v.ApprovedUntil))
	}
	if err := tw.flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nArguments:")
	return printJSON(w, v.Arguments)
}

// agentName shortens a SPIFFE ID to the agent's name.
func agentName(id string) string {
	if i := strings.LastIndex(id, "/agent/"); i >= 0 {
		return id[i+len("/agent/"):]
	}
	return id
}
