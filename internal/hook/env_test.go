package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/server"
	"github.com/mandatehq/mandate/internal/token"
)

// testEnv is a real mandate server (shipped default policies, SQLite in
// a temporary directory, 127.0.0.1) with an autonomous agent whose task
// is scoped to a repository directory, and the files the recorded
// payloads name.
type testEnv struct {
	s       *server.Server
	admin   *http.Client
	agent   string
	taskID  string
	token   string
	repo    string // the repository's real path, in canonical form
	repoOS  string // the same, as an OS path
	outside string // a directory outside the repository (OS path)
	// noSymlinks, if set, says why repo/link is not a link to outside.
	noSymlinks string
}

// testScope is the task's scope: the repository's files, git and ls,
// one documentation host, web search (Claude Code's and Gemini CLI's),
// the GitHub MCP server, and
// delegation to itself (added by newTestEnv).
const testScope = "shell.exec:git shell.exec:ls shell.exec:bash http.request:docs.example.com http.request:api.anthropic.com http.request:generativelanguage.googleapis.com tool.call:github/*"

func newTestEnv(tb testing.TB) *testEnv {
	tb.Helper()
	dir, err := os.MkdirTemp("", "mandate-hook-") // short: unix socket paths are limited
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	if cfg.AdminListener, err = harness.AdminListener(dir); err != nil {
		tb.Fatal(err)
	}
	// The admin socket decides approvals as a member of the approvers
	// group (the task runs on alice's behalf: she may not approve it).
	cfg.Approvals.LocalPerson = "approver@example.com"
	cfg.Approvals.Approvers = []string{"approver@example.com"}
	s, err := server.New(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("server.New = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			tb.Error("server did not stop")
		}
	})

	e := &testEnv{s: s, admin: harness.AdminClientAt(s.AdminAddr())}
	e.repoOS = filepath.Join(dir, "repo")
	e.outside = filepath.Join(dir, "outside")
	for _, d := range []string{filepath.Join(e.repoOS, "src"), e.outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(e.repoOS, "src", "main.go"), []byte("package main\n"), 0o644); err != nil {
		tb.Fatal(err)
	}
	link := filepath.Join(e.repoOS, "link")
	if err := os.Symlink(e.outside, link); err != nil {
		tb.Fatal(err)
	}
	if st, err := os.Lstat(link); err != nil || st.Mode()&os.ModeSymlink == 0 {
		// Wine 8.0's CreateSymbolicLinkW reports success and creates
		// nothing (Windows creates the link, or fails without the
		// privilege): the tests of links out of the repository cannot run.
		e.noSymlinks = fmt.Sprintf("os.Symlink succeeded but left no link (Lstat: %v): Wine's CreateSymbolicLinkW is a stub", err)
	}
	if e.repo, err = RealPath("", e.repoOS); err != nil {
		tb.Fatal(err)
	}

	hc := &http.Client{Timeout: 10 * time.Second}
	a, err := harness.RegisterAgent(tb.Context(), e.admin, harness.Registration{
		Name: "coder", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: "autonomous", Entitle: []string{"*"},
	})
	if err != nil {
		tb.Fatal(err)
	}
	e.agent = a.ID
	tokenURL, err := harness.TokenEndpoint(tb.Context(), hc, s.PublicURL())
	if err != nil {
		tb.Fatal(err)
	}
	at, err := a.Token(tb.Context(), hc, tokenURL)
	if err != nil {
		tb.Fatal(err)
	}
	scope := testScope + " file.*:" + e.repo + "/** task.delegate:" + a.ID
	if e.token, err = harness.StartTask(tb.Context(), hc, tokenURL, at, harness.Task{Scope: scope, Purpose: "fix the build", OnBehalfOf: "alice@example.com"}); err != nil {
		tb.Fatal(err)
	}
	t, err := jwt.ParseSigned(e.token, token.SignatureAlgorithms)
	if err != nil {
		tb.Fatal(err)
	}
	var c struct {
		TaskID string `json:"task_id"`
	}
	if err := t.UnsafeClaimsWithoutVerification(&c); err != nil {
		tb.Fatal(err)
	}
	e.taskID = c.TaskID
	return e
}

// payload reads a recorded Claude Code payload with {{REPO}} replaced by
// the repository's OS path (JSON-escaped) and {{ROOT}} by its drive ("C:"
// on Windows, "" elsewhere).
func (e *testEnv) payload(tb testing.TB, name string) []byte {
	tb.Helper()
	return e.payloadOf(tb, "claude-code", name)
}

// payloadOf reads the recorded payload name of the agent's adapter.
func (e *testEnv) payloadOf(tb testing.TB, agent, name string) []byte {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", agent, name))
	if err != nil {
		tb.Fatal(err)
	}
	esc, _ := json.Marshal(e.repoOS)
	b = bytes.ReplaceAll(b, []byte("{{REPO}}"), esc[1:len(esc)-1])
	return bytes.ReplaceAll(b, []byte("{{ROOT}}"), []byte(filepath.VolumeName(e.repoOS)))
}

// resource is a ledger resource of the test tables in canonical form:
// {{REPO}} is the real repository path, and {{ROOT}} the root of the
// repository's drive ("/C:" on Windows, "" elsewhere), as {{ROOT}} in a
// payload names it ("C:" or "").
func (e *testEnv) resource(r string) string {
	root := ""
	if v := filepath.VolumeName(e.repoOS); v != "" {
		root = "/" + v
	}
	return strings.ReplaceAll(strings.ReplaceAll(r, "{{REPO}}", e.repo), "{{ROOT}}", root)
}

// env is the hook's environment: the task token.
func (e *testEnv) env(key string) string {
	if key == "MANDATE_TASK_TOKEN" {
		return e.token
	}
	return ""
}

// run runs the hook on one payload and returns its exit status, stdout
// and stderr.
// wantDecisionOn fails t unless the ledger holds a decision on the
// resource r (spelled as testEnv.resource reads it), asked by file's
// payload.
func (e *testEnv) wantDecisionOn(t *testing.T, file, r string) {
	t.Helper()
	want := e.resource(r)
	decided := e.events(t, audit.TypeActionDecided)
	for _, ev := range decided {
		if ev.Resource == want {
			return
		}
	}
	t.Errorf("%s: no decision on %s in the ledger: %s", file, want, resourcesOf(decided))
}

// runApproved runs the hook on in while the request it holds is approved
// (approvePending), and returns its answer; a non-zero exit fails t.
func (e *testEnv) runApproved(t *testing.T, in []byte, mod func(*Config)) string {
	t.Helper()
	type result struct {
		code           int
		stdout, stderr string
	}
	done := make(chan result, 1)
	go func() {
		code, stdout, stderr := e.run(t, in, mod)
		done <- result{code, stdout, stderr}
	}()
	approvePending(t, e, "approve", "fine")
	r := <-done
	if r.code != 0 {
		t.Fatalf("exit %d, stderr %q", r.code, r.stderr)
	}
	return r.stdout
}

func (e *testEnv) run(tb testing.TB, in []byte, mod func(*Config)) (int, string, string) {
	tb.Helper()
	var out, errb bytes.Buffer
	cfg := Config{Adapter: ClaudeCode{}, Server: e.s.PublicURL(), Getenv: e.env, Deadline: 10 * time.Second,
		Stdin: bytes.NewReader(in), Stdout: &out, Stderr: &errb}
	if mod != nil {
		mod(&cfg)
	}
	code := Run(tb.Context(), cfg)
	return code, out.String(), errb.String()
}

// events returns the task's ledger events of type typ.
func (e *testEnv) events(tb testing.TB, typ audit.Type) []*audit.Event {
	tb.Helper()
	q := url.Values{"task": {e.taskID}, "type": {string(typ)}, "limit": {"1000"}}
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodGet, "http://mandate/admin/v1/audit/events?"+q.Encode(), nil)
	var page struct {
		Events []*audit.Event `json:"events"`
	}
	if err := harness.DoJSON(e.admin, req, &page); err != nil {
		tb.Fatal(err)
	}
	return page.Events
}

// decision reads the permission decision a PreToolUse answer carries.
func decision(tb testing.TB, stdout string) (string, string) {
	tb.Helper()
	var out struct {
		HookSpecificOutput struct {
			HookEventName            string `json:"hookEventName"`
			PermissionDecision       string `json:"permissionDecision"`
			PermissionDecisionReason string `json:"permissionDecisionReason"`
		} `json:"hookSpecificOutput"`
	}
	if err := json.Unmarshal([]byte(stdout), &out); err != nil {
		tb.Fatalf("stdout %q is not Claude Code hook output: %v", stdout, err)
	}
	if out.HookSpecificOutput.HookEventName != "PreToolUse" {
		tb.Fatalf("hookEventName = %q, want PreToolUse", out.HookSpecificOutput.HookEventName)
	}
	return out.HookSpecificOutput.PermissionDecision, out.HookSpecificOutput.PermissionDecisionReason
}

func resourcesOf(evs []*audit.Event) string {
	var rs []string
	for _, ev := range evs {
		rs = append(rs, ev.Resource+"="+ev.Decision)
	}
	return strings.Join(rs, " ")
}

// tempDir is t.TempDir, except that a failure to remove it afterwards is
// not a test failure: under Wine 8.0 (the Windows tests in CI) Go cannot
// delete anything (its Deleteat asks for FileDispositionInformationEx,
// which Wine does not implement), so the directory is left in the Wine
// prefix, which CI empties.
func tempDir(tb testing.TB) string {
	tb.Helper()
	dir, err := os.MkdirTemp("", strings.ReplaceAll(tb.Name(), "/", "_"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// needSymlinks skips a test of repo/link, the link out of the repository,
// where the platform did not create it (see testEnv.noSymlinks).
func (e *testEnv) needSymlinks(tb testing.TB) {
	tb.Helper()
	if e.noSymlinks != "" {
		tb.Skip(e.noSymlinks)
	}
}
