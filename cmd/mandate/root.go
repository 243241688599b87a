package main

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
)

// app is what every command needs from its environment; tests build one
// with buffers and a fake environment.
type app struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

// usageError is a mistake in the command line (exit status 2).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// run executes the mandate command line args and returns the exit status:
// 0 on success, 1 when the command failed, 2 for a usage mistake.
func run(ctx context.Context, args []string, stdout, stderr io.Writer, getenv func(string) string) int {
	a := &app{stdout: stdout, stderr: stderr, getenv: getenv}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return 0
	}
	if code, ok := silentExit(err); ok { // a hook: its reason is on stderr already
		return code
	}
	fmt.Fprintf(stderr, "mandate: %v\n", err)
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "Run 'mandate --help' (or '<command> --help') for usage.\n")
		return 2
	}
	return 1
}

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:   "mandate",
		Short: "Runtime governance for AI agents",
		Long: `mandate gives every AI agent a governed workload identity (an accountable
owner, an escalation contact, a trust tier) and binds its work to task
mandates: short-lived, task-bound OAuth tokens that say which agent acts, on
whose behalf, for what purpose, with what scope, until when.

Start the server with 'mandate serve'; manage agents and tasks with
'mandate agent' and 'mandate task', which talk to the server's admin API
over its local socket (or --server URL --token TOKEN for a remote one).`,
		SilenceUsage:  true,
		SilenceErrors: true,
		Args:          cobra.ArbitraryArgs,
		RunE:          groupRun,
	}
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(a.serveCmd(), a.agentCmd(), a.taskCmd(), a.adminCmd(), a.versionCmd())
	root.AddCommand(a.auditCmd())
	root.AddCommand(a.policyCmd())
	root.AddCommand(a.toolCmd(), a.mcpCmd())
	root.AddCommand(a.secretCmd())
	root.AddCommand(a.hookCmd(), a.runCmd())
	root.AddCommand(a.approvalCmd(), a.ownerCmd())
	root.AddCommand(a.egressCmd())
	root.CompletionOptions.HiddenDefaultCmd = true
	return root
}

// exactArgs is cobra.ExactArgs with a message naming the arguments and
// the usage exit status.
func exactArgs(names ...string) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != len(names) {
			return usageError{fmt.Errorf("%s: want %d argument(s) (%v), got %d", cmd.CommandPath(), len(names), names, len(args))}
		}
		return nil
	}
}

// groupRun is the RunE of commands that only group others: without
// arguments it prints help; an argument is an unknown command.
func groupRun(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())}
	}
	return cmd.Help()
}

func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usageError{fmt.Errorf("%s: unexpected argument %q", cmd.CommandPath(), args[0])}
	}
	return nil
}
