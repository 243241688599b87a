package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
)

// Governing a call: the decision (and any approval it needs), the ledger
// records of the decision and of the outcome, and of the calls refused
// before a decision.

// outcomeFunc records a governed call's outcome (toolError: a tools/call
// result with isError) under ctx's values (not its cancellation: the
// outcome is recorded also when the client went away), and returns err.
type outcomeFunc func(ctx context.Context, toolError bool, err error) error

// govern has r decided (by the Decider: rate limits, budgets and rules
// are all its), holds it for approval when needed, records the decision
// unless the decider did, and returns a function that records the
// outcome. The error is the JSON-RPC error to send when the call may not
// proceed.
func (g *Gateway) govern(ctx context.Context, s *session, r Request) (outcomeFunc, error) {
	ev := g.event(s, r)
	deny := func(code int64, msg string, d errorData) error {
		ev.Decision = audit.DecisionDeny
		ev.Reason = strings.Join(d.Reasons, "; ")
		if err := g.cfg.Audit.Record(context.WithoutCancel(ctx), ev); err != nil {
			g.log.Error("audit record failed", "err", err)
		}
		return rpcError(code, msg, d)
	}
	dec, err := g.cfg.Decider.Decide(ctx, r)
	if err != nil {
		g.log.Error("decision failed", "err", err)
		dec = Decision{Effect: Deny, Reasons: []string{"decision failed (denied by default)"}}
	}
	if dec.Risk != "" {
		ev.Details["risk"] = dec.Risk
	}
	if dec.Effect == ApprovalRequired {
		if g.cfg.Approvals == nil {
			ev.Decision = audit.DecisionApprovalRequired
			ev.Reason = strings.Join(dec.Reasons, "; ")
			if !dec.Recorded {
				_ = g.cfg.Audit.Record(context.WithoutCancel(ctx), ev)
			}
			return nil, rpcError(CodeApprovalRequired, "approval required: "+orDefault(ev.Reason, "this call needs a human approval")+" (no approver is configured)", errorData{Reasons: dec.Reasons})
		}
		if asker, ok := g.cfg.Approvals.(InBandAsker); ok && s.stateless && inBandFrom(ctx) {
			ib, asked, err := asker.AskInBand(ctx, r, dec)
			if err != nil {
				return nil, deny(CodeDenied, "denied: the approval could not be asked for: "+err.Error(), errorData{Reasons: dec.Reasons})
			}
			if asked {
				return nil, &inBandApproval{ib}
			}
		}
		r.Progress, r.AskPerson = progressFrom(ctx), s.askPerson(ctx)
		dec, err = g.cfg.Approvals.Wait(ctx, r, dec)
		if err != nil {
			dec = Decision{Effect: Deny, Reasons: []string{"approval not obtained: " + err.Error()}}
		}
	}
	for _, o := range dec.Obligations {
		switch {
		case dec.Effect != Allow:
		case o.Kind == ObligationFullArguments:
			if err := g.cfg.Redactor.Arguments(&ev, r.Arguments, true); err != nil && r.Arguments != nil {
				dec = Decision{Effect: Deny, Reasons: []string{"the arguments cannot be recorded as the policy requires: " + err.Error()}}
			}
		default:
			dec = Decision{Effect: Deny, Reasons: []string{fmt.Sprintf("obligation %q is not supported by the MCP gateway", o.Kind)}}
		}
	}
	if dec.Effect != Allow {
		if dec.Effect == ApprovalRequired {
			dec.Effect = Deny
		}
		code, msg, data := int64(CodeDenied), "denied: "+orDefault(strings.Join(dec.Reasons, "; "), "not allowed"), errorData{Reasons: dec.Reasons}
		switch dec.Limit {
		case LimitRate:
			data.RetryAfter = retrySeconds(dec.RetryAfter)
			code, msg = CodeRateLimited, fmt.Sprintf("rate limit for %s exceeded; retry after %ds", r.Resource, data.RetryAfter)
		case LimitBudget:
			code, msg = CodeBudgetExceeded, "the task's budget is spent: "+orDefault(strings.Join(dec.Reasons, "; "), "no calls left")
		}
		if dec.Recorded {
			return nil, rpcError(code, msg, data)
		}
		return nil, deny(code, msg, data)
	}
	ev.Decision = audit.DecisionAllow
	ev.Reason = strings.Join(dec.Reasons, "; ")
	if !dec.Recorded {
		if err := g.cfg.Audit.Record(ctx, ev); err != nil {
			g.log.Error("audit record failed; call denied", "err", err)
			return nil, rpcError(CodeDenied, "denied: the audit log is unavailable", errorData{Reasons: []string{"audit log unavailable (fail closed)"}})
		}
	}
	start := time.Now()
	return func(rctx context.Context, toolError bool, err error) error {
		out := ev
		out.Type = audit.TypeMCPResult
		out.Time = time.Time{}
		out.Details = mapsClone(ev.Details)
		out.Details["duration_us"] = strconv.FormatInt(time.Since(start).Microseconds(), 10)
		switch {
		case errors.Is(err, errInputRequired):
			out.Details["outcome"] = "input_required"
		case err != nil:
			out.Details["outcome"] = "error"
			out.Reason = err.Error()
		case toolError:
			out.Details["outcome"] = "tool_error"
		default:
			out.Details["outcome"] = "ok"
		}
		if rerr := g.cfg.Audit.Record(context.WithoutCancel(rctx), out); rerr != nil {
			g.log.Error("audit record of outcome failed", "err", rerr)
		}
		return err
	}, nil
}

// refused records a call the gateway refused before asking the decider
// (unknown, ambiguous or quarantined tool), so that every attempted call
// is in the ledger.
func (g *Gateway) refused(ctx context.Context, s *session, r Request, reason string) {
	ev := g.event(s, r)
	ev.Decision = audit.DecisionDeny
	ev.Reason = reason
	if err := g.cfg.Audit.Record(context.WithoutCancel(ctx), ev); err != nil {
		g.log.Error("audit record failed", "err", err)
	}
}

func orDefault(s, d string) string {
	if s == "" {
		return d
	}
	return s
}

func mapsClone(m map[string]string) map[string]string {
	out := make(map[string]string, len(m)+2)
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (g *Gateway) event(s *session, r Request) audit.Event {
	p := r.Principal
	ev := audit.Event{
		Type: audit.TypeMCPCall, Actor: p.Agent, Agent: p.Agent, Chain: p.Chain, OnBehalfOf: p.OnBehalfOf,
		Task: p.Task, Action: r.Action, Resource: policy.TypedResource(r.Action, r.Resource), Point: "mcp",
		Details: map[string]string{"upstream": r.Upstream, "name": r.Name, "endpoint": s.resource},
	}
	if r.Arguments != nil {
		// Arguments can hold secrets: the ledger keeps their keyed digest
		// (brute-forcing a short secret needs the installation's key).
		if err := g.cfg.Redactor.Arguments(&ev, r.Arguments, false); err != nil {
			ev.Details["arguments"] = "not JSON"
		}
	}
	return ev
}
