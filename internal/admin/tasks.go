package admin

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
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
	if err := s.cfg.Tasks.CreateTask(ctx, t); err != nil {
		return nil, fmt.Errorf("start task: %w", err)
	}
	ev := audit.Event{
		Type: audit.TypeTaskStarted, Agent: a.ID.String(), Chain: []string{a.ID.String()},
		OnBehalfOf: t.OnBehalfOf, Task: string(t.ID),
		Details: map[string]string{
			"purpose": t.Purpose, "scope": t.Scope.String(), "sensitivity": string(t.Sensitivity),
			"expires_at": t.ExpiresAt.Format(time.RFC3339),
		},
	}
	if err := s.record(ctx, ev); err != nil {
		// Without its event the task must not be usable.
		if _, ferr := s.cfg.Tasks.FinishTask(ctx, t.ID, task.StatusRevoked, "audit unavailable", now); ferr == nil {
			s.cfg.Revoker.RevokeTasks(t.ID)
		}
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
	finished, err := s.cfg.Tasks.FinishTask(ctx, tid, to, reason, s.now())
	if err != nil {
		return nil, nil, fmt.Errorf("%s task: %w", to, err)
	}
	s.cfg.Revoker.RevokeTasks(finished...)
	t, err := s.cfg.Tasks.GetTask(ctx, tid)
	if err != nil {
		return nil, nil, err
	}
	for _, fid := range finished {
		ev := audit.Event{Type: typ, Task: string(fid), Reason: reason}
		if fid == tid {
			ev.Agent = t.Agent.String()
		} else {
			ev.Details = map[string]string{"cascade_from": string(tid)}
		}
		if err := s.record(ctx, ev); err != nil {
			return nil, nil, err
		}
	}
	return t, finished, nil
}

// ExpireTasks marks every task past its expiry as expired and records it.
// Their tokens already expire with them; this keeps the record exact.
func (s *Service) ExpireTasks(ctx context.Context) error {
	expired, err := s.cfg.Tasks.ExpireTasks(ctx, s.now())
	if err != nil {
		return fmt.Errorf("expire tasks: %w", err)
	}
	s.cfg.Revoker.RevokeTasks(expired...)
	for _, id := range expired {
		if err := s.record(ctx, audit.Event{Type: audit.TypeTaskExpired, Task: string(id)}); err != nil {
			return err
		}
	}
	return nil
}

// RunExpiry calls ExpireTasks every interval until ctx is done.
func (s *Service) RunExpiry(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if err := s.ExpireTasks(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("task expiry sweep failed", "err", err)
			}
		}
	}
}
