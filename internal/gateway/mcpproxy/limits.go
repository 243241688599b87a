package mcpproxy

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// limiter holds the per-agent and per-agent-and-tool rate limiters and the
// per-task call counts.
type limiter struct {
	l     Limits
	mu    sync.Mutex
	agent map[string]*rate.Limiter
	tool  map[[2]string]*rate.Limiter
	calls map[string]int64
}

// maxLimiters bounds the limiter maps; beyond it they are reset (losing
// some accuracy rather than growing without bound).
const maxLimiters = 100_000

func newLimiter(l Limits) *limiter {
	return &limiter{l: l, agent: map[string]*rate.Limiter{}, tool: map[[2]string]*rate.Limiter{}, calls: map[string]int64{}}
}

// wait returns how long the caller must wait before the call is within
// the rate limits, or zero if it may proceed now (consuming a token).
func (l *limiter) wait(agent, resource string) time.Duration {
	if l.l.AgentRate <= 0 && l.l.ToolRate <= 0 {
		return 0
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	var rs []*rate.Reservation
	if l.l.AgentRate > 0 {
		a := l.agent[agent]
		if a == nil {
			if len(l.agent) >= maxLimiters {
				clear(l.agent)
			}
			a = rate.NewLimiter(l.l.AgentRate, l.l.AgentBurst)
			l.agent[agent] = a
		}
		rs = append(rs, a.ReserveN(now, 1))
	}
	if l.l.ToolRate > 0 {
		k := [2]string{agent, resource}
		t := l.tool[k]
		if t == nil {
			if len(l.tool) >= maxLimiters {
				clear(l.tool)
			}
			t = rate.NewLimiter(l.l.ToolRate, l.l.ToolBurst)
			l.tool[k] = t
		}
		rs = append(rs, t.ReserveN(now, 1))
	}
	var d time.Duration
	for _, r := range rs {
		d = max(d, r.DelayFrom(now))
	}
	if d > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
	}
	return d
}

func (l *limiter) budgetLeft(task string) bool {
	if l.l.TaskCalls <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls[task] < l.l.TaskCalls
}

// spend counts one call against the task's budget; false when spent.
func (l *limiter) spend(task string) bool {
	if l.l.TaskCalls <= 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.calls[task] >= l.l.TaskCalls {
		return false
	}
	l.calls[task]++
	return true
}
