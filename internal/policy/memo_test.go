package policy

import (
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// TestMemoizedInputsMatchBuilt: on random requests drawn from small
// vocabularies (so that they share agents, tasks, chains and resources
// in every combination), the Cedar input built through the memos equals
// the one built from scratch.
func TestMemoizedInputsMatchBuilt(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(3, 4))
	pick := func(ss ...string) string { return ss[rng.IntN(len(ss))] }
	c := newCaches()
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	for i := range 5000 {
		r := &Request{
			Agent:  Agent{ID: pick("spiffe://x/agent/a", "spiffe://x/agent/b"), Tier: pick(TierAssist, TierAutonomous), Owner: pick("alice", "bob")},
			Action: pick(ActionToolCall, ActionFileRead, ActionFileWrite),
			Risk:   pick(RiskRead, RiskWrite),
			Task: TaskInfo{ID: pick("tsk_1", "tsk_2", "tsk_3"), Purpose: pick("", "fix"), OnBehalfOf: pick("alice", "carol"),
				InScope: rng.IntN(2) == 0, Sensitivity: pick("", "confidential"), Depth: rng.IntN(2)},
			Resource: Resource{ID: pick("srv/t", "/a.go"), Server: pick("", "srv"), Labels: [][]string{nil, {"draft"}}[rng.IntN(2)]},
		}
		if rng.IntN(2) == 0 {
			r.Agent.Labels = map[string]string{"team": pick("red", "blue")}
		}
		if r.Task.Depth > 0 {
			r.Task.Chain = []string{pick("spiffe://x/agent/root", "spiffe://x/agent/a"), r.Agent.ID}
		}
		if rng.IntN(3) == 0 {
			r.Task.Scope = []string{pick("tool.call:srv/*", "file.read:**")}
		}
		memoized, built := toCedar(r, now, c), toCedar(r, now, nil)
		if !reflect.DeepEqual(memoized.principal, built.principal) || !reflect.DeepEqual(memoized.resource, built.resource) ||
			!reflect.DeepEqual(memoized.ctx, built.ctx) || !reflect.DeepEqual(memoized.req, built.req) {
			t.Fatalf("request %d %+v: memoized input differs from the one built from scratch", i, r)
		}
		putInput(memoized)
		putInput(built)
	}
}
