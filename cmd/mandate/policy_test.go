package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPolicyTestDefaults runs the shipped default policy set's tests
// through `mandate policy test`, exactly as a user (and CI) would.
func TestPolicyTestDefaults(t *testing.T) {
	t.Parallel()
	out := mustRun(t, nil, "policy", "test")
	if !strings.Contains(out, " passed, 0 failed") {
		t.Errorf("mandate policy test: %s", out)
	}
	// The written-out defaults pass as a directory too.
	dir := filepath.Join(t.TempDir(), "p")
	mustRun(t, nil, "policy", "defaults", dir)
	out = mustRun(t, nil, "policy", "test", dir)
	if !strings.Contains(out, "0 failed") {
		t.Errorf("mandate policy test DIR: %s", out)
	}
	mustRun(t, nil, "policy", "validate", dir)
}

func writePolicyFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestPolicyValidate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicyFile(t, filepath.Join(dir, "ok.cedar"), `permit(principal, action == Action::"file.read", resource);`)
	writePolicyFile(t, filepath.Join(dir, "sub", "bad.cedar"), "permit(principal, action, resource);\n\n  forbid(principal, action, resource) when { resource.nope };\n")
	code, out, errs := mandate(t, nil, "policy", "validate", dir)
	want := filepath.Join(dir, "sub", "bad.cedar") + ":3:3: "
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(errs, "problem(s)") {
		t.Errorf("validate: exit %d, stdout %q (want %q), stderr %q", code, out, want, errs)
	}
	writePolicyFile(t, filepath.Join(dir, "sub", "bad.cedar"), "permit(principal, action,\n")
	if code, out, _ := mandate(t, nil, "policy", "validate", dir); code != 1 || !strings.Contains(out, "bad.cedar:2:1: ") {
		t.Errorf("validate parse error: exit %d, %q", code, out)
	}
	if code, _, _ := mandate(t, nil, "policy", "validate"); code != 2 {
		t.Errorf("validate without DIR: exit %d, want 2", code)
	}
}

func TestPolicyTestFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writePolicyFile(t, filepath.Join(dir, "p.cedar"), `@id("reads") permit(principal, action == Action::"file.read", resource);`)
	writePolicyFile(t, filepath.Join(dir, "t.yaml"), `
defaults:
  agent: {id: "spiffe://x/agent/a", tier: assist}
  task: {id: t, in_scope: true}
cases:
  - name: reads
    request: {action: file.read, resource: {id: /a}, risk: read}
    expect: allow
    reasons: [reads]
  - name: wrong expectation
    request: {action: file.write, resource: {id: /a}, risk: write}
    expect: allow
`)
	code, out, _ := mandate(t, nil, "policy", "test", dir)
	if code != 1 || !strings.Contains(out, "FAIL t.yaml: wrong expectation: got deny, want allow") || !strings.Contains(out, "1 passed, 1 failed") {
		t.Errorf("policy test: exit %d\n%s", code, out)
	}
	writePolicyFile(t, filepath.Join(dir, "t.yaml"), "cases:\n  - name: x\n    request: {action: file.read, bogus: 1}\n    expect: allow\n")
	if code, _, errs := mandate(t, nil, "policy", "test", dir); code != 1 || !strings.Contains(errs, "bogus") {
		t.Errorf("policy test with a bad case: exit %d, %s", code, errs)
	}
}

func TestPolicyExplain(t *testing.T) {
	t.Parallel()
	out := mustRun(t, nil, "policy", "explain", "--tier", "autonomous", "--action", "tool.call", "--resource", "ci/deploy", "--risk", "privileged")
	if !strings.Contains(out, "decision:    approval_required") || !strings.Contains(out, "autonomous-step-up") || !strings.Contains(out, "autonomous-act") {
		t.Errorf("explain: %s", out)
	}
	out = mustRun(t, nil, "policy", "explain", "--action", "file.write", "--resource", "/a", "--in-scope=false", "-o", "json")
	var x struct {
		Decision struct {
			Decision string `json:"decision"`
		} `json:"decision"`
		Forbids []struct{ Policy string } `json:"forbids"`
	}
	if err := json.Unmarshal([]byte(out), &x); err != nil || x.Decision.Decision != "deny" || x.Forbids[0].Policy != "task-scope" {
		t.Errorf("explain json: %v %s", err, out)
	}
	req := filepath.Join(t.TempDir(), "req.json")
	writePolicyFile(t, req, `{"agent":{"id":"spiffe://x/agent/a","tier":"assist"},"action":"file.read","resource":{"id":"/a"},"risk":"read","task":{"id":"t","in_scope":true}}`)
	if out := mustRun(t, nil, "policy", "explain", "--request", req); !strings.Contains(out, "decision:    allow") {
		t.Errorf("explain --request: %s", out)
	}
	if code, _, _ := mandate(t, nil, "policy", "explain", "--action", "file.delete", "--resource", "/a"); code != 2 {
		t.Errorf("explain with an unknown action: exit %d, want 2", code)
	}
}

func TestPolicyRemote(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	file := filepath.Join(t.TempDir(), "x.cedar")
	writePolicyFile(t, file, `@id("no-etc") forbid(principal, action, resource == File::"/etc/passwd");`)
	if out := mustRun(t, env, "policy", "put", "no-etc", file); !strings.Contains(out, "no-etc") {
		t.Errorf("put: %s", out)
	}
	if out := mustRun(t, env, "policy", "list"); !strings.Contains(out, "no-etc") || !strings.Contains(out, "autonomous-act") {
		t.Errorf("list: %s", out)
	}
	writePolicyFile(t, file, `forbid(principal, action, resource) when { context.nope };`)
	if code, _, errs := mandate(t, env, "policy", "put", "bad", file); code != 1 || !strings.Contains(errs, "api:bad:1:1") {
		t.Errorf("put bad: exit %d, %s", code, errs)
	}
	mustRun(t, env, "policy", "delete", "no-etc")
	mustRun(t, env, "policy", "reload")
	if out := mustRun(t, env, "policy", "list", "-o", "json"); strings.Contains(out, "no-etc") {
		t.Errorf("list after delete: %s", out)
	}
}
