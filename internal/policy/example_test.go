package policy_test

import (
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/policy"
)

func Example() {
	set, err := policy.Compile(append(policy.DefaultSources(), policy.Source{
		Name: "site.cedar",
		Text: []byte(`@id("no-prod-config") @reason("production config is changed by humans")
forbid (principal, action == Action::"file.write", resource == File::"/repo/prod.yaml");`),
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	engine := policy.NewEngine(set, nil)
	req := &policy.Request{
		Agent:    policy.Agent{ID: "spiffe://example.org/agent/coder", Tier: policy.TierSupervised},
		Action:   policy.ActionFileWrite,
		Resource: policy.Resource{ID: "/repo/main.go"},
		Risk:     policy.RiskWrite,
		Task:     policy.TaskInfo{ID: "tsk_1", InScope: true, Sensitivity: "internal"},
		Time:     time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC),
	}
	d, _ := engine.Decide(req)
	fmt.Println(d.Effect, d.Approvals)

	req.Approvals = []string{"supervised-write"}
	d, _ = engine.Decide(req)
	fmt.Println(d.Effect, d.Obligations)

	req.Resource.ID = "/repo/prod.yaml"
	d, _ = engine.Decide(req)
	fmt.Println(d.Effect, d.Reasons[0].Policy+":", d.Reasons[0].Message)
	// Output:
	// approval_required [supervised-write]
	// allow [full_arguments]
	// deny no-prod-config: production config is changed by humans
}
