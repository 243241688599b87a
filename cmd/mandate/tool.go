package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/toolpin"
)

func (a *app) toolCmd() *cobra.Command {
	cf := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "tool",
		Short: "Review and approve MCP tool definitions",
		Long: `The MCP gateway pins every tool's whole definition as it serves it to
agents - name, title, description, input and output schema, annotations,
icons and _meta - the first time it sees the tool (digest sha256-v2:…,
over canonical JSON, so re-serialising the same definition changes
nothing). When an upstream server later changes any of it, the tool is
quarantined: hidden from tools/list and refused on tools/call until an
admin reviews the change with 'mandate tool diff' and approves it with
'mandate tool approve'.

A tool that appears while a pinned tool of the same upstream disappears,
with the vanished tool's description or input schema, is reported as a
rename (naming both) and quarantined with nothing approved, until it is
approved the same way.

Pins stored by earlier versions (digest sha256:…, which did not cover
title, icons and _meta) are upgraded to the whole tool on first sight when
what they covered is unchanged, and quarantined when it changed. Pinning,
quarantine, upgrade and approval are all audit events.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, cf)
	cmd.AddCommand(a.toolListCmd(cf), a.toolDiffCmd(cf), a.toolApproveCmd(cf))
	return cmd
}

func (a *app) toolListCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:     "list",
		Short:   "List pinned tools and their state",
		Example: "  mandate tool list\n  mandate tool list -o json",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var out struct {
				Tools []*toolpin.Pin `json:"tools"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/tools", nil, nil, &out); err != nil || printed {
				return err
			}
			t := newTable(a.stdout)
			t.row("UPSTREAM", "TOOL", "STATE", "DIGEST", "UPDATED")
			for _, p := range out.Tools {
				state := "approved"
				switch {
				case p.PendingDigest != "" && p.Digest == "":
					state = "QUARANTINED (rename)"
				case p.PendingDigest != "":
					state = "QUARANTINED"
				}
				t.row(p.Upstream, p.Tool, state, truncate(p.Digest, 19), fmtTime(p.UpdatedAt))
			}
			return t.flush()
		},
	}
}

// toolRef parses "UPSTREAM/TOOL".
func toolRef(s string) (string, error) {
	up, tool, ok := strings.Cut(s, "/")
	if !ok || up == "" || tool == "" {
		return "", usageError{fmt.Errorf("%q: want UPSTREAM/TOOL, e.g. github/create_issue", s)}
	}
	return url.PathEscape(up) + "/" + url.PathEscape(tool), nil
}

func (a *app) toolDiffCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "diff UPSTREAM/TOOL",
		Short: "Show how a quarantined tool's definition changed",
		Long: `Show the approved and the pending definition of a quarantined tool as a
line diff, and the digest to approve. For a rename nothing was ever
approved: the whole pending definition is shown as added, with the tool
it looks like a rename of in the ledger's tool.quarantined event.`,
		Example: "  mandate tool diff github/create_issue",
		Args:    exactArgs("UPSTREAM/TOOL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := toolRef(args[0])
			if err != nil {
				return err
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var p toolpin.Pin
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/tools/"+ref, nil, nil, &p); err != nil || printed {
				return err
			}
			if p.PendingDigest == "" {
				fmt.Fprintf(a.stdout, "%s/%s is approved (%s); no pending change.\n", p.Upstream, p.Tool, p.Digest)
				return nil
			}
			var approved []string
			if p.Digest == "" {
				fmt.Fprintf(a.stdout, "--- approved (nothing: a new tool that looks like a rename of one that disappeared)\n")
			} else {
				fmt.Fprintf(a.stdout, "--- approved %s\n", p.Digest)
				approved = prettyLines(p.Definition)
			}
			fmt.Fprintf(a.stdout, "+++ pending  %s\n", p.PendingDigest)
			writeDiff(a.stdout, approved, prettyLines(p.PendingDefinition))
			fmt.Fprintf(a.stdout, "\nApprove with: mandate tool approve %s/%s --digest %s\n", p.Upstream, p.Tool, p.PendingDigest)
			return nil
		},
	}
}

func (a *app) toolApproveCmd(cf *clientFlags) *cobra.Command {
	var digest string
	cmd := &cobra.Command{
		Use:   "approve UPSTREAM/TOOL",
		Short: "Approve a quarantined tool's new definition",
		Long: `Approve the pending definition of a quarantined tool (a changed definition
or a rename), making it visible and callable again. With --digest (as
printed by 'mandate tool diff') the approval fails if the definition
changed again since you reviewed it.`,
		Example: "  mandate tool approve github/create_issue --digest sha256-v2:4f1c…",
		Args:    exactArgs("UPSTREAM/TOOL"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := toolRef(args[0])
			if err != nil {
				return err
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var p toolpin.Pin
			if printed, err := c.fetch(cmd.Context(), http.MethodPost, "/admin/v1/tools/"+ref+"/approve", nil, map[string]string{"digest": digest}, &p); err != nil || printed {
				return err
			}
			fmt.Fprintf(a.stdout, "Approved %s/%s: %s\n", p.Upstream, p.Tool, p.Digest)
			return nil
		},
	}
	cmd.Flags().StringVar(&digest, "digest", "", "the pending digest you reviewed (sha256-v2:…)")
	return cmd
}

func prettyLines(raw json.RawMessage) []string {
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		return []string{string(raw)}
	}
	return strings.Split(buf.String(), "\n")
}

// writeDiff writes a line diff of a and b (longest common subsequence).
func writeDiff(w io.Writer, a, b []string) {
	n, m := len(a), len(b)
	lcs := make([][]int, n+1)
	for i := range lcs {
		lcs[i] = make([]int, m+1)
	}
	for i := n - 1; i >= 0; i-- {
		for j := m - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	i, j := 0, 0
	for i < n || j < m {
		switch {
		case i < n && j < m && a[i] == b[j]:
			fmt.Fprintf(w, "  %s\n", a[i])
			i, j = i+1, j+1
		case j < m && (i == n || lcs[i][j+1] >= lcs[i+1][j]):
			fmt.Fprintf(w, "+ %s\n", b[j])
			j++
		default:
			fmt.Fprintf(w, "- %s\n", a[i])
			i++
		}
	}
}
