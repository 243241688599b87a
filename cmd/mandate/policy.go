package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/policy"
)

func (a *app) policyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Validate, test and explain Cedar policies; manage the server's API policies",
		Long: `Policies decide every action an agent attempts (see docs/policies.md).

Offline (no server needed):
  validate DIR   parse and validate DIR's *.cedar against mandate's schema
  test [DIR]     run DIR's YAML test cases (default: the built-in default set)
  explain        decide one request and show which policies matched and why
  defaults DIR   write the default policy set and its tests into DIR
  schema         print mandate's Cedar schema

Against a server's admin API:
  list             the live policies
  show NAME        an API-managed document and its ETag
  put NAME FILE    add or replace a document (--if-match ETAG, --create)
  delete NAME      delete a document (--if-match ETAG)
  reload           reload the policy set now`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(a.policyValidateCmd(), a.policyTestCmd(), a.policyExplainCmd(), a.policyDefaultsCmd(), a.policySchemaCmd())
	var cf clientFlags
	remote := []*cobra.Command{a.policyListCmd(&cf), a.policyShowCmd(&cf), a.policyPutCmd(&cf), a.policyDeleteCmd(&cf), a.policyReloadCmd(&cf)}
	for _, c := range remote {
		a.addClientFlags(c, &cf)
		cmd.AddCommand(c)
	}
	return cmd
}

// loadPolicySet compiles dir's *.cedar (none when dir is ""), with the
// default set first when withDefaults is set.
func loadPolicySet(dir string, withDefaults bool) (*policy.Set, error) {
	var srcs []policy.Source
	if withDefaults {
		for _, s := range policy.DefaultSources() {
			s.Name = "defaults/" + s.Name
			srcs = append(srcs, s)
		}
	}
	if dir != "" {
		files, err := policy.LoadDir(dir)
		if err != nil {
			return nil, err
		}
		for i := range files {
			files[i].Name = filepath.Join(dir, files[i].Name)
		}
		srcs = append(srcs, files...)
	}
	return policy.Compile(srcs)
}

func (a *app) policyValidateCmd() *cobra.Command {
	var withDefaults bool
	cmd := &cobra.Command{
		Use:   "validate DIR",
		Short: "Parse and validate a directory of Cedar policies against mandate's schema",
		Long: `Parse every *.cedar file under DIR and validate each policy against mandate's
Cedar schema ('mandate policy schema'). Problems are printed one per line as
FILE:LINE:COL: message; the exit status is 1 if there are any.

With --defaults the default policy set is compiled too, as the server does
with policy.defaults (so duplicate @id annotations are caught).`,
		Example: `  mandate policy validate ./policies
  mandate policy validate --defaults ./policies`,
		Args: exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			set, err := loadPolicySet(args[0], withDefaults)
			var ce *policy.CompileError
			if errors.As(err, &ce) {
				for _, p := range ce.Problems {
					fmt.Fprintln(a.stdout, p.String())
				}
				return fmt.Errorf("%d problem(s) in %s", len(ce.Problems), args[0])
			}
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(a.stdout, "%d policies in %d file(s): OK\n", set.Len(), len(set.Sources()))
			return err
		},
	}
	cmd.Flags().BoolVar(&withDefaults, "defaults", false, "compile the default policy set with DIR's policies")
	return cmd
}

func (a *app) policyTestCmd() *cobra.Command {
	var withDefaults, verbose bool
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run YAML policy test cases (request → expected decision)",
		Long: `Compile DIR's *.cedar policies and run every *.yaml / *.yml test file under
DIR: each case is a request and the decision it must get (allow, deny or
approval_required), optionally with policies that must be among the
reasons. The exit status is 1 if any case fails.

Without DIR the built-in default policy set is tested with its own tests.

Test file format (see docs/policies.md):

  defaults:            # merged into every case's request
    agent: {id: "spiffe://example.org/agent/coder", tier: autonomous}
    task: {id: t1, in_scope: true, sensitivity: confidential}
  cases:
    - name: autonomous agent writes in scope
      request: {action: file.write, resource: {id: /repo/a.go}, risk: write}
      expect: allow
      reasons: [autonomous-act]`,
		Example: `  mandate policy test
  mandate policy test ./policies
  mandate policy test --defaults ./policies   # your policies on top of the defaults`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var set *policy.Set
			var tests fs.FS
			var err error
			if len(args) == 0 {
				set, err = loadPolicySet("", true)
				tests = policy.Defaults()
			} else {
				set, err = loadPolicySet(args[0], withDefaults)
				tests = os.DirFS(args[0])
			}
			var ce *policy.CompileError
			if errors.As(err, &ce) {
				for _, p := range ce.Problems {
					fmt.Fprintln(a.stdout, p.String())
				}
				return errors.New("the policies do not compile")
			}
			if err != nil {
				return err
			}
			return runPolicyTests(a.stdout, set, tests, verbose)
		},
	}
	cmd.Flags().BoolVar(&withDefaults, "defaults", false, "compile the default policy set with DIR's policies")
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print passing cases too")
	return cmd
}

// runPolicyTests runs the test files in tests against set and reports;
// it fails if any case fails or there are none.
func runPolicyTests(w io.Writer, set *policy.Set, tests fs.FS, verbose bool) error {
	results, err := policy.RunTests(set, tests)
	if err != nil {
		return err
	}
	if len(results) == 0 {
		return errors.New("no test cases found (*.yaml files with cases)")
	}
	failed := 0
	for _, r := range results {
		switch {
		case !r.Pass:
			failed++
			fmt.Fprintf(w, "FAIL %s: %s: %s\n", r.File, r.Name, r.Problems)
			for _, rs := range r.Got.Reasons {
				fmt.Fprintf(w, "     reason: %s (%s) %s\n", rs.Policy, rs.Effect, rs.Message)
			}
			for _, e := range r.Got.Errors {
				fmt.Fprintf(w, "     error: %s\n", e)
			}
		case verbose:
			fmt.Fprintf(w, "ok   %s: %s\n", r.File, r.Name)
		}
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", len(results)-failed, failed)
	if failed > 0 {
		return fmt.Errorf("%d of %d policy test case(s) failed", failed, len(results))
	}
	return nil
}

func (a *app) policyExplainCmd() *cobra.Command {
	var (
		dir, requestFile, output          string
		withDefaults, inScope, highImpact bool
		r                                 policy.Request
		labels, agentLabels, approvals    []string
		depth                             int
		when                              string
	)
	cmd := &cobra.Command{
		Use:   "explain",
		Short: "Decide one request and show which policies matched and why",
		Long: `Decide one request against a policy set and show the decision, every
matching forbid and permit, any policy that errored, and how many policies
the index considered. The request is given as JSON (--request FILE, or -
for stdin; the format of the 'request' of 'mandate policy test') or with
flags. Nothing is enforced or recorded.

The policy set is the default set (unless --defaults=false) plus --dir's
policies. To explain against a running server's live set, POST the same JSON
to /admin/v1/policies/explain.`,
		Example: `  mandate policy explain --tier supervised --action file.write --resource /repo/a.go --risk write
  mandate policy explain --dir ./policies --request req.json -o json
  echo '{"agent":{"id":"spiffe://x/agent/a","tier":"assist"},"action":"file.read","resource":{"id":"/a"},"risk":"read","task":{"id":"t","in_scope":true}}' | mandate policy explain --request -`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return usageError{fmt.Errorf("--output %q: want table or json", output)}
			}
			set, err := loadPolicySet(dir, withDefaults)
			if err != nil {
				return err
			}
			req := &r
			if requestFile != "" {
				var b []byte
				if requestFile == "-" {
					b, err = io.ReadAll(io.LimitReader(cmd.InOrStdin(), policy.MaxRequestSize+1))
				} else {
					b, err = os.ReadFile(requestFile)
				}
				if err != nil {
					return err
				}
				if req, err = policy.DecodeRequestJSON(b); err != nil {
					return err
				}
			} else {
				req.Task.InScope, req.HighImpact, req.Task.Depth = inScope, highImpact, depth
				req.Resource.Labels, req.Approvals = labels, approvals
				if len(agentLabels) > 0 {
					req.Agent.Labels = map[string]string{}
					for _, l := range agentLabels {
						k, v, _ := strings.Cut(l, "=")
						req.Agent.Labels[k] = v
					}
				}
				if req.Risk == "" {
					cls, _ := policy.NewClassifier(policy.ClassifierConfig{})
					req.Risk = cls.Classify(req.Action, req.Resource.ID, nil).Risk
				}
				if when != "" {
					if req.Time, err = time.Parse(time.RFC3339, when); err != nil {
						return usageError{fmt.Errorf("--time: %v", err)}
					}
				}
				if err := req.Validate(); err != nil {
					return usageError{err}
				}
			}
			x, err := set.Explain(req, time.Now())
			if err != nil {
				return err
			}
			if output == "json" {
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(x)
			}
			return printExplanation(a.stdout, x)
		},
	}
	f := cmd.Flags()
	f.StringVar(&dir, "dir", "", "directory of *.cedar policies to add to the set")
	f.BoolVar(&withDefaults, "defaults", true, "include the default policy set")
	f.StringVar(&requestFile, "request", "", "JSON request file, or - for stdin (instead of the request flags)")
	f.StringVarP(&output, "output", "o", "table", "output format: table or json")
	f.StringVar(&r.Agent.ID, "agent", "spiffe://mandate.local/agent/example", "agent SPIFFE ID")
	f.StringVar(&r.Agent.Tier, "tier", "autonomous", "agent tier: assist, supervised or autonomous")
	f.StringVar(&r.Agent.Owner, "owner", "", "agent owner")
	f.StringSliceVar(&agentLabels, "agent-label", nil, "agent label KEY=VALUE (repeatable)")
	f.StringVar(&r.Action, "action", "", "action: "+strings.Join(policy.Actions, ", "))
	f.StringVar(&r.Resource.ID, "resource", "", "resource (tool \"server/name\", path, host, secret, agent ID)")
	f.StringVar(&r.Resource.Server, "mcp-server", "", "MCP server of the tool or resource")
	f.StringVar(&r.Resource.Sensitivity, "sensitivity", "", "resource sensitivity: public, internal, confidential or restricted")
	f.StringSliceVar(&labels, "label", nil, "resource label (repeatable)")
	f.StringVar(&r.Resource.Tier, "delegate-tier", "", "the delegate's tier, for task.delegate")
	f.StringVar(&r.Risk, "risk", "", "risk class: read, write, destructive, external or privileged (default: from the action)")
	f.BoolVar(&highImpact, "high-impact", false, "the tool is configured as high-impact")
	f.StringVar(&r.Task.ID, "task", "tsk_example", "task ID")
	f.StringVar(&r.Task.Purpose, "purpose", "", "task purpose")
	f.BoolVar(&inScope, "in-scope", true, "the task's scope allows the action")
	f.StringVar(&r.Task.Sensitivity, "task-sensitivity", "confidential", "the task's sensitivity ceiling")
	f.IntVar(&depth, "depth", 0, "delegation depth of the task")
	f.StringVar(&r.Taint, "taint", "", "highest sensitivity the task has been exposed to")
	f.StringVar(&r.AgentTaint, "agent-taint", "", "the agent's taint in force (highest sensitivity its tasks read within the window)")
	f.StringSliceVar(&approvals, "approval", nil, "approval the request carries (repeatable)")
	f.StringVar(&r.Destination.Host, "host", "", "destination host (http.request)")
	f.StringVar(&r.Destination.Method, "method", "", "destination method (http.request)")
	f.StringVar(&r.Destination.Path, "path", "", "destination path (http.request)")
	f.StringVar(&r.Command, "command", "", "command line (shell.exec)")
	f.StringVar(&when, "time", "", "decision time, RFC 3339 (default now)")
	return cmd
}

func printExplanation(w io.Writer, x policy.Explanation) error {
	d := x.Decision
	fmt.Fprintf(w, "decision:    %s\n", d.Effect)
	fmt.Fprintf(w, "considered:  %d of %d policies (index by action and resource)\n", x.Considered, x.Total)
	if len(d.Approvals) > 0 {
		fmt.Fprintf(w, "approvals:   %s (would lift it)\n", strings.Join(d.Approvals, ", "))
	}
	if len(d.Obligations) > 0 {
		fmt.Fprintf(w, "obligations: %s\n", strings.Join(d.Obligations, ", "))
	}
	if len(d.Reasons) == 0 && d.Effect == policy.Deny && len(x.Errors) == 0 {
		fmt.Fprintln(w, "why:         no policy permits this request (default deny)")
	}
	section := func(title string, rs []policy.Reason) {
		if len(rs) == 0 {
			return
		}
		fmt.Fprintf(w, "%s:\n", title)
		for _, r := range rs {
			extra := ""
			if r.Approval != "" {
				extra = fmt.Sprintf(" [@approval %q", r.Approval)
				if r.Lifted {
					extra += ", lifted"
				}
				extra += "]"
			}
			fmt.Fprintf(w, "  %-28s %s%s  %s\n", r.Policy, r.Position, extra, r.Message)
		}
	}
	section("determined by", d.Reasons)
	section("matching forbids", x.Forbids)
	section("matching permits", x.Permits)
	section("errors (each denies)", x.Errors)
	return nil
}

func (a *app) policyDefaultsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "defaults DIR",
		Short: "Write the default policy set and its tests into DIR",
		Long: `Write mandate's default graded-trust policies (*.cedar) and their test cases
(tests/*.yaml) into DIR, which is created. Existing files are not
overwritten. Use them as a starting point: run the server with
policy.defaults=false and policy.dir=DIR to own the whole set.`,
		Example: `  mandate policy defaults ./policies && mandate policy test ./policies`,
		Args:    exactArgs("DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return fs.WalkDir(policy.Defaults(), ".", func(p string, d fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				dst := filepath.Join(args[0], filepath.FromSlash(p))
				if d.IsDir() {
					return os.MkdirAll(dst, 0o755)
				}
				b, err := fs.ReadFile(policy.Defaults(), p)
				if err != nil {
					return err
				}
				f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
				if err != nil {
					return err
				}
				if _, err := f.Write(b); err != nil {
					f.Close()
					return err
				}
				fmt.Fprintln(a.stdout, dst)
				return f.Close()
			})
		},
	}
}

func (a *app) policySchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "schema",
		Short:   "Print mandate's Cedar schema",
		Example: `  mandate policy schema > mandate.cedarschema`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := a.stdout.Write(policy.SchemaText)
			return err
		},
	}
}
