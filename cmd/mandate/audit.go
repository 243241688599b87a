package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
)

func (a *app) auditCmd() *cobra.Command {
	var cf clientFlags
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Read, prove and verify the tamper-evident audit ledger",
		Long: `Read, prove and verify the audit ledger. Every admin change, token and decided
action is an event: a leaf of a Merkle tree whose root the server signs in
checkpoints (C2SP signed-note format, Ed25519). An inclusion proof shows one
event is in a signed tree; a consistency proof shows a later checkpoint
extends an earlier one; 'verify' checks the whole ledger — live, or an
export offline against a saved checkpoint and the ledger's public key — and
names the first event that does not check out.

These commands talk to the server's admin API over the local socket in the
data directory, or to --server URL with --token; 'verify --export' needs no
server at all. See docs/audit.md.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	a.addClientFlags(cmd, &cf)
	cmd.AddCommand(a.auditTailCmd(&cf), a.auditQueryCmd(&cf), a.auditCheckpointCmd(&cf), a.auditKeyCmd(&cf),
		a.auditProofCmd(&cf), a.auditExportCmd(&cf), a.auditVerifyCmd(&cf), a.auditKeygenCmd())
	return cmd
}

// eventFilter holds the event filter flags shared by tail, query and export.
type eventFilter struct {
	agent, task, typ, decision, since, until string
	after                                    int64
}

func (f *eventFilter) add(cmd *cobra.Command, withTime bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.agent, "agent", "", "only events of this agent (name or SPIFFE ID)")
	fl.StringVar(&f.task, "task", "", "only events of this task")
	fl.StringVar(&f.typ, "type", "", "only events of this type, e.g. token.issued or action.decided")
	fl.StringVar(&f.decision, "decision", "", "only events with this decision: allow, deny or approval_required")
	if withTime {
		fl.StringVar(&f.since, "since", "", "only events at or after this time: RFC 3339 (2026-01-02T15:04:05Z) or a duration ago (90m, 24h)")
		fl.StringVar(&f.until, "until", "", "only events before this time: RFC 3339 or a duration ago")
		fl.Int64Var(&f.after, "after", 0, "only events with a sequence number above this")
	}
}

// parseWhen parses an RFC 3339 time or a duration before now.
func parseWhen(flag, s string, now time.Time) (string, error) {
	if s == "" {
		return "", nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t.UTC().Format(time.RFC3339Nano), nil
	}
	if d, err := time.ParseDuration(s); err == nil && d >= 0 {
		return now.Add(-d).UTC().Format(time.RFC3339Nano), nil
	}
	return "", usageError{fmt.Errorf("--%s %q: want an RFC 3339 time such as 2026-01-02T15:04:05Z or a duration such as 24h", flag, s)}
}

func (f *eventFilter) values() (url.Values, error) {
	q := url.Values{}
	setIf(q, "agent", f.agent)
	setIf(q, "task", f.task)
	setIf(q, "type", f.typ)
	switch f.decision {
	case "", audit.DecisionAllow, audit.DecisionDeny, audit.DecisionApprovalRequired:
		setIf(q, "decision", f.decision)
	default:
		return nil, usageError{fmt.Errorf("--decision %q: want allow, deny or approval_required", f.decision)}
	}
	now := time.Now()
	for _, p := range []struct{ name, val string }{{"since", f.since}, {"until", f.until}} {
		v, err := parseWhen(p.name, p.val, now)
		if err != nil {
			return nil, err
		}
		setIf(q, p.name, v)
	}
	if f.after < 0 {
		return nil, usageError{errors.New("--after must not be negative")}
	}
	if f.after > 0 {
		q.Set("after", strconv.FormatInt(f.after, 10))
	}
	return q, nil
}

func (c *client) events(ctx context.Context, q url.Values) ([]json.RawMessage, error) {
	data, err := c.do(ctx, http.MethodGet, "/admin/v1/audit/events", q, nil)
	if err != nil {
		return nil, err
	}
	var resp struct {
		Events []json.RawMessage `json:"events"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return nil, fmt.Errorf("decoding the server's response: %w", err)
	}
	return resp.Events, nil
}

// printEvents writes events as a table or as JSON lines.
func printEvents(w io.Writer, output string, raws []json.RawMessage, header bool) (int64, error) {
	var last int64
	tw := newTable(w)
	if header && output == "table" {
		tw.row("SEQ", "TIME", "TYPE", "AGENT", "TASK", "ACTION", "RESOURCE", "DECISION", "REASON")
	}
	for _, raw := range raws {
		var ev audit.Event
		if err := json.Unmarshal(raw, &ev); err != nil {
			return last, fmt.Errorf("decoding an event: %w", err)
		}
		last = ev.Seq
		if output == "json" {
			if _, err := fmt.Fprintf(w, "%s\n", bytes.TrimSpace(raw)); err != nil {
				return last, err
			}
			continue
		}
		agent := ev.Agent
		if i := strings.LastIndex(agent, "/agent/"); i >= 0 {
			agent = agent[i+len("/agent/"):]
		}
		reason := ev.Reason
		if reason == "" && len(ev.Reasons) > 0 {
			reason = ev.Reasons[0].Policy
		}
		tw.row(strconv.FormatInt(ev.Seq, 10), fmtTime(ev.Time), string(ev.Type), agent, ev.Task, ev.Action,
			truncate(ev.Resource, 40), ev.Decision, truncate(reason, 40))
	}
	return last, tw.flush()
}

func (a *app) auditTailCmd(cf *clientFlags) *cobra.Command {
	var (
		f      eventFilter
		n      int
		follow bool
		every  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Show the latest events, and follow new ones with -f",
		Example: `  mandate audit tail
  mandate audit tail -n 50 --agent build-bot
  mandate audit tail -f --decision deny -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			if n < 1 || n > 1000 {
				return usageError{errors.New("-n must be from 1 to 1000")}
			}
			q, err := f.values()
			if err != nil {
				return err
			}
			q.Set("limit", strconv.Itoa(n))
			q.Set("last", "true")
			evs, err := c.events(cmd.Context(), q)
			if err != nil {
				return err
			}
			last, err := printEvents(a.stdout, c.output, evs, true)
			if err != nil || !follow {
				return err
			}
			q.Del("last")
			q.Set("limit", "1000")
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-cmd.Context().Done():
					return nil
				case <-t.C:
				}
				if last > 0 {
					q.Set("after", strconv.FormatInt(last, 10))
				}
				evs, err := c.events(cmd.Context(), q)
				if err != nil {
					if cmd.Context().Err() != nil {
						return nil
					}
					return err
				}
				l, err := printEvents(a.stdout, c.output, evs, false)
				if err != nil {
					return err
				}
				if l > 0 {
					last = l
				}
			}
		},
	}
	f.add(cmd, false)
	cmd.Flags().IntVarP(&n, "lines", "n", 20, "how many of the latest events to show")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new events as they are recorded (until interrupted)")
	cmd.Flags().DurationVar(&every, "interval", time.Second, "how often -f asks for new events")
	return cmd
}

func (a *app) auditQueryCmd(cf *clientFlags) *cobra.Command {
	var (
		f     eventFilter
		limit int
	)
	cmd := &cobra.Command{
		Use:   "query",
		Short: "Find events by agent, task, type, decision and time",
		Long: `Find events by agent, task, type, decision and time range, oldest first.
-o json prints one event per line (JSON lines), for jq and scripts.`,
		Example: `  mandate audit query --agent build-bot --since 24h
  mandate audit query --decision deny --since 2026-03-01T00:00:00Z --until 2026-03-02T00:00:00Z
  mandate audit query --task tsk_… -o json | jq .resource`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			if limit < 1 || limit > 1000 {
				return usageError{errors.New("--limit must be from 1 to 1000")}
			}
			q, err := f.values()
			if err != nil {
				return err
			}
			q.Set("limit", strconv.Itoa(limit))
			evs, err := c.events(cmd.Context(), q)
			if err != nil {
				return err
			}
			if len(evs) == 0 && c.output == "table" {
				fmt.Fprintln(a.stderr, "No events.")
				return nil
			}
			_, err = printEvents(a.stdout, c.output, evs, true)
			return err
		},
	}
	f.add(cmd, true)
	cmd.Flags().IntVar(&limit, "limit", 100, "at most this many events (page on with --after the last seq)")
	return cmd
}

func (a *app) auditCheckpointCmd(cf *clientFlags) *cobra.Command {
	var latest bool
	cmd := &cobra.Command{
		Use:   "checkpoint",
		Short: "Sign a checkpoint of the ledger now and print it",
		Long: `Sign a checkpoint of the ledger's current tree now (or, with --latest, fetch
the most recent one) and print the signed note: the origin, the tree size,
the base64 root hash and the Ed25519 signature. Keep it somewhere the
server cannot change; 'mandate audit verify' checks the ledger or an export
against it later.`,
		Example: `  mandate audit checkpoint > checkpoint-$(date +%F).txt
  mandate audit checkpoint --latest -o json`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			method := http.MethodPost
			if latest {
				method = http.MethodGet
			}
			var cp httpapi.CheckpointResponse
			if printed, err := c.fetch(cmd.Context(), method, "/admin/v1/audit/checkpoint", nil, nil, &cp); err != nil || printed {
				return err
			}
			_, err = io.WriteString(a.stdout, cp.Note)
			return err
		},
	}
	cmd.Flags().BoolVar(&latest, "latest", false, "print the most recent checkpoint instead of signing a new one")
	return cmd
}

func (a *app) auditKeyCmd(cf *clientFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the ledger's public key (note verifier format)",
		Long: `Print the ledger's public key, <origin>+<key hash>+<base64 Ed25519 key>: the key
checkpoints are signed with. Auditors pin it and pass it to
'mandate audit verify --key'.`,
		Example: "  mandate audit key > ledger.pub",
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			var k struct {
				Key string `json:"key"`
			}
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/audit/key", nil, nil, &k); err != nil || printed {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, k.Key)
			return err
		},
	}
}

// ledgerKey returns the pinned key (--key or --key-file), or the server's.
func (a *app) ledgerKey(ctx context.Context, c *client, key, keyFile string) (string, bool, error) {
	switch {
	case key != "" && keyFile != "":
		return "", false, usageError{errors.New("--key and --key-file are exclusive")}
	case key != "":
		return strings.TrimSpace(key), true, nil
	case keyFile != "":
		b, err := os.ReadFile(keyFile)
		if err != nil {
			return "", false, err
		}
		return strings.TrimSpace(string(b)), true, nil
	case c == nil:
		return "", false, usageError{errors.New("offline verification needs the ledger's public key: --key or --key-file (see 'mandate audit key')")}
	}
	data, err := c.do(ctx, http.MethodGet, "/admin/v1/audit/key", nil, nil)
	if err != nil {
		return "", false, err
	}
	var k struct {
		Key string `json:"key"`
	}
	if err := json.Unmarshal(data, &k); err != nil {
		return "", false, fmt.Errorf("decoding the server's response: %w", err)
	}
	return k.Key, false, nil
}

func (a *app) auditProofCmd(cf *clientFlags) *cobra.Command {
	var (
		treeSize     int64
		key, keyFile string
	)
	cmd := &cobra.Command{
		Use:   "proof SEQ",
		Short: "Prove that an event is in the signed ledger, and check the proof",
		Long: `Fetch the inclusion proof of event SEQ in the latest signed checkpoint (or the
tree of --tree-size events) and check it here: the checkpoint's signature
with the ledger key (pin it with --key), the event's leaf hash, and the
Merkle path to the checkpoint's root (tlog.CheckRecord). -o json prints the
proof itself.`,
		Example: `  mandate audit proof 1234
  mandate audit proof 1234 --key "$(cat ledger.pub)"`,
		Args: exactArgs("SEQ"),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			seq, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || seq < 1 {
				return usageError{fmt.Errorf("SEQ %q: want a positive sequence number", args[0])}
			}
			q := url.Values{}
			if treeSize > 0 {
				q.Set("tree_size", strconv.FormatInt(treeSize, 10))
			}
			var p audit.InclusionProof
			if printed, err := c.fetch(cmd.Context(), http.MethodGet, "/admin/v1/audit/proof/"+strconv.FormatInt(seq, 10), q, nil, &p); err != nil || printed {
				return err
			}
			if p.Checkpoint == "" {
				return fmt.Errorf("the server has no signed checkpoint of tree size %d to check the proof against; omit --tree-size to use the latest", p.TreeSize)
			}
			vkey, pinned, err := a.ledgerKey(cmd.Context(), c, key, keyFile)
			if err != nil {
				return err
			}
			cp, err := audit.ParseCheckpoint([]byte(p.Checkpoint), vkey)
			if err != nil {
				return err
			}
			if cp.Size != p.TreeSize {
				return fmt.Errorf("the proof is for tree size %d but its checkpoint is for %d", p.TreeSize, cp.Size)
			}
			if len(p.Event) > 0 && audit.LeafHash(p.Event) != p.LeafHash {
				return fmt.Errorf("event %d does not match its leaf hash: the stored event was altered", seq)
			}
			if err := p.Check(cp.Root); err != nil {
				return fmt.Errorf("inclusion proof of event %d does NOT check out against checkpoint %d: %v", seq, cp.Size, err)
			}
			fmt.Fprintf(a.stdout, "Event %d is leaf %d of the tree of %d events signed by %s (root %s).\n", seq, seq-1, cp.Size, cp.Origin, cp.Root)
			if len(p.Event) > 0 {
				fmt.Fprintf(a.stdout, "%s\n", p.Event)
			} else {
				fmt.Fprintf(a.stdout, "(the event itself was pruned by retention; its leaf hash is %s)\n", p.LeafHash)
			}
			if !pinned {
				fmt.Fprintln(a.stderr, "note: checked with the key the server reported; pin it with --key to detect a server that changed its key")
			}
			return nil
		},
	}
	cmd.Flags().Int64Var(&treeSize, "tree-size", 0, "prove against the tree of this many events (default: the latest checkpoint)")
	cmd.Flags().StringVar(&key, "key", "", "the ledger's public key to check the checkpoint with (see 'mandate audit key')")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the ledger's public key")
	return cmd
}

// stream sends a GET to the admin API and copies a successful response
// body to w.
func (c *client) stream(ctx context.Context, path string, query url.Values, w io.Writer) error {
	u := c.base + path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if c.token != "" && c.socket == "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	hc := *c.http
	hc.Timeout = 0 // exports may be long; ctx bounds them
	resp, err := hc.Do(req)
	if err != nil {
		return c.connError(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		data, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return c.statusError(resp, data)
	}
	_, err = io.Copy(w, resp.Body)
	return err
}

func (a *app) auditExportCmd(cf *clientFlags) *cobra.Command {
	var (
		f       eventFilter
		format  string
		outFile string
	)
	cmd := &cobra.Command{
		Use:   "export",
		Short: "Export events as JSON lines or OCSF, for verification or a SIEM",
		Long: `Export the ledger as JSON lines. Without filters the export is verifiable:
every event in order with its leaf hash (after a ledger_prefix line if
retention pruned older events) — check it offline with
'mandate audit verify --export FILE --checkpoint CHECKPOINT --key KEY'.
With filters it holds just the matching events.

--format ocsf maps each event to OCSF 1.x: token and task events to
Authorize Session (class 3003), actions, approvals and admin changes to API
Activity (class 6003), with the security-control decision fields. OCSF
exports are for SIEMs, not for verification.`,
		Example: `  mandate audit export -O ledger.jsonl
  mandate audit export --format ocsf --since 24h > ocsf.jsonl`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			switch format {
			case "jsonl", "ocsf":
			default:
				return usageError{fmt.Errorf("--format %q: want jsonl or ocsf", format)}
			}
			q, err := f.values()
			if err != nil {
				return err
			}
			q.Set("format", format)
			var w io.Writer = a.stdout
			if outFile != "" {
				file, err := os.OpenFile(outFile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
				if err != nil {
					return err
				}
				defer file.Close()
				w = file
			}
			if err := c.stream(cmd.Context(), "/admin/v1/audit/export", q, w); err != nil {
				return err
			}
			if file, ok := w.(*os.File); ok {
				return file.Close()
			}
			return nil
		},
	}
	f.add(cmd, true)
	cmd.Flags().StringVar(&format, "format", "jsonl", "jsonl (mandate's events) or ocsf (OCSF 1.x events)")
	cmd.Flags().StringVarP(&outFile, "output-file", "O", "", "write the export to this file (mode 0600) instead of standard output")
	return cmd
}

func (a *app) auditVerifyCmd(cf *clientFlags) *cobra.Command {
	var (
		export       string
		checkpoints  []string
		key, keyFile string
	)
	cmd := &cobra.Command{
		Use:   "verify",
		Short: "Verify the live ledger, or an export offline",
		Long: `Verify the ledger and name the first event that does not check out.

Without --export, the server checks the live ledger: every stored event
against its leaf hash and indexed fields, every stored tree hash, every
signed checkpoint's signature and root, and consistency between them. Each
--checkpoint you saved earlier is then checked here too: its signature (with
the pinned --key, or the server's), and a consistency proof from it to the
server's latest checkpoint (tlog.CheckTree) — a server that rewrote history
cannot produce one.

With --export FILE, verification is offline and needs no server: the export
is checked line by line (edited, deleted, reordered, inserted events;
truncation) and its tree against each --checkpoint, whose signature is
checked with --key. Exit status 1 means verification failed.`,
		Example: `  mandate audit verify
  mandate audit verify --checkpoint checkpoint-2026-03-01.txt --key "$(cat ledger.pub)"
  mandate audit verify --export ledger.jsonl --checkpoint checkpoint.txt --key-file ledger.pub`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var cps [][]byte
			for _, p := range checkpoints {
				b, err := os.ReadFile(p)
				if err != nil {
					return err
				}
				cps = append(cps, b)
			}
			if export != "" {
				vkey, _, err := a.ledgerKey(cmd.Context(), nil, key, keyFile)
				if err != nil {
					return err
				}
				f, err := os.Open(export)
				if err != nil {
					return err
				}
				defer f.Close()
				rep, err := audit.VerifyExport(f, cps, vkey)
				if err != nil {
					return err
				}
				return a.printReport(rep, "export "+export)
			}
			c, err := a.newClient(cf)
			if err != nil {
				return err
			}
			// Verifying a large ledger takes longer than the client's
			// default timeout; interrupting the command stops it.
			hc := *c.http
			hc.Timeout = 0
			c.http = &hc
			data, err := c.do(cmd.Context(), http.MethodPost, "/admin/v1/audit/verify", nil, nil)
			if err != nil {
				return err
			}
			var rep audit.Report
			if err := json.Unmarshal(data, &rep); err != nil {
				return fmt.Errorf("decoding the server's response: %w", err)
			}
			if len(cps) > 0 {
				if err := a.checkSaved(cmd.Context(), c, cps, checkpoints, key, keyFile, &rep); err != nil {
					return err
				}
			}
			if c.output == "json" {
				b, _ := json.Marshal(rep)
				fmt.Fprintf(a.stdout, "%s\n", b)
				if !rep.OK() {
					return fmt.Errorf("ledger verification FAILED")
				}
				return nil
			}
			return a.printReport(&rep, "the ledger")
		},
	}
	cmd.Flags().StringVar(&export, "export", "", "verify this export file (from 'mandate audit export') offline")
	cmd.Flags().StringArrayVar(&checkpoints, "checkpoint", nil, "a signed checkpoint saved earlier (repeatable)")
	cmd.Flags().StringVar(&key, "key", "", "the ledger's public key (see 'mandate audit key'); required with --export")
	cmd.Flags().StringVar(&keyFile, "key-file", "", "file holding the ledger's public key")
	return cmd
}

// checkSaved checks saved checkpoints against the live ledger: signature,
// then a consistency proof to the server's latest checkpoint.
func (a *app) checkSaved(ctx context.Context, c *client, cps [][]byte, names []string, key, keyFile string, rep *audit.Report) error {
	vkey, _, err := a.ledgerKey(ctx, c, key, keyFile)
	if err != nil {
		return err
	}
	for i, msg := range cps {
		old, err := audit.ParseCheckpoint(msg, vkey)
		if err != nil {
			rep.Problems = append(rep.Problems, audit.Problem{Message: fmt.Sprintf("%s: %v", names[i], err)})
			continue
		}
		data, err := c.do(ctx, http.MethodGet, "/admin/v1/audit/consistency", url.Values{"old": {strconv.FormatInt(old.Size, 10)}}, nil)
		if err != nil {
			rep.Problems = append(rep.Problems, audit.Problem{CheckpointSize: old.Size, Message: fmt.Sprintf("%s: no consistency proof: %v", names[i], err)})
			continue
		}
		var p audit.ConsistencyProof
		if err := json.Unmarshal(data, &p); err != nil {
			return fmt.Errorf("decoding the server's response: %w", err)
		}
		latest, err := audit.ParseCheckpoint([]byte(p.Checkpoint), vkey)
		if err != nil {
			rep.Problems = append(rep.Problems, audit.Problem{Message: fmt.Sprintf("the server's latest checkpoint: %v", err)})
			continue
		}
		if latest.Size != p.NewSize {
			return fmt.Errorf("the consistency proof is for size %d but the checkpoint is for %d", p.NewSize, latest.Size)
		}
		if err := p.Check(old.Root, latest.Root); err != nil {
			rep.Problems = append(rep.Problems, audit.Problem{CheckpointSize: old.Size, Message: fmt.Sprintf(
				"%s is NOT consistent with the server's checkpoint of size %d: the ledger was rewritten (%v)", names[i], latest.Size, err)})
			continue
		}
		rep.Notes = append(rep.Notes, fmt.Sprintf("%s (size %d) is consistent with the latest checkpoint (size %d)", names[i], old.Size, latest.Size))
	}
	return nil
}

func (a *app) printReport(rep *audit.Report, what string) error {
	for _, n := range rep.Notes {
		fmt.Fprintf(a.stdout, "note: %s\n", n)
	}
	if rep.OK() {
		fmt.Fprintf(a.stdout, "OK: %s verifies: %d events, tree size %d, %d checkpoint(s)", what, rep.Events, rep.TreeSize, rep.Checkpoints)
		if rep.PrunedThrough > 0 {
			fmt.Fprintf(a.stdout, ", events through %d pruned by retention", rep.PrunedThrough)
		}
		fmt.Fprintln(a.stdout, ".")
		return nil
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(a.stdout, "BAD: %s\n", p)
	}
	if rep.FirstBadSeq > 0 {
		return fmt.Errorf("%s FAILED verification: the first bad event is seq %d (leaf index %d)", what, rep.FirstBadSeq, rep.FirstBadSeq-1)
	}
	return fmt.Errorf("%s FAILED verification", what)
}

func (a *app) auditKeygenCmd() *cobra.Command {
	var origin, out string
	cmd := &cobra.Command{
		Use:   "keygen",
		Short: "Generate a checkpoint signing key to keep outside the store",
		Long: `Generate an Ed25519 checkpoint signing key for the ledger named --origin, write
it to --output-file (mode 0600; an existing file is never overwritten) and
print its public key. Point audit.signing_key_file at the file before the
server's first start: then write access to the database is not enough to
sign checkpoints. Needs no server.`,
		Example: `  mandate audit keygen --origin mandate.example.com/audit -O /etc/mandate/ledger.key > ledger.pub`,
		Args:    noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if origin == "" || out == "" {
				return usageError{errors.New("--origin and --output-file are required")}
			}
			skey, vkey, err := audit.GenerateSignerKey(origin)
			if err != nil {
				return usageError{fmt.Errorf("--origin %q: %v (a name without spaces or '+', e.g. mandate.example.com/audit)", origin, err)}
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if err != nil {
				return err
			}
			if _, err := fmt.Fprintln(f, skey); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			_, err = fmt.Fprintln(a.stdout, vkey)
			return err
		},
	}
	cmd.Flags().StringVar(&origin, "origin", "", "the ledger's origin (checkpoint name), e.g. mandate.example.com/audit (required)")
	cmd.Flags().StringVarP(&out, "output-file", "O", "", "file to write the private key to (required)")
	return cmd
}
