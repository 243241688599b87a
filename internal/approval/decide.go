package approval

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// The state machine: a pending request is approved, denied, expired or
// cancelled exactly once; an approval that can no longer be used (its
// policy changed) expires. Every change is recorded before it takes
// effect, under decideMu.

// maxTaskReach bounds an approval of reach task whose task's expiry is
// not known.
const maxTaskReach = 24 * time.Hour

// Decision is a person's answer to a request.
type Decision struct {
	ID       ID
	Approver Approver
	Approve  bool
	Reason   string
	// Reach is what an approval covers (ReachOnce if empty).
	Reach Reach
	// Digest, if set, is the arguments digest the decider saw: a request
	// bound to other arguments is refused (ErrDigestMismatch).
	Digest string
	// Authorize decides whether the approver may decide r as asked (the
	// access pipeline's approval.decide decision, recorded there). A nil
	// Authorize refuses.
	Authorize func(ctx context.Context, r *Request) error
}

// Decide approves or denies a pending request. It refuses, and records
// the refusal (approval.refused), an unknown (ErrNotFound), decided
// (ErrDecided) or expired (ErrExpired) request, one bound to another
// digest (ErrDigestMismatch), an approval the policy no longer asks for
// (ErrPolicyChanged), and what Authorize refuses (ErrForbidden). Nothing
// is half-granted: the decision is recorded, then stored, then published.
func (s *Service) Decide(ctx context.Context, d Decision) (*Request, error) {
	reach := d.Reach
	if reach == "" || !d.Approve {
		reach = ReachOnce
	}
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	r, err := s.cfg.Store.GetApproval(ctx, d.ID)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, s.refuse(ctx, &Request{ID: d.ID}, d.Approver, fmt.Errorf("%w: %s", ErrNotFound, d.ID))
		}
		return nil, err
	}
	now := s.now()
	switch {
	case r.Status != StatusPending:
		return nil, s.refuse(ctx, r, d.Approver, fmt.Errorf("%w: %s is %s", ErrDecided, r.ID, r.Status))
	case !now.Before(r.ExpiresAt):
		if _, err := s.transition(ctx, r, StatusExpired, "system", "no decision before "+r.ExpiresAt.Format(time.RFC3339), "expired"); err != nil {
			return nil, err
		}
		return nil, s.refuse(ctx, r, d.Approver, fmt.Errorf("%w: %s expired at %s", ErrExpired, r.ID, r.ExpiresAt.Format(time.RFC3339)))
	case d.Digest != "" && d.Digest != r.ArgsDigest:
		return nil, s.refuse(ctx, r, d.Approver, fmt.Errorf("%w: %s is bound to %s", ErrDigestMismatch, r.ID, r.ArgsDigest))
	case d.Approve && s.cfg.PolicyVersion(r.Approvals) != r.PolicyVersion:
		if _, err := s.transition(ctx, r, StatusExpired, "system", "the policy changed since the request was made", "expired"); err != nil {
			return nil, err
		}
		return nil, s.refuse(ctx, r, d.Approver, fmt.Errorf("%w: %s asked under %s; the call asks again if it still needs approval", ErrPolicyChanged, r.ID, r.PolicyVersion))
	}
	if d.Authorize == nil {
		return nil, fmt.Errorf("%w: no authorization for approval decisions is configured", ErrForbidden)
	}
	c := r.clone()
	c.Reach = reach
	if err := d.Authorize(ctx, c); err != nil {
		if errors.Is(err, ErrForbidden) {
			return nil, err // recorded by the authorizer
		}
		return nil, fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	to, kind := StatusDenied, "denied"
	if d.Approve {
		to, kind = StatusApproved, "approved"
		r.Reach = reach
		r.ApprovedUntil = r.ExpiresAt
		if reach == ReachTask {
			// For the rest of the task (the pipeline checks on every
			// decision that it is active).
			r.ApprovedUntil = r.TaskExpiresAt
			if r.ApprovedUntil.IsZero() {
				r.ApprovedUntil = now.Add(maxTaskReach)
			}
		}
	}
	return s.transition(ctx, r, to, d.Approver.Person, d.Reason, kind)
}

// refuse records a refused decision and returns cause.
func (s *Service) refuse(ctx context.Context, r *Request, a Approver, cause error) error {
	ev := s.event(TypeRefused, r, a.Person)
	ev.Reason = cause.Error()
	if a.Via != "" {
		ev.Details["via"] = a.Via
	}
	if err := s.cfg.Recorder.Record(ctx, ev); err != nil {
		return errors.Join(cause, err)
	}
	return cause
}

// transition moves r (as stored, status pending or approved) to status
// to: recorded, stored (compare-and-set on its status), published.
// Caller holds decideMu.
func (s *Service) transition(ctx context.Context, r *Request, to Status, by, reason, kind string) (*Request, error) {
	from := r.Status
	n := r.clone()
	n.Status, n.Decider, n.DecidedAt, n.Reason = to, by, s.now(), reason
	typ := map[Status]audit.Type{StatusApproved: TypeGranted, StatusDenied: TypeDenied, StatusExpired: TypeExpired, StatusCancelled: TypeCancelled}[to]
	if err := s.cfg.Recorder.Record(ctx, s.event(typ, n, by)); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.UpdateApproval(ctx, n, from); err != nil {
		if errors.Is(err, ErrConflict) {
			return nil, fmt.Errorf("%w: %s changed meanwhile", ErrDecided, r.ID)
		}
		return nil, fmt.Errorf("approval: store decision: %w", err)
	}
	s.publish(n, kind)
	return n.clone(), nil
}

// lapse expires an approval that can no longer be used (best effort: it
// lifts nothing either way).
func (s *Service) lapse(ctx context.Context, r *Request, reason string) {
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	cur, err := s.cfg.Store.GetApproval(ctx, r.ID)
	if err != nil || cur.Status != StatusApproved {
		s.mu.Lock()
		s.unindex(r)
		s.mu.Unlock()
		return
	}
	if _, err := s.transition(ctx, cur, StatusExpired, "system", reason, "expired"); err != nil {
		s.log.Warn("approval not lapsed", "id", r.ID, "err", err)
		s.mu.Lock()
		s.unindex(r)
		s.mu.Unlock()
	}
}

// Cancel cancels a pending request (its task ended, its owner left).
// ErrNotFound, ErrDecided as for Decide.
func (s *Service) Cancel(ctx context.Context, id ID, by, reason string) (*Request, error) {
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	r, err := s.cfg.Store.GetApproval(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status != StatusPending {
		return nil, fmt.Errorf("%w: %s is %s", ErrDecided, r.ID, r.Status)
	}
	return s.transition(ctx, r, StatusCancelled, by, reason, "cancelled")
}

// SetCallback registers where the outcome of a pending request is to be
// announced (ARAP callbacks). ErrNotFound, ErrDecided as for Decide.
func (s *Service) SetCallback(ctx context.Context, id ID, cb *Callback) (*Request, error) {
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	r, err := s.cfg.Store.GetApproval(ctx, id)
	if err != nil {
		return nil, err
	}
	if r.Status != StatusPending {
		return nil, fmt.Errorf("%w: %s is %s", ErrDecided, r.ID, r.Status)
	}
	r.Callback = cb
	if err := s.cfg.Store.UpdateApproval(ctx, r, StatusPending); err != nil {
		return nil, err
	}
	s.publish(r, "")
	return r.clone(), nil
}

// Wait blocks until request id is no longer pending (or it expires, which
// Wait records), or ctx ends (returning the request as it is and
// ctx.Err()). The wake-up is in memory: a decision made through this
// Service (this replica) ends the wait at once.
func (s *Service) Wait(ctx context.Context, id ID) (*Request, error) {
	for {
		s.mu.Lock()
		r := s.pending[id]
		var ch chan struct{}
		if r != nil {
			if ch = s.waiters[id]; ch == nil {
				ch = make(chan struct{})
				s.waiters[id] = ch
			}
		}
		s.mu.Unlock()
		if r == nil {
			return s.cfg.Store.GetApproval(context.WithoutCancel(ctx), id)
		}
		left := r.ExpiresAt.Sub(s.now())
		if left <= 0 {
			if err := s.expire(context.WithoutCancel(ctx), id); err != nil {
				return r.clone(), err
			}
			continue
		}
		timer := time.NewTimer(left)
		select {
		case <-ctx.Done():
			timer.Stop()
			return r.clone(), ctx.Err()
		case <-ch:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// expire expires a pending request whose time is up.
func (s *Service) expire(ctx context.Context, id ID) error {
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	r, err := s.cfg.Store.GetApproval(ctx, id)
	if err != nil {
		return err
	}
	if r.Status != StatusPending {
		s.publish(r, "")
		return nil
	}
	if s.now().Before(r.ExpiresAt) {
		return nil
	}
	_, err = s.transition(ctx, r, StatusExpired, "system", "no decision before "+r.ExpiresAt.Format(time.RFC3339), "expired")
	return err
}

// Sweep expires overdue pending requests and escalates those pending for
// longer than EscalateAfter. Run calls it periodically.
func (s *Service) Sweep(ctx context.Context) {
	now := s.now()
	var overdue, escalate []ID
	s.mu.RLock()
	for id, r := range s.pending {
		switch {
		case !now.Before(r.ExpiresAt):
			overdue = append(overdue, id)
		case s.cfg.EscalateAfter > 0 && !r.Escalated && now.Sub(r.CreatedAt) >= s.cfg.EscalateAfter:
			escalate = append(escalate, id)
		}
	}
	s.mu.RUnlock()
	for _, id := range overdue {
		if err := s.expire(ctx, id); err != nil {
			s.log.Warn("approval request not expired", "id", id, "err", err)
		}
	}
	for _, id := range escalate {
		if err := s.escalate(ctx, id); err != nil {
			s.log.Warn("approval request not escalated", "id", id, "err", err)
		}
	}
}

// escalate marks a request escalated, records it and notifies.
func (s *Service) escalate(ctx context.Context, id ID) error {
	s.decideMu.Lock()
	defer s.decideMu.Unlock()
	r, err := s.cfg.Store.GetApproval(ctx, id)
	if err != nil || r.Status != StatusPending || r.Escalated {
		return err
	}
	r.Escalated = true
	ev := s.event(TypeEscalated, r, "system")
	ev.Details["escalation"] = r.Escalation
	ev.Details["pending_for"] = s.now().Sub(r.CreatedAt).Round(time.Second).String()
	if err := s.cfg.Recorder.Record(ctx, ev); err != nil {
		return err
	}
	if err := s.cfg.Store.UpdateApproval(ctx, r, StatusPending); err != nil {
		return err
	}
	s.publish(r, "escalated")
	return nil
}

// Run sweeps every interval until ctx ends.
func (s *Service) Run(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.Sweep(ctx)
		}
	}
}
