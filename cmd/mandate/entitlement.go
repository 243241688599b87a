package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// entitlementFlags are the flags that set an agent's entitlement.
type entitlementFlags struct {
	scope          []string
	maxSensitivity string
	maxTaskTTL     time.Duration
}

const entitlementHelp = `An agent's entitlement is the ceiling of every task it may ever hold:
--entitle PATTERN (repeatable) is the widest scope, --max-sensitivity the
highest data sensitivity (public, internal, confidential, restricted) and
--max-task-ttl the longest lifetime. Every task, whether an admin starts it,
the agent starts it itself by token exchange, or another agent delegates it,
must fit inside: each of its scope patterns must be covered by an entitled
pattern (compared by what they match, not how they are spelled), and its
sensitivity and lifetime may not be higher. An agent without an entitlement
cannot start tasks by itself or be delegated to; only an admin can start its
tasks.`

func (e *entitlementFlags) add(f *pflag.FlagSet) {
	f.StringArrayVar(&e.scope, "entitle", nil, "entitle the agent to tasks within ACTION:RESOURCE (repeatable), e.g. 'file.read:/repo/**'")
	f.StringVar(&e.maxSensitivity, "max-sensitivity", "", "highest sensitivity its tasks may have: public, internal, confidential or restricted")
	f.DurationVar(&e.maxTaskTTL, "max-task-ttl", 0, "longest lifetime its tasks may have, e.g. 8h")
}

// given reports whether any entitlement flag was set.
func (e *entitlementFlags) given() bool {
	return len(e.scope) > 0 || e.maxSensitivity != "" || e.maxTaskTTL != 0
}

// entitlement builds the entitlement the flags describe. All three parts
// are required: a ceiling is never filled in by a default.
func (e *entitlementFlags) entitlement() (*task.Entitlement, error) {
	if len(e.scope) == 0 || e.maxSensitivity == "" || e.maxTaskTTL == 0 {
		return nil, usageError{errors.New("an entitlement needs --entitle (at least one), --max-sensitivity and --max-task-ttl")}
	}
	sc, err := task.ParseScopeList(e.scope)
	if err != nil {
		return nil, usageError{fmt.Errorf("--entitle: %w", err)}
	}
	sens, err := task.ParseSensitivity(e.maxSensitivity)
	if err != nil {
		return nil, usageError{fmt.Errorf("--max-sensitivity: %w", err)}
	}
	return &task.Entitlement{Scope: sc, MaxSensitivity: sens, MaxTaskTTL: e.maxTaskTTL}, nil
}

// agentView is an agent as the admin API shows it, with its entitlement
// when the response carries one (absent: not shown; null: none).
type agentView struct {
	identity.Agent
	Entitlement json.RawMessage `json:"entitlement"`
}

// printEntitlement adds an agent's entitlement rows to tw.
func printEntitlement(tw *table, raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	if string(raw) == "null" {
		tw.row("Entitlement:", "none (cannot start tasks by itself or be delegated to)")
		return nil
	}
	var e task.Entitlement
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("decoding the server's response: entitlement: %w", err)
	}
	tw.list("Entitlement:", e.Scope.Strings())
	tw.row("Max sensitivity:", string(e.MaxSensitivity))
	tw.row("Max task TTL:", e.MaxTaskTTL.String())
	return nil
}

func (a *app) agentUpdateCmd(cf *clientFlags) *cobra.Command {
	var (
		ef  entitlementFlags
		req admin.UpdateAgentRequest
	)
	cmd := &cobra.Command{
		Use:   "update NAME",
		Short: "Change an agent's entitlement",
		Long: `Change the entitlement of the agent NAME (a name or SPIFFE ID).

` + entitlementHelp + `

The new entitlement replaces the old one whole: give --entitle,
--max-sensitivity and --max-task-ttl together, or --remove-entitlement.
Lowering an entitlement narrows nothing that is running: tasks already
started keep their scope until they end. With --revoke-exceeding, every
active task of the agent that does not fit the new entitlement is revoked at
once, with the tasks delegated from it, and its tokens are refused; the tasks
that fit keep running. Each change is recorded in the audit log as
agent.entitlement_changed with the old and new ceilings.`,
		Example: `  # Narrow build-bot to reading the repository, and stop what no longer fits
  mandate agent update build-bot \
      --entitle 'file.read:/repo/**' --max-sensitivity internal --max-task-ttl 8h \
      --revoke-exceeding --reason 'least privilege review'

  # Take the entitlement away: only admins start its tasks from now on
  mandate agent update build-bot --remove-entitlement`,
		Args: exactArgs("NAME"),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case req.RemoveEntitlement && ef.given():
				return usageError{errors.New("--remove-entitlement cannot be combined with --entitle, --max-sensitivity or --max-task-ttl")}
			case req.RemoveEntitlement && req.RevokeExceeding:
				return usageError{errors.New("--revoke-exceeding needs an entitlement to measure tasks against; to stop all of an agent's tasks, suspend it")}
			case !req.RemoveEntitlement:
				e, err := ef.entitlement()
				if err != nil {
					return err
				}
				req.Entitlement = e
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var res struct {
				Agent       identity.Agent  `json:"agent"`
				Entitlement json.RawMessage `json:"entitlement"`
				Revoked     []task.ID       `json:"revoked"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodPatch, "/admin/v1/agents/"+agentPathRef(args[0]), nil, req, &res); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Updated the entitlement of %s\n\n", res.Agent.ID)
			if err := printAgent(a.stdout, &agentView{Agent: res.Agent, Entitlement: res.Entitlement}); err != nil {
				return err
			}
			switch {
			case len(res.Revoked) > 0:
				fmt.Fprintf(a.stdout, "\nRevoked %s that did not fit:\n", plural(len(res.Revoked), "task"))
				for _, id := range res.Revoked {
					fmt.Fprintf(a.stdout, "  %s\n", id)
				}
			case req.RevokeExceeding:
				fmt.Fprintln(a.stdout, "\nEvery active task fits; none was revoked.")
			}
			return nil
		},
	}
	f := cmd.Flags()
	ef.add(f)
	f.BoolVar(&req.RemoveEntitlement, "remove-entitlement", false, "take the entitlement away: the agent can no longer start tasks by itself")
	f.BoolVar(&req.RevokeExceeding, "revoke-exceeding", false, "revoke the agent's active tasks that do not fit the new entitlement")
	f.StringVar(&req.Reason, "reason", "", "why (recorded in the audit log)")
	f.SortFlags = false
	return cmd
}
