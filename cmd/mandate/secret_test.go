package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSecretCommands drives put (file, env, stdin), list, show, rotate,
// lease list, rm and rewrap against a real server, and checks that no
// output, -o json answer or ledger export shows a value.
func TestSecretCommands(t *testing.T) {
	dataDir, _ := testServer(t, nil)
	env := map[string]string{"MANDATE_DATA_DIR": dataDir, "GH_TOKEN": "ghp_from-env-VALUE-1"}
	fileValue := "file-VALUE-2\n"
	file := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(file, []byte(fileValue), 0o600); err != nil {
		t.Fatal(err)
	}
	var outputs []string
	run := func(args ...string) string {
		t.Helper()
		out := mustRun(t, env, args...)
		outputs = append(outputs, out)
		return out
	}
	run("secret", "put", "github-token", "--from-env", "GH_TOKEN", "--deliver", "mcp:github:env:GITHUB_TOKEN", "--description", "bot")
	run("secret", "put", "file-key", "--from-file", file, "--deliver", "egress:api.example.com", "--label", "team=infra")

	// Standard input, with its trailing newline dropped.
	var out, errb bytes.Buffer
	a := &app{stdout: &out, stderr: &errb, getenv: func(k string) string { return env[k] }}
	root := a.rootCmd()
	root.SetArgs([]string{"secret", "put", "stdin-key", "--deliver", "mcp:x:header:X-Api-Key"})
	root.SetIn(strings.NewReader("stdin-VALUE-3\n"))
	root.SetOut(&out)
	root.SetErr(&errb)
	if err := root.ExecuteContext(t.Context()); err != nil {
		t.Fatalf("secret put (stdin) = %v: %s", err, errb.String())
	}
	outputs = append(outputs, out.String())

	list := run("secret", "list")
	for _, want := range []string{"github-token", "file-key", "stdin-key", "mcp:github:env:GITHUB_TOKEN", "egress:api.example.com"} {
		if !strings.Contains(list, want) {
			t.Errorf("secret list does not show %q:\n%s", want, list)
		}
	}
	show := run("secret", "show", "file-key", "-o", "json")
	var s struct {
		Name    string `json:"name"`
		Version int    `json:"version"`
	}
	if err := json.Unmarshal([]byte(show), &s); err != nil || s.Name != "file-key" || s.Version != 1 {
		t.Errorf("secret show -o json = %s (%v)", show, err)
	}
	run("secret", "show", "github-token")
	env["NEW"] = "rotated-VALUE-4"
	if out := run("secret", "rotate", "github-token", "--from-env", "NEW"); !strings.Contains(out, "version 2") {
		t.Errorf("secret rotate = %q, want version 2", out)
	}
	run("secret", "put", "github-token", "--keep-value", "--deliver", "mcp:github:header:Authorization")
	run("secret", "lease", "list", "-o", "json")
	run("secret", "lease", "list", "--failed", "-o", "json")
	run("secret", "rewrap")
	run("secret", "rm", "file-key")
	if code, _, errs := mandate(t, env, "secret", "show", "file-key"); code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("secret show (removed) = %d, %q; want not found", code, errs)
	}
	// Bad input is refused with a useful message, naming no value.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"secret", "put", "Bad_Name", "--from-env", "GH_TOKEN"}, "a-z"},
		{[]string{"secret", "put", "x", "--from-env", "GH_TOKEN", "--deliver", "mcp:github:env"}, "--deliver"},
		{[]string{"secret", "put", "x", "--from-env", "UNSET"}, "not set"},
		{[]string{"secret", "lease", "list", "--task", "nope"}, "not a task ID"},
	} {
		code, o, errs := mandate(t, env, tc.args...)
		if code == 0 || !strings.Contains(errs, tc.want) {
			t.Errorf("%v = %d, %q; want a failure naming %q", tc.args, code, errs, tc.want)
		}
		outputs = append(outputs, o, errs)
	}
	big := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(big, bytes.Repeat([]byte("x"), 64<<10+1), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := mandate(t, env, "secret", "put", "big", "--from-file", big); code == 0 || !strings.Contains(errs, "limit") {
		t.Errorf("secret put (oversized) = %d, %q", code, errs)
	}
	outputs = append(outputs, run("audit", "export"))
	all := strings.Join(outputs, "\n")
	if !strings.Contains(all, "secret.rotated") {
		t.Errorf("the ledger export has no secret.rotated event")
	}
	for _, v := range []string{"ghp_from-env-VALUE-1", "file-VALUE-2", "stdin-VALUE-3", "rotated-VALUE-4"} {
		if strings.Contains(all, v) {
			t.Errorf("a command's output or the ledger shows the value %q", v)
		}
	}
}

func TestSecretHelp(t *testing.T) {
	for _, c := range [][]string{{"secret", "--help"}, {"secret", "put", "--help"}, {"secret", "lease", "list", "--help"}, {"secret", "rotate", "--help"}} {
		out := mustRun(t, nil, c...)
		if !strings.Contains(out, "Usage:") {
			t.Errorf("%v: no usage", c)
		}
		if len(c) > 2 && !strings.Contains(out, "Examples:") {
			t.Errorf("%v: no examples", c)
		}
	}
}
