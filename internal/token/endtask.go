package token

import (
	"context"
	"errors"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
)

// MaxEndReasonLen bounds the reason an agent gives for ending its task.
const MaxEndReasonLen = 256

// EndedTask is the answer to EndTask: the task the token is for and its
// status now (ended, or the status it had already stopped with), and
// every task this request stopped (the task and its descendants).
type EndedTask struct {
	TaskID  string      `json:"task_id"`
	Status  task.Status `json:"status"`
	Stopped []task.ID   `json:"stopped,omitempty"`
}

// EndTask serves the end_task extension of RFC 7009 revocation: the
// revocation of a task token by its own agent (or an admin) that also
// revokes the grant underneath it (RFC 7009 §2.1), the task. The task
// ends — status ended, through the task lifecycle, so every token of it
// and of the tasks delegated from it is refused at once and each stop is
// recorded — and the answer says so.
//
// Unlike Revoke, a token that does not verify is an error, not a silent
// success: the caller must learn that its task did not end. A revoked
// token still names its task. A task that had stopped already is not an
// error; its status is returned. Errors are *Error: invalid_client without
// a caller, invalid_request for a token that is not a valid task token or
// an unusable reason, unauthorized_client for another agent's task,
// temporarily_unavailable when the stores cannot answer.
func (s *Server) EndTask(ctx context.Context, caller Caller, raw, reason string) (*EndedTask, error) {
	if !caller.Admin && caller.Agent.IsZero() {
		return nil, errInvalidClient(nil, "client authentication is required")
	}
	if reason == "" {
		reason = "ended by its agent"
	}
	if len(reason) > MaxEndReasonLen || !utf8.ValidString(reason) || strings.IndexFunc(reason, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
		return nil, errInvalidRequest("reason must be at most %d bytes of UTF-8 without control characters", MaxEndReasonLen)
	}
	t, err := s.verifier.verify(ctx, VerifyRequest{Token: raw}, verifyOpts{anyAudience: true, skipDPoP: true, skipRevocation: true})
	if err != nil {
		if e := AsError(err); e.Code == CodeTemporarilyUnavailable {
			return nil, e
		}
		return nil, errInvalidRequest("the token is not valid here (expired, forged or unknown): it cannot end a task; an admin can (mandate task end)")
	}
	c := t.claims
	if c.Use != UseTask || c.TaskID == "" {
		return nil, errInvalidRequest("end_task needs a task token")
	}
	actor := "admin"
	if !caller.Admin {
		if caller.Agent.String() != c.ClientID {
			return nil, newError(CodeUnauthorizedClient, 400, nil, "only the task's own agent or an admin may end it")
		}
		actor = caller.Agent.String()
	}
	id := task.ID(c.TaskID)
	tk, err := s.cfg.Tasks.GetTask(ctx, id)
	switch {
	case errors.Is(err, task.ErrNotFound):
		return nil, errInvalidRequest("the token's task is unknown")
	case err != nil:
		return nil, errUnavailable(err)
	case !caller.Admin && tk.Agent.String() != c.ClientID:
		return nil, newError(CodeUnauthorizedClient, 400, nil, "only the task's own agent or an admin may end it")
	}
	stopped, err := s.lifecycle.Stop(ctx, lifecycle.Stop{
		Known: []task.ID{id},
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) {
			return s.cfg.Tasks.FinishTask(ctx, id, task.StatusEnded, reason, at)
		},
		Event: func(fid task.ID) audit.Event {
			ev := audit.Event{
				Type: audit.TypeTaskEnded, Actor: actor, Agent: tk.Agent.String(), Task: string(fid),
				Reason: reason, Point: auditPoint, Details: map[string]string{"jti": c.ID},
			}
			if fid == id {
				ev.OnBehalfOf, ev.Chain = tk.OnBehalfOf, c.Act.Chain()
			} else {
				ev.Agent, ev.Details = "", map[string]string{"cascade_from": string(id)}
			}
			return ev
		},
	})
	switch {
	case err == nil:
		return &EndedTask{TaskID: string(id), Status: task.StatusEnded, Stopped: stopped}, nil
	case errors.Is(err, task.ErrNotActive):
		now, gerr := s.cfg.Tasks.GetTask(ctx, id)
		if gerr != nil {
			return nil, errUnavailable(gerr)
		}
		return &EndedTask{TaskID: string(id), Status: now.Status}, nil
	}
	// Refused at once all the same; stored and recorded when the store is
	// back (lifecycle.Stop). The caller hears that it is not yet durable.
	return nil, errUnavailable(err)
}
