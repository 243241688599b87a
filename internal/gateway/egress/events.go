package egress

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/resource"
)

// Outcome statuses of action.completed events, besides ok and error.
const (
	outcomeOK    = "ok"
	outcomeError = "error"
	// outcomeRefused: the request was allowed but the proxy did not carry
	// it out (its address is refused, an obligation is unsupported).
	outcomeRefused = "refused"
	// outcomeClosed: a tunnel was closed by the proxy (its task ended, or
	// the proxy shut down).
	outcomeClosed = "closed"
)

// refuse records a request the proxy refuses before asking the pipeline
// (a malformed target, a CONNECT port, too many headers) as a denied
// action.decided, and answers it.
func (g *Gateway) refuse(w http.ResponseWriter, r *http.Request, subj access.Subject, act access.Action, status int, reason string) {
	ev := g.event(subj, act, audit.TypeActionDecided)
	ev.Decision, ev.Reason = audit.DecisionDeny, reason
	if err := g.cfg.Audit.Record(context.WithoutCancel(r.Context()), ev); err != nil {
		g.log.Error("audit record of a refused request failed", "err", err)
	}
	problem(w, status, http.StatusText(status), reason)
}

// recordOutcome records what an allowed request did.
func (g *Gateway) recordOutcome(ctx context.Context, subj access.Subject, act access.Action, out audit.Outcome, details map[string]string) {
	ev := g.event(subj, act, audit.TypeActionCompleted)
	ev.Decision, ev.Outcome = audit.DecisionAllow, &out
	for k, v := range details {
		ev.Details[k] = v
	}
	if err := g.cfg.Audit.Record(context.WithoutCancel(ctx), ev); err != nil {
		g.log.Error("audit record of an outcome failed", "err", err, "request_id", act.RequestID)
	}
}

// maxOutcomesInFlight bounds the outcomes recorded after their request
// was answered (recordOutcomeAfter); past it, a request waits for its own.
const maxOutcomesInFlight = 1024

// outcomes are the outcome records of answered requests still being
// written.
type outcomes struct {
	slots chan struct{}
	wg    sync.WaitGroup
}

// recordOutcomeAfter records the outcome of a request whose response is
// complete once the handler returns: the request itself was recorded
// (its decision, any injection) before it was sent, and the outcome is
// written without holding up the end of a chunked response or the next
// request on the connection. Shutdown waits for every one.
func (g *Gateway) recordOutcomeAfter(ctx context.Context, subj access.Subject, act access.Action, out audit.Outcome, details map[string]string) {
	select {
	case g.outcomes.slots <- struct{}{}:
	default:
		g.recordOutcome(ctx, subj, act, out, details)
		return
	}
	g.outcomes.wg.Go(func() {
		defer func() { <-g.outcomes.slots }()
		g.recordOutcome(ctx, subj, act, out, details)
	})
}

func (g *Gateway) event(subj access.Subject, act access.Action, typ audit.Type) audit.Event {
	ev := audit.Event{
		Type: typ, Actor: subj.Agent, Agent: subj.Agent, Task: string(subj.Task),
		Action: act.Kind, Resource: "host:" + act.Resource, RequestID: act.RequestID, Point: Point,
		Details: map[string]string{"destination": destinationText(act)},
	}
	if subj.Claims != nil {
		ev.Chain, ev.OnBehalfOf = subj.Claims.Act.Chain(), subj.Claims.Subject
	}
	return ev
}

// destinationText is the destination as the pipeline records it.
func destinationText(act access.Action) string {
	d := act.Destination
	return d.Method + " " + d.Host + d.Path
}

// ledgerResource names the target of a request whose target could not
// be read, safely: quoted and bounded.
func ledgerResource(r *http.Request) string { return resource.Quote(r.RequestURI) }

// problem answers an RFC 9457 problem document.
func problem(w http.ResponseWriter, status int, title, detail string) {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Detail string `json:"detail,omitempty"`
	}{"about:blank", title, status, detail})
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)+1))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

// decisionText is why a decision is not an allow, for the caller.
func decisionText(d access.Decision, err error) string {
	var msgs []string
	for _, r := range d.Reasons {
		if r.Message != "" {
			msgs = append(msgs, r.Message)
		} else {
			msgs = append(msgs, r.Policy)
		}
	}
	msgs = append(msgs, d.Errors...)
	if len(msgs) == 0 && err != nil {
		msgs = append(msgs, err.Error())
	}
	if len(msgs) == 0 {
		return "not allowed"
	}
	return strings.Join(msgs, "; ")
}
