package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
)

func sockDo(t *testing.T, c *http.Client, method, path, ctype, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, "http://mandate"+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAuthZENEndToEnd: an enforcement point asks the real server for
// decisions on behalf of an agent's task; every decision is durably in the
// event log; the policy admin API changes policies live and rejects a bad
// one with its location.
func TestAuthZENEndToEnd(t *testing.T) {
	t.Parallel()
	const pointToken = "mandate_point_test_token"
	sum := sha256.Sum256([]byte(pointToken))
	cfg := testConfig(t)
	cfg.Access.PointTokenHashes = []string{"sha256:" + hex.EncodeToString(sum[:])}
	cfg.Policy.Dir = t.TempDir()
	cfg.Policy.PollInterval = 20 * time.Millisecond
	if err := os.WriteFile(filepath.Join(cfg.Policy.Dir, "site.cedar"), []byte(`@id("no-prod") @reason("not prod") forbid(principal, action == Action::"file.write", resource == File::"/repo/prod.yaml");`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := startServer(t, cfg)
	sock := socketClient(s.SocketPath())

	code, body := sockDo(t, sock, "POST", "/admin/v1/agents", "application/json",
		`{"name": "coder", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "autonomous"}`)
	if code != 201 {
		t.Fatalf("register agent: %d %s", code, body)
	}
	code, body = sockDo(t, sock, "POST", "/admin/v1/tasks", "application/json",
		`{"agent": "coder", "on_behalf_of": "alice@example.org", "purpose": "fix the build", "scope": ["file.*:/repo/**"]}`)
	if code != 201 {
		t.Fatalf("start task: %d %s", code, body)
	}
	var tk struct {
		ID    string `json:"id"`
		Agent string `json:"agent"`
	}
	_ = json.Unmarshal([]byte(body), &tk)

	base := "http://" + s.Addr().String()
	eval := func(auth, resource, action, reqID string) (int, string) {
		t.Helper()
		b := `{"subject": {"type": "agent", "id": "` + tk.Agent + `", "properties": {"task": "` + tk.ID + `"}},
			"action": {"name": "` + action + `"}, "resource": {"type": "file", "id": "` + resource + `"}}`
		req, _ := http.NewRequest("POST", base+"/access/v1/evaluation", strings.NewReader(b))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		req.Header.Set("X-Request-ID", reqID)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		if resp.Header.Get("X-Request-ID") != reqID {
			t.Errorf("X-Request-ID not echoed")
		}
		return resp.StatusCode, string(out)
	}
	if code, body := eval("Bearer "+pointToken, "/repo/main.go", "file.write", "r1"); code != 200 || !strings.Contains(body, `"decision":true`) {
		t.Errorf("in-scope write: %d %s", code, body)
	}
	if code, body := eval("Bearer "+pointToken, "/repo/prod.yaml", "file.write", "r2"); code != 200 || !strings.Contains(body, `"decision":false`) || !strings.Contains(body, "no-prod") {
		t.Errorf("forbidden write: %d %s", code, body)
	}
	if code, body := eval("Bearer "+pointToken, "/etc/passwd", "file.read", "r3"); code != 200 || !strings.Contains(body, `"decision":false`) {
		t.Errorf("out-of-scope read: %d %s", code, body)
	}
	if code, _ := eval("Bearer not-a-token", "/repo/main.go", "file.read", "r4"); code != 401 {
		t.Errorf("bad credential: %d, want 401", code)
	}

	// Every decision is in the event log.
	evs, err := s.backend.ListEvents(t.Context(), audit.Query{Type: audit.TypeActionDecided, Task: tk.ID})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, ev := range evs {
		got = append(got, ev.RequestID+"="+ev.Decision)
	}
	if strings.Join(got, " ") != "r1=allow r2=deny r3=deny" {
		t.Errorf("decision events = %v", got)
	}

	// Metrics.
	_, metrics := get(t, http.DefaultClient, base+"/metrics")
	for _, want := range []string{`mandate_access_decisions_total{decision="allow"} 1`, `mandate_access_decisions_total{decision="deny"} 3`,
		`mandate_policy_policies{set="live"} 19`, `mandate_policy_reloads_total{result="ok",set="live"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Discovery.
	code, body = get(t, http.DefaultClient, base+"/.well-known/authzen-configuration")
	if code != 200 || !strings.Contains(body, `"access_evaluations_endpoint":"`+s.PublicURL()+`/access/v1/evaluations"`) {
		t.Errorf("discovery: %d %s", code, body)
	}

	// The policy admin API: a bad policy is refused with its location and
	// changes nothing; a good one applies at once.
	code, body = sockDo(t, sock, "PUT", "/admin/v1/policies/no-reads", "text/plain", "forbid(principal, action, resource) when { context.nope };")
	if code != 400 || !strings.Contains(body, `"file":"api:no-reads"`) || !strings.Contains(body, `"line":1`) {
		t.Errorf("PUT bad policy: %d %s", code, body)
	}
	code, body = sockDo(t, sock, "PUT", "/admin/v1/policies/no-reads", "text/plain", `@id("no-reads") forbid(principal, action == Action::"file.read", resource);`)
	if code != 200 || !strings.Contains(body, `"no-reads"`) {
		t.Errorf("PUT policy: %d %s", code, body)
	}
	if code, body := eval("Bearer "+pointToken, "/repo/main.go", "file.read", "r5"); code != 200 || !strings.Contains(body, "no-reads") {
		t.Errorf("after PUT: %d %s", code, body)
	}
	code, body = sockDo(t, sock, "POST", "/admin/v1/policies/explain", "application/json",
		`{"agent": {"id": "spiffe://mandate.local/agent/coder", "tier": "assist"}, "action": "file.read", "resource": {"id": "/x"}, "risk": "read", "task": {"id": "t", "in_scope": true}}`)
	if code != 200 || !strings.Contains(body, `"no-reads"`) || !strings.Contains(body, `"considered"`) {
		t.Errorf("explain: %d %s", code, body)
	}
	if code, body := sockDo(t, sock, "DELETE", "/admin/v1/policies/no-reads", "", ""); code != 204 {
		t.Errorf("DELETE: %d %s", code, body)
	}
	// Policy changes are audited.
	changes, err := s.backend.ListEvents(t.Context(), audit.Query{Type: audit.TypePolicyChanged})
	if err != nil {
		t.Fatal(err)
	}
	var ops []string
	for _, ev := range changes {
		ops = append(ops, ev.Action+":"+ev.Resource+":"+ev.Actor)
	}
	if strings.Join(ops, " ") != "put:no-reads:admin:local delete:no-reads:admin:local" {
		t.Errorf("policy change events = %v", ops)
	}
	// A file change is picked up by polling.
	if err := os.WriteFile(filepath.Join(cfg.Policy.Dir, "site.cedar"), []byte(`@id("no-go") forbid(principal, action == Action::"file.write", resource == File::"/repo/main.go");`), 0o600); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, body := eval("Bearer "+pointToken, "/repo/main.go", "file.write", "r6")
		if strings.Contains(body, "no-go") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the policy file change was not picked up: %s", body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestShadowPolicies: with policy.shadow_dir, a candidate set runs beside
// the live one; its differences are recorded and not enforced.
func TestShadowPolicies(t *testing.T) {
	t.Parallel()
	const pointToken = "mandate_point_shadow_token"
	sum := sha256.Sum256([]byte(pointToken))
	cfg := testConfig(t)
	cfg.Access.PointTokenHashes = []string{"sha256:" + hex.EncodeToString(sum[:])}
	cfg.Policy.ShadowDir = t.TempDir()
	if err := os.WriteFile(filepath.Join(cfg.Policy.ShadowDir, "candidate.cedar"),
		[]byte(`@id("no-writes") forbid(principal, action == Action::"file.write", resource);`), 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := startServer(t, cfg)
	sock := socketClient(s.SocketPath())
	sockDo(t, sock, "POST", "/admin/v1/agents", "application/json",
		`{"name": "coder", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "autonomous"}`)
	_, body := sockDo(t, sock, "POST", "/admin/v1/tasks", "application/json",
		`{"agent": "coder", "on_behalf_of": "alice@example.org", "purpose": "p", "scope": ["file.*:/repo/**"]}`)
	var tk struct{ ID, Agent string }
	_ = json.Unmarshal([]byte(body), &tk)
	req, _ := http.NewRequest("POST", "http://"+s.Addr().String()+"/access/v1/evaluation", strings.NewReader(
		`{"subject": {"type": "agent", "id": "`+tk.Agent+`", "properties": {"task": "`+tk.ID+`"}}, "action": {"name": "file.write"}, "resource": {"type": "file", "id": "/repo/a"}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+pointToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), `"decision":true`) {
		t.Fatalf("the live set must decide: %s", b)
	}
	evs, err := s.backend.ListEvents(t.Context(), audit.Query{Type: audit.TypePolicyShadowDiffers})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 1 || evs[0].Decision != "allow" || evs[0].Details["shadow_decision"] != "deny" || evs[0].Details["shadow_policies"] != "no-writes" {
		t.Errorf("shadow events = %+v", evs)
	}
}

// TestImportAPIPolicyFiles: the API-managed policies an older release
// kept as files in the data directory are imported into the store on the
// first start (live, recorded, the files renamed), and only once.
func TestImportAPIPolicyFiles(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	dir := filepath.Join(cfg.DataDir, "policies")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	const text = `@id("no-reads") forbid(principal, action == Action::"file.read", resource);`
	for name, body := range map[string]string{"site.cedar": text, "Not-A-Name.cedar": "x", ".tmp-123": "x"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for run := range 2 {
		s, stop := startServer(t, cfg)
		src, err := s.backend.GetPolicySource(t.Context(), "site")
		if err != nil || string(src.Text) != text || src.UpdatedBy != "system" {
			t.Fatalf("run %d: stored %+v, %v; want the file's text by system", run, src, err)
		}
		code, body := sockDo(t, socketClient(s.SocketPath()), "GET", "/admin/v1/policies", "", "")
		if code != 200 || !strings.Contains(body, `"api:site"`) {
			t.Errorf("run %d: live set: %d %s, want api:site", run, code, body)
		}
		evs, err := s.backend.ListEvents(t.Context(), audit.Query{Type: audit.TypePolicyChanged})
		if err != nil {
			t.Fatal(err)
		}
		if len(evs) != 1 || evs[0].Action != "import" || evs[0].Resource != "site" || evs[0].Actor != "system" ||
			evs[0].Details["new_digest"] != policy.SourceDigest([]byte(text)) {
			t.Errorf("run %d: policy events = %+v, want one import of site", run, evs)
		}
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	var names []string
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if strings.Join(names, " ") != ".tmp-123 Not-A-Name.cedar site.cedar.imported" {
		t.Errorf("policy files after import: %v", names)
	}
}
