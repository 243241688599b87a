package hook

import (
	"bytes"
	"context"
	"crypto"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// DefaultDeadline is how long a hook invocation may take before it
// denies: a little under the 60 s that Claude Code gives a command hook
// by default (and that `mandate hook install` configures explicitly). A
// hook that Claude Code itself times out lets the call proceed, so the
// hook must give up first.
const DefaultDeadline = 55 * time.Second

// ExitBlock is the exit status of a hook that refuses: Claude Code blocks
// the tool call and shows stderr to the model (any other non-zero status
// lets the call proceed).
const ExitBlock = 2

// Config configures Run.
type Config struct {
	Adapter Adapter
	// Server is the mandate server's public URL.
	Server string
	// Getenv reads the task token's environment (LoadToken) on every run.
	Getenv func(string) string
	// DPoPKey is the key a DPoP-bound task token is bound to.
	DPoPKey crypto.Signer
	// Transport carries the requests (http.DefaultTransport if nil).
	Transport http.RoundTripper
	// Deadline bounds the whole invocation (DefaultDeadline if zero).
	Deadline time.Duration
	// OnApproval is OnApprovalHold (the default, also for "") or
	// OnApprovalAsk: what a tool use that needs approval gets.
	OnApproval string
	Stdin      io.Reader
	Stdout     io.Writer
	Stderr     io.Writer
}

// Run handles one hook invocation: it reads one event from cfg.Stdin,
// decides or records it with the server, writes the agent's answer to
// cfg.Stdout and returns the exit status. It fails closed: any error —
// unreadable, oversized or unknown input, an unknown tool, no token, an
// unreachable server, an answer that is not a decision, the deadline —
// is reported on cfg.Stderr with status ExitBlock, and nothing is written
// to cfg.Stdout.
func Run(ctx context.Context, cfg Config) int {
	deadline := cfg.Deadline
	if deadline <= 0 {
		deadline = DefaultDeadline
	}
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()
	type result struct {
		out []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		out, err := handle(ctx, cfg)
		done <- result{out, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-ctx.Done():
		r.err = fmt.Errorf("no answer within the hook's deadline of %s: denied", deadline)
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			r.err = errors.New("interrupted before an answer: denied")
		}
	}
	if r.err == nil {
		if _, err := cfg.Stdout.Write(r.out); err != nil {
			r.err = fmt.Errorf("writing the answer: %v", err)
		}
	}
	if r.err != nil {
		fmt.Fprintf(cfg.Stderr, "mandate hook: %v\n", r.err)
		return ExitBlock
	}
	return 0
}

// handle does the work of Run and returns what to write to stdout.
func handle(ctx context.Context, cfg Config) ([]byte, error) {
	if cfg.Adapter == nil || cfg.Server == "" {
		return nil, errors.New("no adapter or no server URL configured")
	}
	raw, err := readEvent(ctx, cfg.Stdin)
	if err != nil {
		return nil, err
	}
	ev, err := cfg.Adapter.Parse(raw)
	if err != nil {
		return nil, err
	}
	getenv := cfg.Getenv
	if getenv == nil {
		getenv = func(string) string { return "" }
	}
	tok, err := LoadToken(getenv)
	if err != nil {
		return nil, err
	}
	if ev.Agent, err = TokenAgent(tok); err != nil {
		return nil, err
	}
	c := &Client{Server: cfg.Server, Token: tok, DPoPKey: cfg.DPoPKey, Transport: cfg.Transport}
	var out bytes.Buffer
	switch ev.Kind {
	case BeforeTool:
		acts, err := cfg.Adapter.Actions(ev)
		if err != nil {
			return nil, err
		}
		vs, err := c.Decide(ctx, ev.Agent, acts, ev.ToolUseID)
		if err != nil {
			return nil, err
		}
		if cfg.OnApproval != OnApprovalAsk {
			if vs, err = c.hold(ctx, ev.Agent, acts, vs, ev.ToolUseID); err != nil {
				return nil, err
			}
		}
		if err := cfg.Adapter.Render(&out, ev, answer(acts, vs)); err != nil {
			return nil, err
		}
	case AfterTool:
		acts, err := cfg.Adapter.Actions(ev)
		if err != nil {
			return nil, err
		}
		a, ok := firstNamed(acts)
		if !ok {
			return nil, fmt.Errorf("the %s call cannot be named as an action: its outcome is not recorded", resource.Quote(ev.Tool))
		}
		status := access.OutcomeOK
		switch {
		case ev.Interrupted:
			status = access.OutcomeInterrupted
		case ev.Failed:
			status = access.OutcomeError
		}
		err = c.Report(ctx, httpapi.OutcomeRequest{
			Subject: &httpapi.AZSubject{Type: "agent", ID: ev.Agent}, Event: httpapi.OutcomeActionCompleted,
			Action: &httpapi.AZAction{Name: a.Kind}, Resource: &httpapi.AZResource{Type: azType(a.Kind), ID: a.Resource},
			Status: status, Source: cfg.Adapter.Name(), Session: field(ev.Session), Tool: field(ev.Tool),
		}, ev.ToolUseID)
		if err != nil {
			return nil, err
		}
	case SessionStart, SessionEnd:
		event := httpapi.OutcomeSessionStarted
		if ev.Kind == SessionEnd {
			event = httpapi.OutcomeSessionEnded
		}
		err := c.Report(ctx, httpapi.OutcomeRequest{
			Subject: &httpapi.AZSubject{Type: "agent", ID: ev.Agent}, Event: event,
			Source: cfg.Adapter.Name(), Session: field(ev.Session), Detail: field(ev.Detail),
		}, "")
		if err != nil {
			return nil, err
		}
	default:
		return nil, ErrUnknownEvent
	}
	if ev.Kind != BeforeTool {
		if err := cfg.Adapter.Render(&out, ev, Answer{}); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), nil
}

// readEvent reads stdin up to MaxEventBytes; more is an error.
func readEvent(ctx context.Context, in io.Reader) ([]byte, error) {
	if in == nil {
		return nil, errors.New("no input")
	}
	b, err := io.ReadAll(io.LimitReader(in, MaxEventBytes+1))
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	if err != nil {
		return nil, fmt.Errorf("reading the hook event: %v", err)
	}
	if len(b) > MaxEventBytes {
		return nil, fmt.Errorf("the hook event is larger than %d bytes", MaxEventBytes)
	}
	return b, nil
}

// answer combines the verdicts on a tool use's actions: the first deny
// (or an action that cannot be read safely, whatever the server said)
// denies; otherwise an approval_required asks; otherwise it is allowed.
func answer(acts []Action, vs []Verdict) Answer {
	var ask []string
	for i, a := range acts {
		name := a.Kind + " " + resource.Quote(a.Resource)
		if a.Opaque != "" {
			return Answer{Decision: AnswerDeny, Reason: "mandate denied " + a.Kind + ": " + a.Opaque}
		}
		if i >= len(vs) {
			// Not decided (the batch stopped at a deny, which comes first).
			continue
		}
		switch vs[i].Effect {
		case string(policy.Allow):
		case string(policy.ApprovalRequired):
			ask = append(ask, name+" needs approval: "+vs[i].Reason)
		default:
			return Answer{Decision: AnswerDeny, Reason: "mandate denied " + name + ": " + vs[i].Reason}
		}
	}
	if len(vs) < len(acts) {
		return Answer{Decision: AnswerDeny, Reason: "mandate denied the call: not every action was decided"}
	}
	if len(ask) > 0 {
		return Answer{Decision: AnswerAsk, Reason: "mandate: " + strings.Join(ask, "; ") +
			" (the hook is configured to ask you instead of waiting for mandate's approval)"}
	}
	return Answer{Decision: AnswerAllow, Reason: "mandate allowed " + fmt.Sprint(len(acts)) + " action(s)"}
}

// firstNamed is the first action with a canonical resource.
func firstNamed(acts []Action) (Action, bool) {
	for _, a := range acts {
		if a.Opaque == "" && resource.Check(a.Kind, a.Resource) == nil {
			return a, true
		}
	}
	return Action{}, false
}

// field cuts s to what the outcomes endpoint accepts (visible ASCII, at
// most 256 bytes), replacing anything else with "?".
func field(s string) string {
	const max = 256
	b := []byte(s)
	if len(b) > max {
		b = b[:max]
	}
	for i, c := range b {
		if c < 0x20 || c > 0x7e {
			b[i] = '?'
		}
	}
	return string(b)
}
