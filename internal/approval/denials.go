package approval

import (
	"context"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// TypeDenialsExceeded: a task's actions were denied Threshold times
// within Window — an agent working against its policies. The owner (and
// the escalation contact) are notified, and the task stopped where
// configured.
const TypeDenialsExceeded audit.Type = "task.denials_exceeded"

// maxWatched bounds the tasks whose recent denials are kept.
const maxWatched = 10_000

// DenialsConfig configures a Denials watch.
type DenialsConfig struct {
	// Threshold denials of one task within Window raise the alarm; a
	// Threshold below 1 watches nothing.
	Threshold int
	Window    time.Duration
	// Agent returns an agent's owner and escalation contact.
	Agent func(ctx context.Context, agent string) (owner, escalation string, err error)
	// Stop, if set, stops the task when the alarm is raised (the task
	// lifecycle's revocation); nil only notifies.
	Stop     func(ctx context.Context, id task.ID, reason string) error
	Recorder audit.Recorder
	Notifier Notifier
	Now      func() time.Time
	Logger   *slog.Logger
}

// Denials watches how often each task's actions are denied (the pipeline
// tells it: access.DenialObserver) and raises one alarm per window when a
// task reaches the threshold: a ledger event, a notice to the agent's
// owner and escalation contact, and, where configured, the task stopped.
type Denials struct {
	cfg DenialsConfig
	log *slog.Logger

	mu    sync.Mutex
	seen  map[task.ID][]time.Time // the denials within the window, oldest first
	fired map[task.ID]time.Time   // when the last alarm was raised
	wg    sync.WaitGroup
}

// NewDenials returns a Denials watch.
func NewDenials(cfg DenialsConfig) *Denials {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Denials{cfg: cfg, log: log, seen: map[task.ID][]time.Time{}, fired: map[task.ID]time.Time{}}
}

// Denied counts a denial of an action of task id by agent. It never
// blocks: an alarm is raised in the background.
func (d *Denials) Denied(id task.ID, agent string) {
	if d == nil || d.cfg.Threshold < 1 {
		return
	}
	now := d.cfg.Now()
	from := now.Add(-d.cfg.Window)
	d.mu.Lock()
	if len(d.seen) >= maxWatched && d.seen[id] == nil {
		d.sweep(from)
	}
	ts := d.seen[id]
	for len(ts) > 0 && !ts[0].After(from) {
		ts = ts[1:]
	}
	ts = append(ts, now)
	if len(ts) > d.cfg.Threshold {
		ts = ts[len(ts)-d.cfg.Threshold:]
	}
	d.seen[id] = ts
	fire := len(ts) >= d.cfg.Threshold && !d.fired[id].After(from)
	if fire {
		d.fired[id] = now
	}
	d.mu.Unlock()
	if fire {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			d.alarm(context.Background(), id, agent)
		}()
	}
}

// sweep forgets the tasks with no denial since from; d.mu is held.
func (d *Denials) sweep(from time.Time) {
	for id, ts := range d.seen {
		if len(ts) == 0 || !ts[len(ts)-1].After(from) {
			delete(d.seen, id)
			delete(d.fired, id)
		}
	}
	if len(d.seen) >= maxWatched {
		clear(d.seen) // a flood of tasks: start over rather than grow
		clear(d.fired)
	}
}

// Wait waits for the alarms raised so far (tests; shutdown).
func (d *Denials) Wait() { d.wg.Wait() }

func (d *Denials) alarm(ctx context.Context, id task.ID, agent string) {
	reason := fmt.Sprintf("%d actions denied within %s", d.cfg.Threshold, d.cfg.Window)
	r := &Request{Agent: agent, Task: id, Reason: reason}
	if d.cfg.Agent != nil {
		if owner, esc, err := d.cfg.Agent(ctx, agent); err == nil {
			r.AgentOwner, r.Escalation = owner, esc
		}
	}
	ev := audit.Event{Type: TypeDenialsExceeded, Actor: "system", Agent: agent, Task: string(id), Reason: reason,
		Details: map[string]string{"threshold": strconv.Itoa(d.cfg.Threshold), "window": d.cfg.Window.String(), "stopped": strconv.FormatBool(d.cfg.Stop != nil)}}
	if d.cfg.Recorder != nil {
		if err := d.cfg.Recorder.Record(ctx, ev); err != nil {
			d.log.Error("the repeated-denials alarm could not be recorded", "task", id, "err", err)
		}
	}
	if d.cfg.Notifier != nil {
		d.cfg.Notifier.Notify(Notice{Kind: NoticeDenials, Request: r})
	}
	if d.cfg.Stop != nil {
		if err := d.cfg.Stop(ctx, id, "stopped by mandate: "+reason); err != nil {
			d.log.Error("the task could not be stopped after repeated denials", "task", id, "err", err)
		}
	}
}

// NoticeDenials is the Notice kind of a repeated-denials alarm: its
// Request carries the agent, the task, the owner, the escalation contact
// and the reason only.
const NoticeDenials = "denials"
