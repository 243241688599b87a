package secrets

import (
	"context"
	"errors"
	"slices"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// ObligationReveal is the obligation a policy attaches to a secret.use
// permit to let the agent itself have the value: without it, a secret is
// only ever delivered (injected) where the agent cannot see it.
//
//	@id("ci-reads-the-npm-token")
//	@obligation("reveal")
//	permit (principal == Agent::"spiffe://example.org/agent/ci", action == Action::"secret.use", resource == Secret::"npm_token");
const ObligationReveal = "reveal"

// TypeSecretRevealed: a secret's value was handed to the agent itself,
// as a policy's reveal obligation allowed. TypeRevealRefused: an agent
// asked for a value no policy lets it see.
const (
	TypeSecretRevealed audit.Type = "secret.revealed"
	TypeRevealRefused  audit.Type = "secret.reveal_refused"
)

// ErrNotRevealable: secret.use is allowed, but no policy that allowed it
// carries the reveal obligation: the value is delivered, never shown.
var ErrNotRevealable = errors.New("no policy lets the agent see this secret's value (it can be delivered, not revealed)")

// Reveal hands the value of secret to the agent of task taskID itself,
// when — and only when — the secret.use decision carries ObligationReveal.
// It reuses the task's active lease of the secret or issues one, and
// records the reveal (the value's HMAC) before it returns the value; a
// refusal is recorded too. Errors: a *DecisionError (denied, held), an
// error wrapping ErrNotRevealable, or what Lease returns.
func (b *Broker) Reveal(ctx context.Context, taskID task.ID, secret string) (Value, *Lease, error) {
	name, t, d, err := b.decide(ctx, taskID, secret, 0)
	if err != nil {
		return Value{}, nil, err
	}
	ev := audit.Event{Actor: t.Agent.String(), Agent: t.Agent.String(), Task: string(taskID), Action: "secret.use",
		Resource: "secret:" + string(name), Point: Point, Details: map[string]string{}}
	if !slices.Contains(d.Obligations, ObligationReveal) {
		ev.Type, ev.Decision, ev.Reason = TypeRevealRefused, string(audit.DecisionDeny), ErrNotRevealable.Error()
		if err := b.record(ctx, ev); err != nil {
			return Value{}, nil, err
		}
		return Value{}, nil, ErrNotRevealable
	}
	l, err := b.activeLease(ctx, taskID, name)
	if err != nil {
		return Value{}, nil, err
	}
	if l == nil {
		if l, err = b.issue(ctx, t, name, 0, d); err != nil {
			return Value{}, nil, err
		}
	}
	var v []byte
	if l.Kind == KindStatic {
		s, sealed, err := b.cfg.Store.GetSecret(ctx, name)
		if err != nil {
			return Value{}, nil, err
		}
		v, err = b.open(s, sealed)
		if err != nil {
			return Value{}, nil, err
		}
	} else if v, err = b.leaseValue(ctx, l); err != nil {
		return Value{}, nil, err
	}
	ev.Type, ev.Decision = TypeSecretRevealed, string(audit.DecisionAllow)
	ev.Details["lease"], ev.Details["value_hmac"] = string(l.ID), b.cfg.Digester.HMAC(v)
	if err := b.record(ctx, ev); err != nil {
		clear(v)
		return Value{}, nil, err // not revealed unless recorded
	}
	return NewValue(v), l, nil
}

// activeLease returns task taskID's active lease of secret name that
// does not end within renewBefore, or nil.
func (b *Broker) activeLease(ctx context.Context, taskID task.ID, name Name) (*Lease, error) {
	active, err := b.cfg.Store.ListLeases(ctx, LeaseFilter{Task: taskID, Secret: name, Statuses: []LeaseStatus{LeaseActive}, Limit: 1})
	if err != nil || len(active) == 0 {
		return nil, err
	}
	if !active[0].ExpiresAt.After(b.now().Add(renewBefore)) {
		return nil, nil
	}
	return active[0], nil
}
