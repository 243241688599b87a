package policy

import (
	"fmt"
	"slices"

	"github.com/mandatehq/mandate/internal/task"
)

// ToolAnnotations are an MCP tool's behaviour hints (MCP 2025-11-25
// ToolAnnotations). A nil hint is unset. Hints come from the tool's
// server and are not trusted to lower risk below the configured rules.
type ToolAnnotations struct {
	ReadOnlyHint    *bool `json:"readOnlyHint,omitempty"`
	DestructiveHint *bool `json:"destructiveHint,omitempty"`
	IdempotentHint  *bool `json:"idempotentHint,omitempty"`
	OpenWorldHint   *bool `json:"openWorldHint,omitempty"`
}

// RiskRule assigns a risk class to the actions matching a scope pattern
// ("tool.call:github/delete_*", "shell.exec:rm **").
type RiskRule struct {
	Match string `json:"match" yaml:"match"`
	Risk  string `json:"risk" yaml:"risk"`
}

// ResourceRule assigns a sensitivity and labels to the resources matching
// a scope pattern ("file.*:/repo/secrets/**").
type ResourceRule struct {
	Match       string   `json:"match" yaml:"match"`
	Sensitivity string   `json:"sensitivity,omitempty" yaml:"sensitivity,omitempty"`
	Labels      []string `json:"labels,omitempty" yaml:"labels,omitempty"`
}

// ClassifierConfig configures a Classifier.
type ClassifierConfig struct {
	// Risks are tried in order; the first match sets the risk class.
	Risks []RiskRule `json:"risks,omitempty" yaml:"risks,omitempty"`
	// HighImpact lists patterns of tools agents may never call (the
	// default policy high-impact-tools forbids them).
	HighImpact []string `json:"high_impact,omitempty" yaml:"high_impact,omitempty"`
	// Resources: every matching rule applies; the highest sensitivity
	// wins and labels accumulate.
	Resources []ResourceRule `json:"resources,omitempty" yaml:"resources,omitempty"`
}

// Classification is what a Classifier says about one action.
type Classification struct {
	Risk        string
	HighImpact  bool
	Sensitivity string
	Labels      []string
}

type riskRule struct {
	p    task.Pattern
	risk string
}

type resourceRule struct {
	p      task.Pattern
	sens   string
	labels []string
}

// Classifier assigns risk classes, high-impact marks and resource
// sensitivity from configuration and MCP tool annotations. It is
// immutable and safe for concurrent use.
type Classifier struct {
	risks      []riskRule
	highImpact []task.Pattern
	resources  []resourceRule
}

// NewClassifier compiles cfg.
func NewClassifier(cfg ClassifierConfig) (*Classifier, error) {
	c := &Classifier{}
	for i, r := range cfg.Risks {
		p, err := task.ParsePattern(r.Match)
		if err != nil {
			return nil, fmt.Errorf("risks[%d].match: %w", i, err)
		}
		if !slices.Contains(Risks, r.Risk) {
			return nil, fmt.Errorf("risks[%d].risk: %q is not one of %v", i, r.Risk, Risks)
		}
		c.risks = append(c.risks, riskRule{p: p, risk: r.Risk})
	}
	for i, m := range cfg.HighImpact {
		p, err := task.ParsePattern(m)
		if err != nil {
			return nil, fmt.Errorf("high_impact[%d]: %w", i, err)
		}
		c.highImpact = append(c.highImpact, p)
	}
	for i, r := range cfg.Resources {
		p, err := task.ParsePattern(r.Match)
		if err != nil {
			return nil, fmt.Errorf("resources[%d].match: %w", i, err)
		}
		if r.Sensitivity != "" && !slices.Contains(Sensitivities, r.Sensitivity) {
			return nil, fmt.Errorf("resources[%d].sensitivity: %q is not one of %v", i, r.Sensitivity, Sensitivities)
		}
		c.resources = append(c.resources, resourceRule{p: p, sens: r.Sensitivity, labels: r.Labels})
	}
	return c, nil
}

// Classify classifies action on resource. ann are the tool's MCP
// annotations (tool.call and prompt.get), nil when unknown.
//
// Risk: the first matching configured rule; otherwise by action —
// file.read, resource.read, prompt.get: read; file.write, shell.exec,
// task.delegate: write; http.request: external; secret.use: privileged;
// tool.call: from the annotations with MCP's defaults (a tool is
// destructive and open-world unless it says otherwise): readOnlyHint
// true → read; else destructiveHint not false → destructive; else
// openWorldHint not false → external; else write.
func (c *Classifier) Classify(action, resource string, ann *ToolAnnotations) Classification {
	var out Classification
	if c == nil {
		c = &Classifier{}
	}
	out.Risk = defaultRisk(action, ann)
	for _, r := range c.risks {
		if r.p.Matches(action, resource) {
			out.Risk = r.risk
			break
		}
	}
	for _, p := range c.highImpact {
		if p.Matches(action, resource) {
			out.HighImpact = true
			break
		}
	}
	for _, r := range c.resources {
		if !r.p.Matches(action, resource) {
			continue
		}
		if SensitivityLevel(r.sens) > SensitivityLevel(out.Sensitivity) {
			out.Sensitivity = r.sens
		}
		for _, l := range r.labels {
			if !slices.Contains(out.Labels, l) {
				out.Labels = append(out.Labels, l)
			}
		}
	}
	return out
}

func defaultRisk(action string, ann *ToolAnnotations) string {
	switch action {
	case ActionFileRead, ActionResourceRead, ActionPromptGet:
		return RiskRead
	case ActionHTTPRequest:
		return RiskExternal
	case ActionSecretUse:
		return RiskPrivileged
	case ActionToolCall:
		return annotationRisk(ann)
	}
	return RiskWrite
}

func annotationRisk(ann *ToolAnnotations) string {
	if ann == nil {
		ann = &ToolAnnotations{}
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	notFalse := func(b *bool) bool { return b == nil || *b }
	switch {
	case isTrue(ann.ReadOnlyHint):
		return RiskRead
	case notFalse(ann.DestructiveHint):
		return RiskDestructive
	case notFalse(ann.OpenWorldHint):
		return RiskExternal
	}
	return RiskWrite
}
