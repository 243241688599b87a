package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/task"
)

// TestAgentEntitlementCommands sets an entitlement at registration, shows
// it, refuses a task beyond it, lowers it with --revoke-exceeding and
// removes it, through the CLI against a real server.
func TestAgentEntitlementCommands(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}

	out := mustRun(t, env, "agent", "register", "build-bot", "--owner", "alice@example.com", "--escalation", "oncall@example.com",
		"--entitle", "file.read:/repo/**", "--entitle", "file.write:/repo/src/**", "--max-sensitivity", "internal", "--max-task-ttl", "8h")
	for _, want := range []string{"Entitlement:", "file.read:/repo/**", "file.write:/repo/src/**", "Max sensitivity:", "internal", "Max task TTL:", "8h0m0s"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent register output lacks %q:\n%s", want, out)
		}
	}
	out = mustRun(t, env, "agent", "show", "build-bot", "-o", "json")
	var shown struct {
		Entitlement *task.Entitlement `json:"entitlement"`
	}
	if err := json.Unmarshal([]byte(out), &shown); err != nil || shown.Entitlement == nil || shown.Entitlement.Scope.String() != "file.read:/repo/** file.write:/repo/src/**" {
		t.Fatalf("agent show -o json entitlement = %+v, %v\n%s", shown.Entitlement, err, out)
	}

	// A task beyond the ceiling is refused by the server (403).
	code, _, errs := mandate(t, env, "task", "start", "--agent", "build-bot", "--on-behalf-of", "alice@example.com",
		"--purpose", "x", "--scope", "*")
	if code != 1 || !strings.Contains(errs, "exceeds its agent's entitlement") {
		t.Errorf("task start beyond the entitlement: exit %d, stderr %q", code, errs)
	}
	start := func(scope string) string {
		out := mustRun(t, env, "task", "start", "--agent", "build-bot", "--on-behalf-of", "alice@example.com",
			"--purpose", "p", "--scope", scope, "-o", "json")
		var tk task.Task
		if err := json.Unmarshal([]byte(out), &tk); err != nil {
			t.Fatal(err)
		}
		return string(tk.ID)
	}
	reads, writes := start("file.read:/repo/docs/**"), start("file.write:/repo/src/a.go")

	out = mustRun(t, env, "agent", "update", "build-bot", "--entitle", "file.read:/repo/**",
		"--max-sensitivity", "internal", "--max-task-ttl", "8h", "--revoke-exceeding", "--reason", "review")
	if !strings.Contains(out, "Revoked 1 task that did not fit") || !strings.Contains(out, writes) || strings.Contains(out, reads) {
		t.Errorf("agent update --revoke-exceeding output:\n%s", out)
	}
	if out := mustRun(t, env, "task", "show", writes); !strings.Contains(out, "revoked") {
		t.Errorf("the exceeding task after update:\n%s", out)
	}
	if out := mustRun(t, env, "task", "show", reads); !strings.Contains(out, "active") {
		t.Errorf("the fitting task after update:\n%s", out)
	}

	out = mustRun(t, env, "agent", "update", "build-bot", "--remove-entitlement")
	if !strings.Contains(out, "Entitlement:") || !strings.Contains(out, "none") {
		t.Errorf("agent update --remove-entitlement output:\n%s", out)
	}

	// Incomplete or contradictory flags are usage errors.
	for _, args := range [][]string{
		{"agent", "register", "x", "--owner", "a", "--escalation", "b", "--entitle", "file.read:/x"},
		{"agent", "register", "x", "--owner", "a", "--escalation", "b", "--max-task-ttl", "1h"},
		{"agent", "register", "x", "--owner", "a", "--escalation", "b", "--entitle", "file.read:/../x", "--max-sensitivity", "public", "--max-task-ttl", "1h"},
		{"agent", "update", "build-bot"},
		{"agent", "update", "build-bot", "--remove-entitlement", "--revoke-exceeding"},
		{"agent", "update", "build-bot", "--remove-entitlement", "--entitle", "file.read:/x"},
		{"agent", "update", "build-bot", "--entitle", "file.read:/x", "--max-sensitivity", "secret", "--max-task-ttl", "1h"},
	} {
		if code, _, errs := mandate(t, env, args...); code != 2 || !strings.HasPrefix(errs, "mandate: ") {
			t.Errorf("mandate %s: exit %d, stderr %q; want exit 2", strings.Join(args, " "), code, errs)
		}
	}
	code, _, errs = mandate(t, env, "agent", "update", "build-bot", "--entitle", "*", "--max-sensitivity", "public", "--max-task-ttl", "9999h")
	if code != 1 || !strings.Contains(errs, "max_task_ttl") {
		t.Errorf("agent update beyond the server's lifetime: exit %d, stderr %q", code, errs)
	}
}
