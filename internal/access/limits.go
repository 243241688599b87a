package access

import (
	"context"
	"fmt"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// Policy ids of the pipeline's own limits, as they appear in a denial's
// reasons and in the ledger.
const (
	// PolicyRateLimit: a per-agent or per-agent-and-resource rate limit
	// of the enforcement point; the Decision's RetryAfter says when to
	// try again.
	PolicyRateLimit = "mandate:rate-limit"
	// PolicyCallBudget: the task's budget of calls through the
	// enforcement point is spent.
	PolicyCallBudget = "mandate:call-budget"
)

// Limits bound the actions an enforcement point (Action.Point) may be
// allowed: how fast each agent, and each agent on each resource, may act,
// and how many actions each task may take there. Zero fields are
// unlimited. The MCP gateway's limits (mcp.agent_rate, mcp.tool_rate,
// mcp.task_calls) are the Limits of point "mcp".
type Limits struct {
	// AgentRate is the sustained rate of decisions per agent per second;
	// AgentBurst (default: AgentRate, at least 1) how many may come at
	// once.
	AgentRate  rate.Limit
	AgentBurst int
	// ToolRate and ToolBurst are the same per agent and resource.
	ToolRate  rate.Limit
	ToolBurst int
	// TaskCalls is each task's budget of allowed actions at the point.
	TaskCalls int64
}

func (l Limits) agentBurst() int {
	if l.AgentBurst > 0 {
		return l.AgentBurst
	}
	return max(1, int(l.AgentRate))
}

func (l Limits) toolBurst() int {
	if l.ToolBurst > 0 {
		return l.ToolBurst
	}
	return max(1, int(l.ToolRate))
}

// maxLimiters bounds each limiter map; past it the map starts over
// (losing some accuracy rather than growing without bound).
const maxLimiters = 100_000

// limiter is the pipeline's rate limiters and call counts, by enforcement
// point. The zero value is ready to use.
type limiter struct {
	mu    sync.Mutex
	agent map[[2]string]*rate.Limiter // point, agent
	tool  map[[3]string]*rate.Limiter // point, agent, resource
	calls map[[2]string]int64         // point, task
}

// rateLimited decides whether act is over its point's rate limits. When
// it is, the denial is recorded (it is a decision like any other) and
// returned with limited true; otherwise a token is taken from each
// limiter and the decision proceeds. Previews are never limited.
func (p *Pipeline) rateLimited(ctx context.Context, taskID task.ID, agent string, act Action) (Decision, bool, error) {
	l, ok := p.cfg.Limits[act.Point]
	if !ok || act.preview || l.AgentRate <= 0 && l.ToolRate <= 0 {
		return Decision{}, false, nil
	}
	wait := p.lim.reserve(l, act.Point, agent, act.Resource, p.cfg.Now())
	if wait <= 0 {
		return Decision{}, false, nil
	}
	secs := int64((wait + time.Second - 1) / time.Second)
	d := Decision{Task: taskID, Agent: agent, RetryAfter: wait,
		Risk: p.cfg.Classifier.Classify(act.Kind, act.Resource, trustedAnnotations(act)).Risk}
	d.Effect = policy.Deny
	d.Reasons = []policy.Reason{{Policy: PolicyRateLimit, Effect: "forbid",
		Message: fmt.Sprintf("rate limit exceeded; retry after %ds", secs)}}
	if err := p.record(ctx, d, act, nil); err != nil {
		return d, true, err
	}
	return d, true, nil
}

// reserve takes one token from the agent's and the agent-and-resource's
// limiters of point, or none if either would make the caller wait; it
// returns how long.
func (m *limiter) reserve(l Limits, point, agent, resource string, now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	var rs []*rate.Reservation
	if l.AgentRate > 0 {
		if m.agent == nil || len(m.agent) >= maxLimiters {
			m.agent = make(map[[2]string]*rate.Limiter)
		}
		k := [2]string{point, agent}
		a := m.agent[k]
		if a == nil {
			a = rate.NewLimiter(l.AgentRate, l.agentBurst())
			m.agent[k] = a
		}
		rs = append(rs, a.ReserveN(now, 1))
	}
	if l.ToolRate > 0 {
		if m.tool == nil || len(m.tool) >= maxLimiters {
			m.tool = make(map[[3]string]*rate.Limiter)
		}
		k := [3]string{point, agent, resource}
		t := m.tool[k]
		if t == nil {
			t = rate.NewLimiter(l.ToolRate, l.toolBurst())
			m.tool[k] = t
		}
		rs = append(rs, t.ReserveN(now, 1))
	}
	var wait time.Duration
	for _, r := range rs {
		wait = max(wait, r.DelayFrom(now))
	}
	if wait > 0 {
		for _, r := range rs {
			r.CancelAt(now)
		}
	}
	return wait
}

// spendCall reserves one call of the task's budget at act's point for an
// allow, atomically: no interleaving of decisions allows more calls than
// the budget. A spent budget turns the allow into a mandate:call-budget
// denial. Anything but an allow, and a preview, is returned unchanged.
func (p *Pipeline) spendCall(taskID task.ID, act Action, d Decision) Decision {
	l, ok := p.cfg.Limits[act.Point]
	if !ok || l.TaskCalls <= 0 || act.preview || !d.Allowed() {
		return d
	}
	k := [2]string{act.Point, string(taskID)}
	p.lim.mu.Lock()
	defer p.lim.mu.Unlock()
	if p.lim.calls == nil {
		p.lim.calls = make(map[[2]string]int64)
	}
	if n := p.lim.calls[k]; n >= l.TaskCalls {
		out := Decision{Task: d.Task, Agent: d.Agent, Risk: d.Risk}
		out.Effect = policy.Deny
		out.Reasons = []policy.Reason{{Policy: PolicyCallBudget, Effect: "forbid",
			Message: fmt.Sprintf("the task's budget of %d calls through %s is spent", l.TaskCalls, act.Point)}}
		return out
	}
	if len(p.lim.calls) >= maxLimiters {
		// Counts are per task: forgetting them all would refill every
		// budget, so only the finished tasks' are dropped.
		p.sweepCalls()
	}
	p.lim.calls[k]++
	return d
}

// releaseCall gives back a call spendCall reserved for an allow that did
// not happen (its decision could not be recorded).
func (p *Pipeline) releaseCall(taskID task.ID, act Action, d Decision) {
	l, ok := p.cfg.Limits[act.Point]
	if !ok || l.TaskCalls <= 0 || act.preview || !d.Allowed() {
		return
	}
	k := [2]string{act.Point, string(taskID)}
	p.lim.mu.Lock()
	defer p.lim.mu.Unlock()
	if p.lim.calls[k] > 0 {
		p.lim.calls[k]--
	}
}

// sweepCalls drops the call counts of tasks the pipeline no longer
// tracks (finished by time). p.lim.mu is held.
func (p *Pipeline) sweepCalls() {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for k := range p.lim.calls {
		if _, live := p.tasks[task.ID(k[1])]; !live {
			delete(p.lim.calls, k)
		}
	}
}
