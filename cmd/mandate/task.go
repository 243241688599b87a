package main

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/task"
)

func (a *app) taskCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "task",
		Short: "Start and manage tasks (mandates)",
		Long: `Start and manage tasks: a task is a mandate for one agent to do one piece of
work, on behalf of a human, for a stated purpose, within a scope of action
and resource patterns, under a data-sensitivity ceiling, until an expiry and
within budgets. The agent obtains short-lived task tokens for it by OAuth
token exchange with the task's id. Ending or revoking a task ends its
delegated sub-tasks and refuses all their tokens at once.

These commands talk to the server's admin API over the local socket in the
data directory, or to --server URL with --token.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, &cf)
	cmd.AddCommand(a.taskStartCmd(&cf), a.taskListCmd(&cf), a.taskShowCmd(&cf),
		a.taskFinishCmd(&cf, "end", "End a task (work done) and everything delegated from it",
			"End a task: the work is done. Its delegated sub-tasks end with it, and every token of\nthose tasks is refused from this moment."),
		a.taskFinishCmd(&cf, "revoke", "Revoke a task and everything delegated from it",
			"Revoke a task: stop it now (a runaway agent, a mistake). Its delegated sub-tasks are\nrevoked with it, and every token of those tasks is refused from this moment."),
	)
	return cmd
}

func (a *app) taskStartCmd(cf *clientFlags) *cobra.Command {
	var (
		req      admin.StartTaskRequest
		ttl      time.Duration
		maxActs  int64
		maxWrite int64
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Start a task for an agent",
		Long: `Start a task for an agent, on behalf of a human.

Scope entries are ACTION:RESOURCE patterns, e.g. file.read:/repo/** or
tool.call:github/*; the task's tokens allow nothing outside them. --ttl is
capped by the server's tasks.max_ttl (default: tasks.default_ttl).
--sensitivity is the highest data sensitivity the task may touch: public,
internal, confidential or restricted.

The agent then gets a task token by token exchange with task_id=<id>.`,
		Example: `  mandate task start --agent build-bot --on-behalf-of alice@example.com \
      --purpose 'fix the flaky test in repo X' \
      --scope 'file.read:/repo/**' --scope 'file.write:/repo/src/**' \
      --sensitivity internal --ttl 30m --max-actions 500 --max-writes 50

  # Print only the new task's id
  mandate task start --agent build-bot --on-behalf-of alice@example.com \
      --purpose triage --scope 'tool.call:github/*' -o json | jq -r .id`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			if ttl < 0 || maxActs < 0 || maxWrite < 0 {
				return usageError{fmt.Errorf("--ttl, --max-actions and --max-writes must not be negative")}
			}
			if ttl > 0 {
				req.TTL = ttl.String()
			}
			req.Budget = task.Budget{MaxActions: maxActs, MaxWrites: maxWrite}
			var t task.Task
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/tasks", nil, req, &t); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Started %s\n\n", t.ID)
			return printTask(a.stdout, &t)
		},
	}
	f := cmd.Flags()
	f.StringVar(&req.Agent, "agent", "", "the agent's name or SPIFFE ID (required)")
	f.StringVar(&req.OnBehalfOf, "on-behalf-of", "", "the human the work is for, as their identity provider subject, e.g. alice@example.com (required)")
	f.StringVar(&req.Purpose, "purpose", "", "what the work is for, in words (required)")
	f.StringArrayVar(&req.Scope, "scope", nil, "ACTION:RESOURCE pattern the task may act on (repeatable; at least one)")
	f.StringVar(&req.Sensitivity, "sensitivity", "", "data-sensitivity ceiling: public, internal, confidential or restricted (default: the server's)")
	f.DurationVar(&ttl, "ttl", 0, "task lifetime, e.g. 30m (default: the server's tasks.default_ttl)")
	f.Int64Var(&maxActs, "max-actions", 0, "budget: most actions the task may take (0: unlimited)")
	f.Int64Var(&maxWrite, "max-writes", 0, "budget: most write actions the task may take (0: unlimited)")
	f.SortFlags = false
	return cmd
}

func (a *app) taskListCmd(cf *clientFlags) *cobra.Command {
	var agent, status, parent string
	var limit int
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tasks",
		Example: `  mandate task list
  mandate task list --agent build-bot --status active
  mandate task list --parent tsk_… -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			q := url.Values{}
			setIf(q, "agent", agent)
			setIf(q, "status", status)
			setIf(q, "parent", parent)
			if limit > 0 {
				q.Set("limit", strconv.Itoa(limit))
			}
			var resp struct {
				Tasks []*task.Task `json:"tasks"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/tasks", q, nil, &resp); err != nil || printed {
				return err
			}
			if len(resp.Tasks) == 0 {
				fmt.Fprintln(a.stderr, "No tasks.")
				return nil
			}
			now := time.Now()
			tw := newTable(a.stdout)
			tw.row("ID", "AGENT", "STATUS", "ON BEHALF OF", "PURPOSE", "DEPTH", "EXPIRES")
			for _, t := range resp.Tasks {
				tw.row(string(t.ID), t.Agent.Name(), string(t.Status), t.OnBehalfOf, truncate(t.Purpose, 40),
					strconv.Itoa(t.Depth), fmtExpiry(t.ExpiresAt, now))
			}
			return tw.flush()
		},
	}
	f := cmd.Flags()
	f.StringVar(&agent, "agent", "", "only tasks of this agent (name or SPIFFE ID)")
	f.StringVar(&status, "status", "", "only tasks with this status: active, ended, revoked or expired")
	f.StringVar(&parent, "parent", "", "only tasks delegated from this task")
	f.IntVar(&limit, "limit", 0, "at most this many tasks (0: all)")
	return cmd
}

func (a *app) taskShowCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "show ID",
		Short:   "Show one task",
		Example: "  mandate task show tsk_…\n  mandate task show tsk_… -o json | jq .used",
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var t task.Task
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/tasks/"+url.PathEscape(args[0]), nil, nil, &t); err != nil || printed {
				return err
			}
			return printTask(a.stdout, &t)
		},
	}
}

func (a *app) taskFinishCmd(cf *clientFlags, verb, short, long string) *cobra.Command {
	var reason string
	cmd := &cobra.Command{
		Use:     verb + " ID",
		Short:   short,
		Long:    long,
		Example: fmt.Sprintf("  mandate task %s tsk_… --reason 'done'", verb),
		Args:    exactArgs("ID"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var resp struct {
				Task     task.Task `json:"task"`
				Finished []task.ID `json:"finished"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/tasks/"+url.PathEscape(args[0])+"/"+verb,
				nil, map[string]string{"reason": reason}, &resp); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "%s is %s\n", resp.Task.ID, resp.Task.Status)
			var others []string
			for _, id := range resp.Finished {
				if id != resp.Task.ID {
					others = append(others, string(id))
				}
			}
			if len(others) > 0 {
				fmt.Fprintf(a.stdout, "Also finished %s delegated from it: %s\n", plural(len(others), "task"), strings.Join(others, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&reason, "reason", "", "why (recorded in the audit log)")
	return cmd
}

func printTask(w io.Writer, t *task.Task) error {
	now := time.Now()
	tw := newTable(w)
	tw.row("ID:", string(t.ID))
	tw.row("Agent:", t.Agent.String())
	tw.row("On behalf of:", t.OnBehalfOf)
	if t.Principal != "" && t.Principal != t.OnBehalfOf {
		tw.row("Principal:", t.Principal)
	}
	tw.row("Purpose:", t.Purpose)
	tw.list("Scope:", t.Scope.Strings())
	tw.row("Sensitivity:", string(t.Sensitivity))
	if t.Taint != "" {
		tw.row("Taint:", string(t.Taint)+" (highest sensitivity the task has been exposed to)")
	}
	tw.row("Budget:", fmt.Sprintf("actions %d/%s, writes %d/%s", t.Used.Actions, limitText(t.Budget.MaxActions), t.Used.Writes, limitText(t.Budget.MaxWrites)))
	tw.row("Status:", string(t.Status))
	if t.StatusReason != "" {
		tw.row("Reason:", t.StatusReason)
	}
	if t.Parent != "" {
		tw.row("Parent:", string(t.Parent))
	}
	tw.row("Depth:", strconv.Itoa(t.Depth))
	actors := make([]string, 0, len(t.Actors))
	for _, id := range t.Actors {
		actors = append(actors, id.String())
	}
	if len(actors) > 1 {
		tw.list("Delegation chain:", actors)
	}
	tw.row("Created:", fmtTime(t.CreatedAt))
	tw.row("Expires:", fmtExpiry(t.ExpiresAt, now))
	if !t.EndedAt.IsZero() {
		tw.row("Ended:", fmtTime(t.EndedAt))
	}
	return tw.flush()
}

func limitText(n int64) string {
	if n == 0 {
		return "unlimited"
	}
	return strconv.FormatInt(n, 10)
}
