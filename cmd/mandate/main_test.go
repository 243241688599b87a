package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/server"
	"github.com/mandatehq/mandate/internal/task"
)

// testServer starts a server on 127.0.0.1:0 with a temporary data
// directory and returns the data directory and the TCP base URL.
func testServer(t *testing.T, modify func(*server.Config)) (dataDir, baseURL string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mandate-cli-") // short: socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	if modify != nil {
		modify(&cfg)
	}
	s, err := server.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("server Run() = %v", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("server did not stop")
		}
	})
	return cfg.DataDir, "http://" + s.Addr().String()
}

// mandate runs the CLI in-process and returns its exit status and output.
func mandate(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		if k == "HOME" {
			return "/nonexistent-home"
		}
		return env[k]
	}
	code = run(t.Context(), args, &out, &errb, getenv)
	return code, out.String(), errb.String()
}

// mustRun runs the CLI and fails the test unless it exits 0.
func mustRun(t *testing.T, env map[string]string, args ...string) string {
	t.Helper()
	code, out, errs := mandate(t, env, args...)
	if code != 0 {
		t.Fatalf("mandate %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func writePublicJWK(t *testing.T, kid string, private bool) string {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k := jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}
	if private {
		k.Key = priv
	}
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), kid+".jwk")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAgentCommands(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	keyFile := writePublicJWK(t, "k1", false)

	out := mustRun(t, env, "agent", "register", "build-bot",
		"--owner", "alice@example.com", "--escalation", "oncall@example.com", "--tier", "supervised",
		"--label", "team=platform", "--label", "env=ci", "--key", keyFile,
		"--federation", "https://token.actions.githubusercontent.com=repo:org/app:ref:refs/heads/main",
		"--description", "CI helper")
	for _, want := range []string{"Registered spiffe://mandate.local/agent/build-bot", "Owner:", "alice@example.com",
		"supervised", "env=ci", "team=platform", "k1 (Ed25519)", "repo:org/app:ref:refs/heads/main"} {
		if !strings.Contains(out, want) {
			t.Errorf("agent register output lacks %q:\n%s", want, out)
		}
	}

	// Refusals: the server's problem detail, on stderr, exit 1.
	code, out, errs := mandate(t, env, "agent", "register", "no-owner", "--escalation", "oncall@example.com")
	if code != 1 || out != "" || !strings.Contains(errs, "mandate: invalid agent: owner is required") {
		t.Errorf("register without --owner: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	code, _, errs = mandate(t, env, "agent", "register", "build-bot", "--owner", "a@example.com", "--escalation", "b@example.com")
	if code != 1 || !strings.HasPrefix(errs, "mandate: ") || !strings.Contains(errs, "exists") {
		t.Errorf("register twice: exit %d, stderr %q", code, errs)
	}
	code, _, errs = mandate(t, env, "agent", "register", "leaky", "--owner", "a@example.com", "--escalation", "b@example.com",
		"--key", writePublicJWK(t, "k2", true))
	if code != 1 || !strings.Contains(errs, "private key") {
		t.Errorf("register with a private key: exit %d, stderr %q", code, errs)
	}

	mustRun(t, env, "agent", "register", "docs-bot", "--owner", "bob@example.com", "--escalation", "oncall@example.com")

	// list: an aligned table, and the API's JSON.
	out = mustRun(t, env, "agent", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") || !strings.HasPrefix(lines[1], "build-bot") || !strings.HasPrefix(lines[2], "docs-bot") {
		t.Fatalf("agent list:\n%s", out)
	}
	if col := strings.Index(lines[0], "TIER"); col < 0 || lines[1][col:col+len("supervised")] != "supervised" || lines[2][col:col+len("assist")] != "assist" {
		t.Errorf("agent list columns not aligned:\n%s", out)
	}
	out = mustRun(t, env, "agent", "list", "-o", "json", "--owner", "alice@example.com")
	var list struct {
		Agents []identity.Agent `json:"agents"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("agent list -o json: %v\n%s", err, out)
	}
	if len(list.Agents) != 1 || list.Agents[0].ID.Name() != "build-bot" || len(list.Agents[0].Keys) != 1 {
		t.Errorf("agent list --owner -o json = %+v", list.Agents)
	}

	// show by name or SPIFFE ID.
	for _, ref := range []string{"build-bot", "spiffe://mandate.local/agent/build-bot"} {
		out = mustRun(t, env, "agent", "show", ref, "-o", "json")
		var ag identity.Agent
		if err := json.Unmarshal([]byte(out), &ag); err != nil || ag.Status != identity.StatusActive || ag.Labels["team"] != "platform" {
			t.Errorf("agent show %s -o json = %+v, %v", ref, ag, err)
		}
	}
	code, _, errs = mandate(t, env, "agent", "show", "nobody")
	if code != 1 || !strings.Contains(errs, "not found") {
		t.Errorf("agent show nobody: exit %d, stderr %q", code, errs)
	}

	// suspend, resume, retire.
	out = mustRun(t, env, "agent", "suspend", "build-bot", "--reason", "incident")
	if !strings.Contains(out, "suspended") {
		t.Errorf("agent suspend output:\n%s", out)
	}
	out = mustRun(t, env, "agent", "list", "--status", "suspended")
	if !strings.Contains(out, "build-bot") || strings.Contains(out, "docs-bot") {
		t.Errorf("agent list --status suspended:\n%s", out)
	}
	mustRun(t, env, "agent", "resume", "build-bot")
	mustRun(t, env, "agent", "retire", "docs-bot")
	code, _, errs = mandate(t, env, "agent", "resume", "docs-bot")
	if code != 1 || errs == "" {
		t.Errorf("resume a retired agent: exit %d, stderr %q", code, errs)
	}
}

func TestTaskCommands(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	// Flags instead of the environment this time.
	dd := "--data-dir=" + dataDir
	mustRun(t, nil, "agent", "register", "build-bot", dd, "--owner", "alice@example.com", "--escalation", "oncall@example.com")

	out := mustRun(t, nil, "task", "start", dd, "--agent", "build-bot", "--on-behalf-of", "alice@example.com",
		"--purpose", "fix the flaky test", "--scope", "file.read:/repo/**", "--scope", "file.write:/repo/src/**",
		"--sensitivity", "internal", "--ttl", "30m", "--max-actions", "500", "--max-writes", "50", "-o", "json")
	var tk task.Task
	if err := json.Unmarshal([]byte(out), &tk); err != nil {
		t.Fatalf("task start -o json: %v\n%s", err, out)
	}
	if tk.Status != task.StatusActive || tk.Budget.MaxActions != 500 || len(tk.Scope) != 2 ||
		tk.ExpiresAt.Sub(tk.CreatedAt) != 30*time.Minute || tk.OnBehalfOf != "alice@example.com" {
		t.Errorf("task start = %+v", tk)
	}
	out = mustRun(t, nil, "task", "start", dd, "--agent", "build-bot", "--on-behalf-of", "alice@example.com",
		"--purpose", "second", "--scope", "tool.call:github/*")
	if !strings.Contains(out, "Started tsk_") || !strings.Contains(out, "tool.call:github/*") {
		t.Errorf("task start output:\n%s", out)
	}

	out = mustRun(t, nil, "task", "list", dd)
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(out, string(tk.ID)) {
		t.Errorf("task list:\n%s", out)
	}
	out = mustRun(t, nil, "task", "show", dd, string(tk.ID))
	for _, want := range []string{string(tk.ID), "fix the flaky test", "file.write:/repo/src/**", "actions 0/500", "active"} {
		if !strings.Contains(out, want) {
			t.Errorf("task show lacks %q:\n%s", want, out)
		}
	}

	out = mustRun(t, nil, "task", "end", dd, string(tk.ID), "--reason", "done")
	if !strings.Contains(out, string(tk.ID)+" is ended") {
		t.Errorf("task end output: %q", out)
	}
	code, _, errs := mandate(t, nil, "task", "end", dd, string(tk.ID))
	if code != 1 || !strings.HasPrefix(errs, "mandate: ") {
		t.Errorf("end an ended task: exit %d, stderr %q", code, errs)
	}
	out = mustRun(t, nil, "task", "list", dd, "--status", "active", "-o", "json")
	var list struct {
		Tasks []task.Task `json:"tasks"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list.Tasks) != 1 || list.Tasks[0].Purpose != "second" {
		t.Errorf("task list --status active -o json = %+v, %v", list.Tasks, err)
	}
	out = mustRun(t, nil, "task", "revoke", dd, string(list.Tasks[0].ID), "-o", "json")
	var fin struct {
		Task     task.Task `json:"task"`
		Finished []task.ID `json:"finished"`
	}
	if err := json.Unmarshal([]byte(out), &fin); err != nil || fin.Task.Status != task.StatusRevoked {
		t.Errorf("task revoke -o json = %+v, %v", fin, err)
	}

	code, _, errs = mandate(t, nil, "task", "start", dd, "--agent", "build-bot", "--purpose", "x", "--scope", "file.read:/x")
	if code != 1 || !strings.Contains(errs, "on_behalf_of is required") {
		t.Errorf("task start without --on-behalf-of: exit %d, stderr %q", code, errs)
	}
}

func TestRemoteAdminWithToken(t *testing.T) {
	t.Parallel()
	out := mustRun(t, nil, "admin", "token", "generate", "-o", "json")
	var gen struct{ Token, Hash string }
	if err := json.Unmarshal([]byte(out), &gen); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte(gen.Token))
	if gen.Hash != "sha256:"+hex.EncodeToString(sum[:]) || !strings.HasPrefix(gen.Token, adminTokenPrefix) {
		t.Fatalf("admin token generate = %+v", gen)
	}
	_, base := testServer(t, func(c *server.Config) { c.Admin.TokenHashes = []string{gen.Hash} })

	out = mustRun(t, map[string]string{"MANDATE_SERVER": base, "MANDATE_ADMIN_TOKEN": gen.Token},
		"agent", "register", "remote-bot", "--owner", "a@example.com", "--escalation", "b@example.com")
	if !strings.Contains(out, "remote-bot") {
		t.Errorf("remote register output:\n%s", out)
	}
	mustRun(t, nil, "agent", "list", "--server", base, "--token", gen.Token)

	code, _, errs := mandate(t, nil, "agent", "list", "--server", base)
	if code != 1 || !strings.Contains(errs, "admin token required") || !strings.Contains(errs, "--token") {
		t.Errorf("remote without a token: exit %d, stderr %q", code, errs)
	}
	code, _, errs = mandate(t, nil, "agent", "list", "--server", base, "--token", "mandate_admin_wrong")
	if code != 1 || !strings.Contains(errs, "invalid admin token") {
		t.Errorf("remote with a wrong token: exit %d, stderr %q", code, errs)
	}

	out = mustRun(t, nil, "admin", "token", "generate")
	if !strings.Contains(out, "token_hashes:") || !strings.Contains(out, "sha256:") {
		t.Errorf("admin token generate output:\n%s", out)
	}
}

func TestConnectionErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	code, _, errs := mandate(t, nil, "agent", "list", "--data-dir", dir)
	if code != 1 || !strings.Contains(errs, "no mandate server is listening on "+filepath.Join(dir, "admin.sock")) ||
		!strings.Contains(errs, "mandate serve") {
		t.Errorf("no server: exit %d, stderr %q", code, errs)
	}
	code, _, errs = mandate(t, nil, "task", "list", "--server", "http://127.0.0.1:1")
	if code != 1 || !strings.Contains(errs, "cannot reach the mandate server at http://127.0.0.1:1") {
		t.Errorf("unreachable --server: exit %d, stderr %q", code, errs)
	}
}

func TestUsageErrors(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"agent", "list", "--bogus"},
		{"agent", "show"},
		{"agent", "show", "a", "b"},
		{"agent", "list", "-o", "yaml"},
		{"agent", "register", "x", "--label", "novalue"},
		{"task", "start", "--ttl", "soon"},
		{"nonsense"},
		{"agent", "nonsense"},
		{"admin", "token", "nonsense"},
	} {
		code, _, errs := mandate(t, nil, args...)
		if code != 2 || !strings.HasPrefix(errs, "mandate: ") {
			t.Errorf("mandate %s: exit %d, stderr %q; want exit 2", strings.Join(args, " "), code, errs)
		}
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	out := mustRun(t, nil, "version")
	if !strings.HasPrefix(out, "mandate ") || !strings.Contains(out, "go1.") {
		t.Errorf("version output:\n%s", out)
	}
	out = mustRun(t, nil, "version", "-o", "json")
	var v versionInfo
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Version == "" || v.Commit == "" || v.Go == "" {
		t.Errorf("version -o json = %+v, %v", v, err)
	}
}

// Every command documents itself: a short description, and an example on
// every command that does something.
func TestHelpIsComplete(t *testing.T) {
	t.Parallel()
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		if c.Short == "" {
			t.Errorf("%s has no short description", c.CommandPath())
		}
		if !c.HasSubCommands() && c.Example == "" {
			t.Errorf("%s has no example", c.CommandPath())
		}
		c.LocalFlags().VisitAll(func(f *pflag.Flag) {
			if f.Usage == "" {
				t.Errorf("%s --%s has no help", c.CommandPath(), f.Name)
			}
		})
		for _, sub := range c.Commands() {
			if !sub.Hidden && sub.Name() != "help" {
				walk(sub)
			}
		}
	}
	walk(a.rootCmd())

	code, out, _ := mandate(t, nil, "agent", "register", "--help")
	if code != 0 || !strings.Contains(out, "--owner") || !strings.Contains(out, "Examples:") {
		t.Errorf("agent register --help: exit %d\n%s", code, out)
	}
}

// docs/cli.md mentions every command.
func TestCLIDocMentionsEveryCommand(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/cli.md")
	if err != nil {
		t.Fatal(err)
	}
	a := &app{stdout: &bytes.Buffer{}, stderr: &bytes.Buffer{}, getenv: func(string) string { return "" }}
	var walk func(c *cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			if !sub.HasSubCommands() && !strings.Contains(string(doc), sub.Name()) {
				t.Errorf("docs/cli.md does not mention %q", sub.CommandPath())
			}
			walk(sub)
		}
	}
	walk(a.rootCmd())
}

// TestAgentCredentialCommands rotates an agent's key and federation with
// 'mandate agent key' and 'mandate agent federation'.
func TestAgentCredentialCommands(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	mustRun(t, env, "agent", "register", "ci-bot", "--owner", "alice@example.com", "--escalation", "oncall@example.com",
		"--key", writePublicJWK(t, "k1", false), "--federation", "https://ci.example=repo:org/old")

	out := mustRun(t, env, "agent", "key", "add", "ci-bot", writePublicJWK(t, "k2", false))
	if !strings.Contains(out, "k1 (Ed25519)") || !strings.Contains(out, "k2 (Ed25519)") {
		t.Errorf("key add output lacks both keys:\n%s", out)
	}
	out = mustRun(t, env, "agent", "key", "remove", "ci-bot", "k1")
	if strings.Contains(out, "k1 (Ed25519)") || !strings.Contains(out, "k2 (Ed25519)") {
		t.Errorf("key remove output still lists k1 or lost k2:\n%s", out)
	}
	if code, _, errs := mandate(t, env, "agent", "key", "remove", "ci-bot", "k1"); code != 1 || !strings.Contains(errs, "no key with that kid") {
		t.Errorf("removing an absent key: exit %d, stderr %q", code, errs)
	}
	if code, _, errs := mandate(t, env, "agent", "key", "add", "ci-bot", writePublicJWK(t, "k3", true)); code == 0 || !strings.Contains(errs, "private key") {
		t.Errorf("adding a private key: exit %d, stderr %q", code, errs)
	}

	mustRun(t, env, "agent", "federation", "add", "ci-bot", "https://ci.example=repo:org/new")
	out = mustRun(t, env, "agent", "federation", "remove", "ci-bot", "https://ci.example=repo:org/old", "-o", "json")
	if strings.Contains(out, "repo:org/old") || !strings.Contains(out, "repo:org/new") {
		t.Errorf("federation remove -o json = %s", out)
	}
	if code, _, errs := mandate(t, env, "agent", "federation", "add", "ci-bot", "no-equals-sign"); code != 2 || !strings.Contains(errs, "ISSUER=SUBJECT") {
		t.Errorf("malformed federation: exit %d, stderr %q", code, errs)
	}
}
