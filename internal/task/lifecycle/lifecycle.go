// Package lifecycle starts and stops tasks with one order of operations,
// whoever asks: the admin API, token exchange (a task an agent starts or
// delegates), the expiry sweep and an agent's suspension.
//
// Starting: the task is stored, then its event recorded; a task whose
// start cannot be recorded is revoked at once and never gets a token.
//
// Stopping: the tasks known to stop are refused at once (the live
// revocation state every decision checks), before the store is asked; the
// store then stops them and their descendants, which are refused too; each
// stop is recorded. A stop the store or the ledger cannot take now is
// still enforced, and retried by Run until it is stored and recorded: a
// revocation is never lost because the ledger was briefly unavailable.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/task"
)

// Revoker is the live revocation state (token.Revocations): a task it has
// been told of is refused by every decision from then on.
type Revoker interface {
	RevokeTasks(ids ...task.ID)
}

// StopListener ends what stopped tasks hold beyond their tokens (their
// gateway sessions, their secret leases). It handles its own failures
// (retrying them), so it returns nothing.
type StopListener interface {
	TasksStopped(ctx context.Context, ids []task.ID)
}

// Config configures a Service.
type Config struct {
	Tasks    task.Store
	Recorder audit.Recorder
	Revoker  Revoker
	// OnStop, if set, is told of every task the store stopped, right
	// after they are refused, so that what they hold ends with them.
	OnStop StopListener
	// RetryEvery is how often Run retries the stops not yet stored or
	// recorded (default DefaultRetryEvery).
	RetryEvery time.Duration
	Now        func() time.Time
	Logger     *slog.Logger
}

// DefaultRetryEvery is the default retry interval of Run.
const DefaultRetryEvery = 5 * time.Second

// maxPending bounds the stops kept for retry. Past it the oldest is
// dropped with an error in the log; it is still enforced until a restart.
const maxPending = 100_000

// Service starts and stops tasks. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	pending []*stop
}

// New returns a Service.
func New(cfg Config) (*Service, error) {
	if cfg.Tasks == nil || cfg.Recorder == nil || cfg.Revoker == nil {
		return nil, errors.New("lifecycle: a task store, a recorder and a revoker are required")
	}
	if cfg.RetryEvery <= 0 {
		cfg.RetryEvery = DefaultRetryEvery
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Service{cfg: cfg, log: log}, nil
}

// Start stores t and records event(t), its task.started or task.delegated
// event, built once the store has completed t (the taint it inherits). If
// the event cannot be recorded the task is revoked at once (and its
// revocation stored, now or by Run) and the recorder's error is returned:
// no task the ledger does not know of ever acts.
func (s *Service) Start(ctx context.Context, t *task.Task, event func(*task.Task) audit.Event) error {
	if err := t.Validate(); err != nil {
		return err
	}
	if err := s.cfg.Tasks.CreateTask(ctx, t); err != nil {
		return fmt.Errorf("start task: %w", err)
	}
	err := s.cfg.Recorder.Record(ctx, event(t))
	if err == nil {
		return nil
	}
	const reason = "its start could not be recorded"
	_, _ = s.Stop(ctx, Stop{
		Known: []task.ID{t.ID},
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) {
			return s.cfg.Tasks.FinishTask(ctx, t.ID, task.StatusRevoked, reason, at)
		},
		Event: func(id task.ID) audit.Event {
			return audit.Event{Type: audit.TypeTaskRevoked, Agent: t.Agent.String(), Task: string(id), Reason: reason}
		},
	})
	return err
}

// Stop is one way tasks stop.
type Stop struct {
	// Known are the tasks known to stop; they are refused before the
	// store is asked.
	Known []task.ID
	// Store stops the tasks in the store at time at (FinishTask,
	// FinishAgentTasks, ExpireTasks) and returns every task it stopped.
	// task.ErrNotActive means they had stopped already.
	Store func(ctx context.Context, at time.Time) ([]task.ID, error)
	// Event is the event recorded for each stopped task; its Time, if
	// zero, is when the stop began. It may be called long after Stop
	// returns (when the ledger is back), so it captures what it needs.
	Event func(id task.ID) audit.Event
}

// stop is a Stop in progress: at is fixed at the first attempt; stored
// and recorded say how far it got.
type stop struct {
	Stop
	at       time.Time
	stored   bool
	ids      []task.ID
	recorded int // events of ids recorded, in order
	attempts int
}

// Stop refuses st.Known at once, stops the tasks in the store, refuses
// every task the store stopped and records each. It returns the stopped
// tasks. An error from the store is returned (a fault.ErrUnavailable one
// for a store that is down): Known are refused all the same and the stop
// is retried by Run. An event that cannot be recorded is retried by Run
// too; the stop itself has happened and Stop returns no error for it.
func (s *Service) Stop(ctx context.Context, st Stop) ([]task.ID, error) {
	s.cfg.Revoker.RevokeTasks(st.Known...)
	op := &stop{Stop: st, at: s.cfg.Now()}
	err := s.advance(ctx, op)
	if !op.done() && retryable(op, err) {
		s.keep(op)
	}
	if !op.stored || errors.Is(err, task.ErrNotActive) || errors.Is(err, task.ErrNotFound) {
		return nil, err
	}
	return op.ids, nil
}

// advance takes op as far as it goes: store, refuse, record.
func (s *Service) advance(ctx context.Context, op *stop) error {
	op.attempts++
	if !op.stored {
		ids, err := op.Store(ctx, op.at)
		switch {
		case (errors.Is(err, task.ErrNotActive) || errors.Is(err, task.ErrNotFound)) && op.attempts == 1:
			op.stored = true // nothing to stop: the caller hears why
			return err
		case errors.Is(err, task.ErrNotActive):
			// A retry found it stopped: an earlier attempt did store it.
			ids = op.Known
		case err != nil:
			return err
		}
		op.stored, op.ids = true, ids
		s.cfg.Revoker.RevokeTasks(ids...)
		if s.cfg.OnStop != nil {
			s.cfg.OnStop.TasksStopped(ctx, ids)
		}
	}
	for op.recorded < len(op.ids) {
		ev := op.Event(op.ids[op.recorded])
		if ev.Time.IsZero() {
			ev.Time = op.at // when it stopped, however late it is recorded
		}
		if err := s.cfg.Recorder.Record(ctx, ev); err != nil {
			s.log.ErrorContext(ctx, "task stop enforced but not yet recorded; retrying", "task", op.ids[op.recorded], "err", err)
			return err
		}
		op.recorded++
	}
	return nil
}

func (op *stop) done() bool { return op.stored && op.recorded == len(op.ids) }

// retryable reports whether op, which failed with err, may succeed later:
// any failure to record (the ledger comes back), and a store that is
// unavailable; a store that refuses the stop for good is not retried.
func retryable(op *stop, err error) bool {
	return op.stored || errors.Is(err, fault.ErrUnavailable) || errors.Is(err, audit.ErrUnavailable)
}

func (s *Service) keep(op *stop) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.pending) >= maxPending {
		s.log.Error("too many task stops awaiting the store or ledger; dropping the oldest (still enforced until restart)", "task", s.pending[0].Known)
		s.pending = s.pending[1:]
	}
	s.pending = append(s.pending, op)
}

// Pending is how many stops wait for the store or the ledger.
func (s *Service) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Retry retries every pending stop once, in order, and returns how many
// are still pending.
func (s *Service) Retry(ctx context.Context) int {
	s.mu.Lock()
	ops := s.pending
	s.pending = nil
	s.mu.Unlock()
	var left []*stop
	for _, op := range ops {
		err := s.advance(ctx, op)
		if err != nil && !retryable(op, err) {
			s.log.ErrorContext(ctx, "task stop refused by the store; not retried (still enforced until restart)", "task", op.Known, "attempt", op.attempts, "err", err)
		}
		if !op.done() && retryable(op, err) {
			left = append(left, op)
		}
	}
	s.mu.Lock()
	s.pending = append(left, s.pending...)
	n := len(s.pending)
	s.mu.Unlock()
	return n
}

// Run retries pending stops every RetryEvery until ctx is done.
func (s *Service) Run(ctx context.Context) error {
	t := time.NewTicker(s.cfg.RetryEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if n := s.Pending(); n > 0 {
				s.log.Error("stopping with task stops not stored or recorded; they are enforced until restart", "pending", n)
			}
			return nil
		case <-t.C:
			s.Retry(ctx)
		}
	}
}
