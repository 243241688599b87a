package policy

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cedar-policy/cedar-go/types"
	"github.com/google/go-cmp/cmp"
)

func baseRequest(tier, action, risk string, inScope bool) *Request {
	r := &Request{
		Agent:  Agent{ID: "spiffe://example.org/agent/a", Tier: tier, Owner: "alice"},
		Action: action,
		Risk:   risk,
		Task:   TaskInfo{ID: "tsk_1", InScope: inScope, Sensitivity: "confidential", MaxDepth: 4},
		Time:   TestTime,
	}
	switch ResourceType(action) {
	case TypeTool:
		r.Resource = Resource{ID: "srv/tool", Server: "srv"}
	case TypeFile:
		r.Resource = Resource{ID: "/repo/a.go"}
	case TypeHost:
		r.Resource = Resource{ID: "api.example.com"}
		r.Destination = Destination{Host: "api.example.com", Method: "POST", Path: "/x"}
	case TypeSecret:
		r.Resource = Resource{ID: "db-password"}
	case TypeAgent:
		r.Resource = Resource{ID: "spiffe://example.org/agent/b", Tier: TierAssist}
	}
	return r
}

// TestDefaultsTierRiskScope covers every tier × risk class × in/out of
// scope of the default policy set, for every action.
func TestDefaultsTierRiskScope(t *testing.T) {
	t.Parallel()
	set := mustDefaults(t)
	want := map[string]map[string]Effect{
		TierAssist: {
			RiskRead: Allow, RiskWrite: Deny, RiskDestructive: Deny, RiskExternal: Deny, RiskPrivileged: Deny,
		},
		TierSupervised: {
			RiskRead: Allow, RiskWrite: ApprovalRequired, RiskDestructive: ApprovalRequired,
			RiskExternal: ApprovalRequired, RiskPrivileged: ApprovalRequired,
		},
		TierAutonomous: {
			RiskRead: Allow, RiskWrite: Allow, RiskDestructive: ApprovalRequired,
			RiskExternal: Allow, RiskPrivileged: ApprovalRequired,
		},
	}
	for _, tier := range []string{TierAssist, TierSupervised, TierAutonomous} {
		for _, risk := range Risks {
			for _, action := range Actions {
				for _, inScope := range []bool{true, false} {
					name := fmt.Sprintf("%s/%s/%s/inscope=%v", tier, risk, action, inScope)
					r := baseRequest(tier, action, risk, inScope)
					w := want[tier][risk]
					switch {
					case !inScope:
						w = Deny
					case action == ActionSecretUse && tier == TierAutonomous && w == Allow:
						w = ApprovalRequired // secrets always need step-up
					}
					got, err := set.Decide(r, TestTime)
					if err != nil {
						t.Fatalf("%s: Decide: %v", name, err)
					}
					if got.Effect != w {
						t.Errorf("%s: Decide(req) = %s (%+v), want %s", name, got.Effect, got.Reasons, w)
					}
					if !inScope && (len(got.Reasons) == 0 || got.Reasons[0].Policy != "task-scope") {
						t.Errorf("%s: reasons %+v, want task-scope", name, got.Reasons)
					}
					if w == ApprovalRequired {
						// The matching approval lifts it.
						r.Approvals = got.Approvals
						lifted, _ := set.Decide(r, TestTime)
						if lifted.Effect != Allow {
							t.Errorf("%s: with approvals %v: Decide(req) = %s, want allow", name, got.Approvals, lifted.Effect)
						}
						// A different approval does not.
						r.Approvals = []string{"something-else"}
						if d, _ := set.Decide(r, TestTime); d.Effect != ApprovalRequired {
							t.Errorf("%s: with a non-matching approval: Decide(req) = %s, want approval_required", name, d.Effect)
						}
					}
				}
			}
		}
	}
}

func TestDelegationAndTaint(t *testing.T) {
	t.Parallel()
	set := mustDefaults(t)
	tests := []struct {
		name   string
		mod    func(r *Request)
		action string
		risk   string
		want   Effect
	}{
		{"delegate at depth 0", func(r *Request) {}, ActionTaskDelegate, RiskWrite, Allow},
		{"delegate at depth 2", func(r *Request) { r.Task.Depth = 2 }, ActionTaskDelegate, RiskWrite, Allow},
		{"delegate at depth 3", func(r *Request) { r.Task.Depth = 3 }, ActionTaskDelegate, RiskWrite, Allow},
		{"delegate at the limit", func(r *Request) { r.Task.Depth = 4 }, ActionTaskDelegate, RiskWrite, Deny},
		{"delegate under a lower limit", func(r *Request) { r.Task.Depth, r.Task.MaxDepth = 1, 1 }, ActionTaskDelegate, RiskWrite, Deny},
		{"delegate up a tier", func(r *Request) {
			r.Resource.Tier = TierAutonomous
			r.Agent.Tier = TierSupervised
			r.Approvals = []string{"supervised-write"}
		}, ActionTaskDelegate, RiskWrite, Deny},
		{"chain root can be matched", func(r *Request) {
			r.Task.Depth = 1
			r.Task.Chain = []string{"spiffe://example.org/agent/root", r.Agent.ID}
		}, ActionTaskDelegate, RiskWrite, Allow},
		{"taint restricted blocks external", func(r *Request) { r.Taint = "restricted" }, ActionHTTPRequest, RiskExternal, Deny},
		{"taint restricted blocks external tool", func(r *Request) { r.Taint = "restricted" }, ActionToolCall, RiskExternal, Deny},
		{"taint restricted allows local write", func(r *Request) { r.Taint = "restricted" }, ActionFileWrite, RiskWrite, Allow},
		{"taint confidential allows external", func(r *Request) { r.Taint = "confidential" }, ActionHTTPRequest, RiskExternal, Allow},
		{"agent taint restricted blocks external", func(r *Request) { r.AgentTaint = "restricted" }, ActionHTTPRequest, RiskExternal, Deny},
		{"agent taint restricted blocks external tool", func(r *Request) { r.AgentTaint = "restricted" }, ActionToolCall, RiskExternal, Deny},
		{"agent taint restricted allows local write", func(r *Request) { r.AgentTaint = "restricted" }, ActionFileWrite, RiskWrite, Allow},
		{"agent taint confidential allows external", func(r *Request) { r.AgentTaint = "confidential" }, ActionHTTPRequest, RiskExternal, Allow},
		{"budget: no actions left", func(r *Request) { z := int64(0); r.Task.ActionsLeft = &z }, ActionFileRead, RiskRead, Deny},
		{"budget: writes left", func(r *Request) { n := int64(3); r.Task.WritesLeft = &n }, ActionFileWrite, RiskWrite, Allow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := baseRequest(TierAutonomous, tt.action, tt.risk, true)
			tt.mod(r)
			got, err := set.Decide(r, TestTime)
			if err != nil || got.Effect != tt.want {
				t.Errorf("Decide(req) = %s (%+v), %v; want %s", got.Effect, got.Reasons, err, tt.want)
			}
		})
	}
}

func compile(t testing.TB, src string) *Set {
	t.Helper()
	set, err := Compile([]Source{{Name: "test.cedar", Text: []byte(src)}})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return set
}

// TestErroringPolicyDenies: cedar-go skips a policy whose evaluation
// errors; mandate denies instead — for an erroring forbid (which would
// otherwise silently not apply) and for an erroring permit.
func TestErroringPolicyDenies(t *testing.T) {
	t.Parallel()
	// Long overflow validates but errors at run time.
	const overflow = `context.task.depth + 9223372036854775807 > 0`
	tests := []struct {
		name, src string
	}{
		{"erroring forbid", `@id("allow-all") permit(principal, action, resource);
@id("broken-forbid") forbid(principal, action, resource) when { ` + overflow + ` };`},
		{"erroring permit beside a good permit", `@id("allow-all") permit(principal, action, resource);
@id("broken-permit") permit(principal, action, resource) when { ` + overflow + ` };`},
		{"erroring approval forbid", `@id("allow-all") permit(principal, action, resource);
@id("broken") @approval("x") forbid(principal, action, resource) when { ` + overflow + ` };`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := compile(t, tt.src)
			r := baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
			r.Task.Depth = 1
			r.Approvals = []string{"x"}
			got, err := set.Decide(r, TestTime)
			if err != nil {
				t.Fatal(err)
			}
			if got.Effect != Deny || len(got.Errors) == 0 || got.Reasons[0].Effect != "error" {
				t.Errorf("Decide(req) = %+v, want deny with the error", got)
			}
			r.Task.Depth = 0 // the policy no longer errors... still overflow? depth 0 + max is fine
			if got, _ := set.Decide(r, TestTime); got.Effect != Allow && tt.name != "erroring forbid" {
				t.Errorf("without the error: Decide(req) = %+v, want allow", got)
			}
		})
	}
}

func TestDefaultDenyAndForbid(t *testing.T) {
	t.Parallel()
	set := compile(t, `@id("p") @reason("files are fine") @obligation("redact, full_arguments") permit(principal, action == Action::"file.read", resource);
@id("f") @message("not that one") forbid(principal, action, resource == File::"/etc/shadow");`)
	r := baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
	got, _ := set.Decide(r, TestTime)
	want := Decision{Effect: Allow, Reasons: []Reason{{Policy: "p", Effect: "permit", Message: "files are fine", Position: "test.cedar:1:1"}},
		Obligations: []string{"redact", "full_arguments"}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Decide(allowed) mismatch (-want +got):\n%s", diff)
	}
	r.Resource.ID = "/etc/shadow"
	got, _ = set.Decide(r, TestTime)
	if got.Effect != Deny || got.Reasons[0].Policy != "f" || got.Reasons[0].Message != "not that one" {
		t.Errorf("Decide(forbidden) = %+v", got)
	}
	r = baseRequest(TierAutonomous, ActionFileWrite, RiskWrite, true)
	got, _ = set.Decide(r, TestTime)
	if got.Effect != Deny || len(got.Reasons) != 0 {
		t.Errorf("Decide(no permit) = %+v, want default deny", got)
	}
	// A nil set denies.
	var none *Set
	if got, _ := none.Decide(r, TestTime); got.Effect != Deny {
		t.Errorf("nil set: Decide = %+v", got)
	}
}

func TestInvalidRequestDenies(t *testing.T) {
	t.Parallel()
	set := compile(t, `permit(principal, action, resource);`)
	for name, mod := range map[string]func(*Request){
		"unknown action":  func(r *Request) { r.Action = "file.delete" },
		"no agent":        func(r *Request) { r.Agent.ID = "" },
		"bad tier":        func(r *Request) { r.Agent.Tier = "god" },
		"no resource":     func(r *Request) { r.Resource.ID = "" },
		"bad risk":        func(r *Request) { r.Risk = "harmless" },
		"bad sensitivity": func(r *Request) { r.Taint = "secret" },
		"bad agent taint": func(r *Request) { r.AgentTaint = "secret" },
		"huge":            func(r *Request) { r.Command = strings.Repeat("x", MaxStringLen+1) },
	} {
		r := baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
		mod(r)
		got, err := set.Decide(r, TestTime)
		if !errors.Is(err, ErrInvalidRequest) || got.Effect != Deny {
			t.Errorf("%s: Decide = %s, %v; want deny, ErrInvalidRequest", name, got.Effect, err)
		}
	}
}

func TestCompileErrorsHaveLocations(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, src string
		want      []string
	}{
		{"parse error", "permit(principal, action, resource);\n\npermit(principal, action, resource) when { 1 + };\n", []string{"bad.cedar:3:49: "}},
		{"unknown attribute", "permit(principal, action, resource);\n  forbid(principal, action, resource) when { context.nope };\n", []string{"bad.cedar:2:3: policy \"bad.cedar#1\": ", "attribute `nope`"}},
		{"unknown entity type", `permit(principal is User, action, resource);`, []string{"bad.cedar:1:1:"}},
		{"unknown action", `permit(principal, action == Action::"file.delete", resource);`, []string{"bad.cedar:1:1:", "file.delete"}},
		{"duplicate id", "@id(\"a\") permit(principal, action, resource);\n@id(\"a\") permit(principal, action, resource);", []string{"bad.cedar:2:1:", "duplicate policy id"}},
		{"approval on permit", `@approval("x") permit(principal, action, resource);`, []string{"@approval is only meaningful on a forbid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile([]Source{{Name: "bad.cedar", Text: []byte(tt.src)}})
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Fatalf("Compile = %v, want ErrInvalidPolicy", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Compile error %q does not contain %q", err, w)
				}
			}
		})
	}
}

// TestIndex: a request considers only the policies of its action and
// those pinned to its resource.
func TestIndex(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 1000 {
		fmt.Fprintf(&b, "permit(principal, action == Action::\"tool.call\", resource == Tool::\"srv/tool%d\");\n", i)
	}
	b.WriteString(`forbid(principal, action in [Action::"file.read", Action::"file.write"], resource) when { resource.labels.contains("x") };` + "\n")
	b.WriteString(`permit(principal, action, resource) when { context.risk == "read" };` + "\n")
	set := compile(t, b.String())
	r := baseRequest(TierAutonomous, ActionToolCall, RiskWrite, true)
	r.Resource.ID = "srv/tool7"
	x, _ := set.Explain(r, TestTime)
	if x.Considered != 2 || x.Decision.Effect != Allow || x.Total != 1002 {
		t.Errorf("Explain(tool7) considered %d of %d, decision %s; want 2 of 1002, allow", x.Considered, x.Total, x.Decision.Effect)
	}
	r = baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
	x, _ = set.Explain(r, TestTime)
	if x.Considered != 2 || x.Decision.Effect != Allow {
		t.Errorf("Explain(file.read) considered %d, decision %s; want 2, allow", x.Considered, x.Decision.Effect)
	}
}

func TestExplainShowsEverything(t *testing.T) {
	t.Parallel()
	set := mustDefaults(t)
	r := baseRequest(TierAutonomous, ActionFileWrite, RiskWrite, false)
	x, err := set.Explain(r, TestTime)
	if err != nil {
		t.Fatal(err)
	}
	if x.Decision.Effect != Deny || len(x.Forbids) != 1 || len(x.Permits) != 1 || x.Permits[0].Policy != "autonomous-act" {
		t.Errorf("Explain = %+v; want deny by task-scope with autonomous-act matched too", x)
	}
}

func TestTimeInContext(t *testing.T) {
	t.Parallel()
	set := compile(t, `permit(principal, action, resource) when { context.hour >= 9 && context.hour < 17 && context.weekday != 0 && context.time > datetime("2026-01-01") };`)
	r := baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
	r.Time = time.Date(2026, 3, 3, 10, 0, 0, 0, time.UTC)
	if d, _ := set.Decide(r, TestTime); d.Effect != Allow {
		t.Errorf("office hours: %+v", d)
	}
	r.Time = time.Date(2026, 3, 3, 22, 0, 0, 0, time.UTC)
	if d, _ := set.Decide(r, TestTime); d.Effect != Deny {
		t.Errorf("night: %+v", d)
	}
}

func TestAgentLabelsAndServer(t *testing.T) {
	t.Parallel()
	set := compile(t, `permit(principal, action == Action::"tool.call", resource in Server::"github") when { principal.hasTag("team") && principal.getTag("team") == "infra" };`)
	r := baseRequest(TierAutonomous, ActionToolCall, RiskWrite, true)
	r.Resource = Resource{ID: "github/create_issue", Server: "github"}
	r.Agent.Labels = map[string]string{"team": "infra"}
	if d, _ := set.Decide(r, TestTime); d.Effect != Allow {
		t.Errorf("infra on github: %+v", d)
	}
	r.Agent.Labels = map[string]string{"team": "web"}
	if d, _ := set.Decide(r, TestTime); d.Effect != Deny {
		t.Errorf("web on github: %+v", d)
	}
	r.Agent.Labels = map[string]string{"team": "infra"}
	r.Resource.Server = "gitlab"
	if d, _ := set.Decide(r, TestTime); d.Effect != Deny {
		t.Errorf("infra on gitlab: %+v", d)
	}
}

func TestRawRecordFastPath(t *testing.T) {
	if !rawRecordOK() {
		t.Fatal("types.Record's layout changed: rawRecord falls back to the slow types.NewRecord; update recordLayout")
	}
	r := rawRecord(map[types.String]types.Value{"a": types.Long(1)})
	if v, ok := r.Get("a"); !ok || v != types.Long(1) || r.Len() != 1 {
		t.Fatalf("rawRecord.Get(a) = %v, %v", v, ok)
	}
}

func TestWholeContextRejected(t *testing.T) {
	t.Parallel()
	for _, src := range []string{
		`permit(principal, action, resource) when { context == {} };`,
		`permit(principal, action, resource) when { [context].contains(context) };`,
	} {
		if _, err := Compile([]Source{{Name: "c.cedar", Text: []byte(src)}}); err == nil || !strings.Contains(err.Error(), "context as a whole") {
			t.Errorf("Compile(%s) = %v, want the whole-context error", src, err)
		}
	}
	compile(t, `permit(principal, action, resource) when { context has task && context.task.in_scope };`)
}

func TestEngineCachesDoNotConfuse(t *testing.T) {
	t.Parallel()
	eng := NewEngine(mustDefaults(t), nil)
	// Same agent and task, different resource sensitivity and labels:
	// cached parts must not leak between requests.
	for i := range 3 {
		r := baseRequest(TierAssist, ActionFileWrite, RiskWrite, true)
		r.Resource.Labels = []string{"draft"}
		if d, _ := eng.Decide(r); d.Effect != Allow {
			t.Fatalf("round %d: draft: %+v", i, d)
		}
		r.Resource.Labels = nil
		if d, _ := eng.Decide(r); d.Effect != Deny {
			t.Fatalf("round %d: non-draft: %+v", i, d)
		}
		r.Resource.Labels = []string{"dra", "ft"}
		if d, _ := eng.Decide(r); d.Effect != Deny {
			t.Fatalf("round %d: split label: %+v", i, d)
		}
		r = baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
		r.Resource.Sensitivity = "restricted"
		if d, _ := eng.Decide(r); d.Effect != Deny {
			t.Fatalf("round %d: restricted: %+v", i, d)
		}
		r.Task.Sensitivity = "restricted"
		if d, _ := eng.Decide(r); d.Effect != Allow {
			t.Fatalf("round %d: restricted task: %+v", i, d)
		}
		// The same task with its budget counting down: the budget is
		// never taken from the memo of an earlier request.
		r = baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
		for left := int64(2); left >= 0; left-- {
			r.Task.ActionsLeft = &left
			want := Allow
			if left == 0 {
				want = Deny
			}
			if d, _ := eng.Decide(r); d.Effect != want {
				t.Fatalf("round %d: %d actions left: %+v, want %s", i, left, d, want)
			}
		}
	}
}

func TestMemo(t *testing.T) {
	t.Parallel()
	m := newMemo[int](100)
	builds := 0
	for round := range 3 {
		for i := range 90 {
			key := fmt.Appendf(nil, "k%d", i)
			if got := m.get(key, func() int { builds++; return i }); got != i {
				t.Fatalf("round %d: get(k%d) = %d", round, i, got)
			}
		}
	}
	if builds != 90 {
		t.Errorf("built %d values for 90 keys over 3 rounds, want 90", builds)
	}
	for i := range 500 {
		m.get(fmt.Appendf(nil, "x%d", i), func() int { return i })
	}
	if n := len(*m.read.Load()) + len(m.dirty); n > 100 {
		t.Errorf("memo holds %d entries, bound is 100", n)
	}
}

// TestIndexIn: "resource in Server::X" policies are considered only for
// resources of server X (and for X itself), and still decide correctly.
func TestIndexIn(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 500 {
		fmt.Fprintf(&b, "@id(\"s%d\") permit(principal, action == Action::\"tool.call\", resource in Server::\"srv%d\") when { context.risk != \"destructive\" };\n", i, i)
	}
	b.WriteString(`@id("no-s7") forbid(principal, action, resource is Tool in Server::"srv7") when { principal.tier == "assist" };` + "\n")
	b.WriteString(`@id("self") permit(principal, action == Action::"file.read", resource in File::"/x");` + "\n")
	set := compile(t, b.String())
	r := baseRequest(TierAutonomous, ActionToolCall, RiskWrite, true)
	r.Resource = Resource{ID: "srv7/deploy", Server: "srv7"}
	x, _ := set.Explain(r, TestTime)
	if x.Considered != 2 || x.Decision.Effect != Allow || x.Decision.Reasons[0].Policy != "s7" {
		t.Errorf("tool in srv7: considered %d, %+v; want 2 considered, allowed by s7", x.Considered, x.Decision)
	}
	r.Agent.Tier = TierAssist
	if d, _ := set.Decide(r, TestTime); d.Effect != Deny || d.Reasons[0].Policy != "no-s7" {
		t.Errorf("assist on srv7: %+v, want deny by no-s7", d)
	}
	r.Resource = Resource{ID: "srv8/deploy"}
	if x, _ := set.Explain(r, TestTime); x.Considered != 0 || x.Decision.Effect != Deny {
		t.Errorf("tool without a server: considered %d, %s; want 0, deny", x.Considered, x.Decision.Effect)
	}
	r = baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
	r.Resource.ID = "/x"
	if d, _ := set.Decide(r, TestTime); d.Effect != Allow {
		t.Errorf("resource in itself: %+v", d)
	}
}
