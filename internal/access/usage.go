package access

import (
	"context"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/task"
)

// DefaultUsageFlushInterval is how often RunUsageFlush writes budget usage
// to the task store.
const DefaultUsageFlushInterval = time.Second

// FlushUsage writes the actions counted against each task's budget since
// the last flush to the task store, in one transaction, so that usage
// survives a restart and shows in the task record. The pipeline itself
// enforces budgets from its in-memory count, which is always at least the
// stored one. On failure the counts are kept for the next flush.
func (p *Pipeline) FlushUsage(ctx context.Context) error {
	deltas := make(map[task.ID]task.Usage)
	p.mu.RLock()
	for id, st := range p.tasks {
		st.mu.Lock()
		if st.pending != (task.Usage{}) {
			deltas[id] = st.pending
			st.pending = task.Usage{}
		}
		st.mu.Unlock()
	}
	p.mu.RUnlock()
	if len(deltas) == 0 {
		return nil
	}
	if err := p.cfg.Tasks.AddUsage(ctx, deltas); err != nil {
		p.restorePending(deltas)
		return fmt.Errorf("access: flush budget usage: %w", err)
	}
	return nil
}

// restorePending puts counts that could not be written back, so that the
// next flush retries them. A task swept meanwhile had expired: its usage
// no longer matters for enforcement and is dropped.
func (p *Pipeline) restorePending(deltas map[task.ID]task.Usage) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for id, d := range deltas {
		if st := p.tasks[id]; st != nil {
			st.mu.Lock()
			st.pending.Actions += d.Actions
			st.pending.Writes += d.Writes
			st.mu.Unlock()
		}
	}
}

// RunUsageFlush calls FlushUsage every interval (DefaultUsageFlushInterval
// if not positive) until ctx ends, and once more on the way out.
func (p *Pipeline) RunUsageFlush(ctx context.Context, interval time.Duration) error {
	if interval <= 0 {
		interval = DefaultUsageFlushInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			// The last counts, with a context that outlives ours.
			final, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := p.FlushUsage(final); err != nil {
				p.log.Error("budget usage not saved at shutdown", "err", err)
			}
			return nil
		case <-t.C:
			if err := p.FlushUsage(ctx); err != nil && ctx.Err() == nil {
				p.log.Error("budget usage not saved; will retry", "err", err)
			}
		}
	}
}
