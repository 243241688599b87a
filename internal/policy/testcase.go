package policy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/goccy/go-yaml"
)

// TestFile is a YAML file of policy test cases, the format of `mandate
// policy test` (like `opa test`): each case is a request and the decision
// it must get.
//
//	defaults:            # merged (deeply) into every case's request
//	  agent: {id: "spiffe://example.org/agent/a", tier: autonomous}
//	  task: {id: t1, in_scope: true, sensitivity: confidential}
//	cases:
//	  - name: autonomous agent writes in scope
//	    request: {action: file.write, resource: {id: /repo/a.go}, risk: write}
//	    expect: allow
//	    reasons: [autonomous-act]    # optional: policies that must be among the reasons
type TestFile struct {
	Defaults map[string]any `yaml:"defaults,omitempty"`
	Cases    []TestCase     `yaml:"cases"`
}

// TestCase is one request and its expected decision.
type TestCase struct {
	Name    string         `yaml:"name"`
	Request map[string]any `yaml:"request"`
	Expect  Effect         `yaml:"expect"`
	// Reasons, if set, must each be among the decision's reason policies.
	Reasons []string `yaml:"reasons,omitempty"`
}

// TestResult is the outcome of one case.
type TestResult struct {
	File     string   `json:"file"`
	Name     string   `json:"name"`
	Pass     bool     `json:"pass"`
	Got      Decision `json:"got"`
	Expect   Effect   `json:"expect"`
	Problems string   `json:"problem,omitempty"`
}

// TestTime is the decision time of test cases that do not set one, so
// results do not depend on the clock.
var TestTime = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

// RunTests runs every tests/**/*.yaml (or *.yaml anywhere) test file in
// fsys against set. A file that cannot be read or decoded is an error;
// failing cases are results with Pass false.
func RunTests(set *Set, fsys fs.FS) ([]TestResult, error) {
	var results []TestResult
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || (path.Ext(p) != ".yaml" && path.Ext(p) != ".yml") {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		rs, err := RunTestFile(set, p, b)
		if err != nil {
			return err
		}
		results = append(results, rs...)
		return nil
	})
	return results, err
}

// RunTestFile runs the cases of one YAML test file named name.
func RunTestFile(set *Set, name string, b []byte) ([]TestResult, error) {
	var tf TestFile
	if err := yaml.UnmarshalWithOptions(b, &tf, yaml.Strict()); err != nil {
		return nil, fmt.Errorf("%s: %s", name, yaml.FormatError(err, false, true))
	}
	if len(tf.Cases) == 0 {
		return nil, fmt.Errorf("%s: no cases", name)
	}
	var out []TestResult
	for i, c := range tf.Cases {
		res := TestResult{File: name, Name: c.Name, Expect: c.Expect}
		if res.Name == "" {
			res.Name = fmt.Sprintf("case %d", i+1)
		}
		switch c.Expect {
		case Allow, Deny, ApprovalRequired:
		default:
			return nil, fmt.Errorf("%s: %s: expect must be allow, deny or approval_required, not %q", name, res.Name, c.Expect)
		}
		req, err := DecodeRequest(mergeMaps(tf.Defaults, c.Request))
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, res.Name, err)
		}
		if req.Time.IsZero() {
			req.Time = TestTime
		}
		res.Got, err = set.Decide(req, TestTime)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, res.Name, err)
		}
		var probs []string
		if res.Got.Effect != c.Expect {
			probs = append(probs, fmt.Sprintf("got %s, want %s", res.Got.Effect, c.Expect))
		}
		for _, want := range c.Reasons {
			if !slices.ContainsFunc(res.Got.Reasons, func(r Reason) bool { return r.Policy == want }) {
				probs = append(probs, fmt.Sprintf("policy %q is not among the reasons", want))
			}
		}
		res.Problems = strings.Join(probs, "; ")
		res.Pass = len(probs) == 0
		out = append(out, res)
	}
	return out, nil
}

// DecodeRequest strictly decodes a request from its generic (YAML or
// JSON) form: unknown fields are errors.
func DecodeRequest(v any) (*Request, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	return DecodeRequestJSON(b)
}

// DecodeRequestJSON strictly decodes and validates a JSON request.
func DecodeRequestJSON(b []byte) (*Request, error) {
	if len(b) > MaxRequestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrInvalidRequest, MaxRequestSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var r Request
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalidRequest, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: trailing data", ErrInvalidRequest)
	}
	if err := r.Validate(); err != nil {
		return nil, err
	}
	return &r, nil
}

// MaxRequestSize bounds an encoded request.
const MaxRequestSize = 256 << 10

// mergeMaps deep-merges over into base (neither is modified).
func mergeMaps(base, over map[string]any) map[string]any {
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		bm, ok1 := out[k].(map[string]any)
		om, ok2 := v.(map[string]any)
		if ok1 && ok2 {
			out[k] = mergeMaps(bm, om)
			continue
		}
		out[k] = v
	}
	return out
}
