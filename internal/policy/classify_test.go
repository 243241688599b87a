package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestClassify(t *testing.T) {
	t.Parallel()
	c, err := NewClassifier(ClassifierConfig{
		Risks: []RiskRule{
			{Match: "tool.call:ci/deploy*", Risk: RiskPrivileged},
			{Match: "shell.exec:rm", Risk: RiskDestructive},
			{Match: "tool.call:github/get_*", Risk: RiskRead},
		},
		HighImpact: []string{"tool.call:cloud/delete_*"},
		Resources: []ResourceRule{
			{Match: "file.*:/repo/secrets/**", Sensitivity: "restricted", Labels: []string{"secrets"}},
			{Match: "file.*:/repo/**", Sensitivity: "internal", Labels: []string{"repo"}},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	tests := []struct {
		action, resource string
		ann              *ToolAnnotations
		want             Classification
	}{
		{ActionFileRead, "/tmp/x", nil, Classification{Risk: RiskRead}},
		{ActionFileWrite, "/repo/a.go", nil, Classification{Risk: RiskWrite, Sensitivity: "internal", Labels: []string{"repo"}}},
		{ActionFileRead, "/repo/secrets/k", nil, Classification{Risk: RiskRead, Sensitivity: "restricted", Labels: []string{"secrets", "repo"}}},
		{ActionToolCall, "x/y", nil, Classification{Risk: RiskDestructive}},
		{ActionToolCall, "x/y", &ToolAnnotations{ReadOnlyHint: &yes}, Classification{Risk: RiskRead}},
		{ActionToolCall, "x/y", &ToolAnnotations{DestructiveHint: &no}, Classification{Risk: RiskExternal}},
		{ActionToolCall, "x/y", &ToolAnnotations{DestructiveHint: &no, OpenWorldHint: &no}, Classification{Risk: RiskWrite}},
		{ActionToolCall, "x/y", &ToolAnnotations{DestructiveHint: &yes, OpenWorldHint: &no}, Classification{Risk: RiskDestructive}},
		{ActionToolCall, "ci/deploy-prod", &ToolAnnotations{ReadOnlyHint: &yes}, Classification{Risk: RiskPrivileged}},
		{ActionToolCall, "github/get_issue", nil, Classification{Risk: RiskRead}},
		{ActionToolCall, "cloud/delete_project", nil, Classification{Risk: RiskDestructive, HighImpact: true}},
		{ActionShellExec, "rm", nil, Classification{Risk: RiskDestructive}},
		{ActionShellExec, "ls", nil, Classification{Risk: RiskWrite}},
		{ActionHTTPRequest, "api.example.com", nil, Classification{Risk: RiskExternal}},
		{ActionSecretUse, "db", nil, Classification{Risk: RiskPrivileged}},
		{ActionTaskDelegate, "spiffe://x/agent/y", nil, Classification{Risk: RiskWrite}},
	}
	for _, tt := range tests {
		got := c.Classify(tt.action, tt.resource, tt.ann)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Classify(%s, %s, %+v) mismatch (-want +got):\n%s", tt.action, tt.resource, tt.ann, diff)
		}
	}
	if _, err := NewClassifier(ClassifierConfig{Risks: []RiskRule{{Match: "tool.call:x", Risk: "harmless"}}}); err == nil {
		t.Error("NewClassifier accepted an unknown risk")
	}
}
