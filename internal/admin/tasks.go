package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
)

// StartTaskRequest is the input to StartTask.
type StartTaskRequest struct {
	// Agent is the agent's name or SPIFFE ID.
	Agent      string `json:"agent"`
	OnBehalfOf string `json:"on_behalf_of"`
	Purpose    string `json:"purpose"`
	// Scope is a list of "ACTION:RESOURCE" patterns (see task.Pattern).
	Scope       []string `json:"scope"`
	Sensitivity string   `json:"sensitivity,omitempty"`
	// TTL is a Go duration ("30m"); empty means the default. It is capped
	// by the configured maximum.
	TTL    string      `json:"ttl,omitempty"`
	Budget task.Budget `json:"budget,omitzero"`
}

// StartTask creates a root task for an active agent, on behalf of a human.
// The agent obtains tokens for it by token exchange with its task_id. The
// task must fit the agent's entitlement, if it has one: a task that does
// not is refused with an error wrapping task.ErrNotEntitled and recorded
// as task.refused.
func (s *Service) StartTask(ctx context.Context, req StartTaskRequest) (*task.Task, error) {
	a, err := s.GetAgent(ctx, req.Agent)
	if err != nil {
		return nil, err
	}
	if !a.Active() {
		return nil, fmt.Errorf("%w: %s is %s", identity.ErrInactive, a.ID, a.Status)
	}
	if strings.HasPrefix(req.OnBehalfOf, "task:") {
		return nil, fmt.Errorf("%w: an admin-started task acts on behalf of a human; delegate by token exchange instead", task.ErrInvalid)
	}
	scope, err := task.ParseScopeList(req.Scope)
	if err != nil {
		return nil, err
	}
	sensitivity := task.SensitivityInternal
	if req.Sensitivity != "" {
		if sensitivity, err = task.ParseSensitivity(req.Sensitivity); err != nil {
			return nil, err
		}
	}
	ttl := s.cfg.DefaultTaskTTL
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil || ttl <= 0 {
			return nil, fmt.Errorf("%w: ttl %q is not a positive duration such as \"30m\"", task.ErrInvalid, req.TTL)
		}
	}
	ttl = min(ttl, s.cfg.MaxTaskTTL)
	now := s.now()
	t := &task.Task{
		ID: task.NewID(), Agent: a.ID, OnBehalfOf: req.OnBehalfOf, Principal: req.OnBehalfOf,
		Purpose: req.Purpose, Scope: scope, Sensitivity: sensitivity, Budget: req.Budget,
		Actors: []identity.ID{a.ID}, Status: task.StatusActive, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := s.admitTask(ctx, t, req.TTL != "", req.Sensitivity != ""); err != nil {
		return nil, err
	}
	ev := audit.Event{
		Type: audit.TypeTaskStarted, Agent: a.ID.String(), Chain: []string{a.ID.String()},
		OnBehalfOf: t.OnBehalfOf, Task: string(t.ID),
		Details: map[string]string{
			"purpose": t.Purpose, "scope": t.Scope.String(), "sensitivity": string(t.Sensitivity),
			"expires_at": t.ExpiresAt.Format(time.RFC3339),
		},
	}
	// Without its event the task is never usable (lifecycle.Start).
	err = s.cfg.Lifecycle.Start(ctx, t, func(t *task.Task) audit.Event {
		if t.Taint != "" {
			// Inherited from the agent's taint window (see task.Store.CreateTask).
			ev.Details["taint"] = string(t.Taint)
		}
		return adminEvent(ctx, ev)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// GetTask returns the task with the given ID.
func (s *Service) GetTask(ctx context.Context, id string) (*task.Task, error) {
	tid, err := task.ParseID(id)
	if err != nil {
		return nil, err
	}
	return s.cfg.Tasks.GetTask(ctx, tid)
}

// ListTasks returns the tasks matching f.
func (s *Service) ListTasks(ctx context.Context, f task.Filter) ([]*task.Task, error) {
	return s.cfg.Tasks.ListTasks(ctx, f)
}

// EndTask finishes a task normally; its descendants end with it.
func (s *Service) EndTask(ctx context.Context, id, reason string) (*task.Task, []task.ID, error) {
	return s.finish(ctx, id, reason, task.StatusEnded, audit.TypeTaskEnded)
}

// RevokeTask stops a task and every task delegated from it.
func (s *Service) RevokeTask(ctx context.Context, id, reason string) (*task.Task, []task.ID, error) {
	return s.finish(ctx, id, reason, task.StatusRevoked, audit.TypeTaskRevoked)
}

func (s *Service) finish(ctx context.Context, id, reason string, to task.Status, typ audit.Type) (*task.Task, []task.ID, error) {
	tid, err := task.ParseID(id)
	if err != nil {
		return nil, nil, err
	}
	t, err := s.cfg.Tasks.GetTask(ctx, tid)
	if err != nil {
		return nil, nil, err
	}
	// Refused at once; stored and recorded now or, if the store or the
	// ledger is down, as soon as they are back (lifecycle.Stop).
	finished, err := s.cfg.Lifecycle.Stop(ctx, lifecycle.Stop{
		Known: []task.ID{tid},
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) {
			return s.cfg.Tasks.FinishTask(ctx, tid, to, reason, at)
		},
		Event: func(fid task.ID) audit.Event {
			ev := audit.Event{Type: typ, Task: string(fid), Reason: reason}
			if fid == tid {
				ev.Agent = t.Agent.String()
			} else {
				ev.Details = map[string]string{"cascade_from": string(tid)}
			}
			return adminEvent(ctx, ev)
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%s task: %w", to, err)
	}
	if t, err = s.cfg.Tasks.GetTask(ctx, tid); err != nil {
		return nil, nil, err
	}
	return t, finished, nil
}

// ExpireTasks marks every task past its expiry as expired and records it.
// Their tokens already expire with them; this keeps the record exact.
func (s *Service) ExpireTasks(ctx context.Context) error {
	_, err := s.cfg.Lifecycle.Stop(ctx, lifecycle.Stop{
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) { return s.cfg.Tasks.ExpireTasks(ctx, at) },
		Event: func(id task.ID) audit.Event {
			return adminEvent(ctx, audit.Event{Type: audit.TypeTaskExpired, Task: string(id)})
		},
	})
	if err != nil {
		return fmt.Errorf("expire tasks: %w", err)
	}
	return nil
}

// RunExpiry calls ExpireTasks every interval until ctx is done (and, when
// the service built its own lifecycle, retries its pending stops).
func (s *Service) RunExpiry(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if s.ownLifecycle {
				s.cfg.Lifecycle.Retry(ctx)
			}
			if err := s.ExpireTasks(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("task expiry sweep failed", "err", err)
			}
		}
	}
}
