package mcpproxy

import "testing"

// TestPrincipalOwns: owns(o) is o == owner(), whatever the spaces.
func TestPrincipalOwns(t *testing.T) {
	t.Parallel()
	ps := []Principal{{Task: "t1", Agent: "spiffe://x/agent/a"}, {Task: "t 1", Agent: "a"}, {Task: "t", Agent: "1 a"}, {}}
	owners := []string{"t1 spiffe://x/agent/a", "t 1 a", " ", "", "t1 spiffe://x/agent/b", "t1  spiffe://x/agent/a", "t1spiffe://x/agent/a", "t2 spiffe://x/agent/a"}
	for _, p := range ps {
		for _, o := range owners {
			if got, want := p.owns(o), o == p.owner(); got != want {
				t.Errorf("Principal{%q, %q}.owns(%q) = %v, want %v", p.Task, p.Agent, o, got, want)
			}
		}
	}
}
