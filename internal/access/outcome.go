package access

import (
	"context"
	"fmt"
	"maps"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// Outcome statuses of an action that ran.
const (
	OutcomeOK          = "ok"
	OutcomeError       = "error"
	OutcomeInterrupted = "interrupted"
)

// Outcome is what an out-of-process enforcement point reports after the
// fact: the outcome of an action it let run (audit.TypeActionCompleted),
// or a coding-agent session joining its task or ending
// (audit.TypeAgentSessionStarted, audit.TypeAgentSessionEnded).
type Outcome struct {
	Type audit.Type
	// Kind and Resource name the action (TypeActionCompleted only), as it
	// was decided: Resource in canonical form.
	Kind, Resource string
	// Status is OutcomeOK, OutcomeError or OutcomeInterrupted
	// (TypeActionCompleted only).
	Status string
	// Details are recorded as they are (bounded by the ledger's limits);
	// never secrets.
	Details map[string]string
	// Point names the enforcement point; RequestID correlates the event
	// with the decision (the same request ID).
	Point, RequestID string
}

// RecordOutcome records o for subj, an agent authenticated by its task
// token (Authenticate); it returns once the event is durable. An outcome
// that is not well-formed is ErrInvalidAction and recorded nowhere; a
// ledger that cannot take it is audit.ErrUnavailable.
func (p *Pipeline) RecordOutcome(ctx context.Context, subj Subject, o Outcome) error {
	ev := audit.Event{
		Type: o.Type, Actor: subj.Agent, Agent: subj.Agent, Task: string(subj.Task),
		Point: o.Point, RequestID: o.RequestID, Details: maps.Clone(o.Details),
	}
	switch o.Type {
	case audit.TypeActionCompleted:
		if policy.ResourceType(o.Kind) == "" {
			return fmt.Errorf("%w: unknown action kind %s", ErrInvalidAction, resource.Quote(o.Kind))
		}
		if err := resource.Check(o.Kind, o.Resource); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidAction, err)
		}
		switch o.Status {
		case OutcomeOK, OutcomeError, OutcomeInterrupted:
		default:
			return fmt.Errorf("%w: outcome status must be %s, %s or %s", ErrInvalidAction, OutcomeOK, OutcomeError, OutcomeInterrupted)
		}
		ev.Action, ev.Resource = o.Kind, typedResource(Action{Kind: o.Kind, Resource: o.Resource})
		ev.Outcome = &audit.Outcome{Status: o.Status}
	case audit.TypeAgentSessionStarted, audit.TypeAgentSessionEnded:
		if o.Kind != "" || o.Resource != "" || o.Status != "" {
			return fmt.Errorf("%w: a session event names no action", ErrInvalidAction)
		}
	default:
		return fmt.Errorf("%w: %s is not an outcome", ErrInvalidAction, resource.Quote(string(o.Type)))
	}
	if p.cfg.Revocations.Inactive(subj.Task, []string{subj.Agent}) {
		// Still recorded: what ran, ran. The mark tells it apart.
		if ev.Details == nil {
			ev.Details = map[string]string{}
		}
		ev.Details["task_active"] = "false"
	}
	if err := p.cfg.Recorder.Record(ctx, ev); err != nil {
		p.log.Error("outcome not recorded", "err", err, "task", subj.Task, "type", o.Type)
		return fmt.Errorf("%w: %w", audit.ErrUnavailable, err)
	}
	return nil
}
