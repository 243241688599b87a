package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// newAuditServer serves the admin API with the audit endpoints. The ledger
// lives in its own database file (ledgerDB), so that a test can break it
// while the rest of the store keeps working.
func newAuditServer(t *testing.T) (srv *httptest.Server, db, ledgerDB *sqlite.DB, l *audit.Ledger) {
	t.Helper()
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ledgerDB, err = sqlite.Open(t.Context(), filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ledgerDB.Close() })
	l = mustLedger(t, ledgerDB)
	svc, err := admin.New(admin.Config{
		Agents: db, Tasks: db, Entitlements: db, Recorder: l,
		Revoker: token.NewRevocations(time.Now), TrustDomain: "example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	inner := httpapi.NewAdmin(httpapi.AdminConfig{Service: svc, Ledger: l})
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inner.ServeHTTP(w, r.WithContext(admin.WithActor(r.Context(), "admin:test")))
	}))
	t.Cleanup(srv.Close)
	return srv, db, ledgerDB, l
}

func call(t *testing.T, srv *httptest.Server, method, path, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func TestAuditAPI(t *testing.T) {
	t.Parallel()
	srv, _, _, l := newAuditServer(t)
	for _, name := range []string{"bot", "other", "third"} {
		body := strings.Replace(agentBody, `"bot"`, `"`+name+`"`, 1)
		if status, b := call(t, srv, "POST", "/admin/v1/agents", body); status != 201 {
			t.Fatalf("register %s = %d %s", name, status, b)
		}
	}
	if status, b := call(t, srv, "POST", "/admin/v1/agents/other/suspend", `{"reason":"r"}`); status != 200 {
		t.Fatalf("suspend = %d %s", status, b)
	}

	for _, tc := range []struct {
		name, path string
		wantStatus int
		wantIn     string
		wantCount  int
	}{
		{"all", "/admin/v1/audit/events", 200, `"type":"agent.registered"`, 4},
		{"by agent name", "/admin/v1/audit/events?agent=other", 200, `"agent":"spiffe://example.org/agent/other"`, 2},
		{"by type", "/admin/v1/audit/events?type=agent.suspended", 200, `"reason":"r"`, 1},
		{"last", "/admin/v1/audit/events?limit=1&last=true", 200, `"seq":4`, 1},
		{"after", "/admin/v1/audit/events?after=3", 200, `"seq":4`, 1},
		{"time range", "/admin/v1/audit/events?since=2000-01-01T00:00:00Z&until=2100-01-01T00:00:00Z", 200, `"seq":1`, 4},
		{"empty", "/admin/v1/audit/events?decision=deny", 200, `"events":[]`, 0},
		{"bad decision", "/admin/v1/audit/events?decision=maybe", 400, "decision must be", -1},
		{"bad since", "/admin/v1/audit/events?since=yesterday", 400, "since must be an RFC 3339 time", -1},
		{"until before since", "/admin/v1/audit/events?since=2026-01-02T00:00:00Z&until=2026-01-01T00:00:00Z", 400, "until must be after since", -1},
		{"bad limit", "/admin/v1/audit/events?limit=5000", 400, "limit must be", -1},
		{"bad after", "/admin/v1/audit/events?after=-1", 400, "after must be", -1},
		{"unknown parameter", "/admin/v1/audit/events?agnet=bot", 400, `unknown parameter \"agnet\"`, -1},
		{"bad agent", "/admin/v1/audit/events?agent=spiffe://elsewhere.org/agent/x", 400, "trust domain", -1},
		{"bad proof seq", "/admin/v1/audit/proof/abc", 400, "positive integer", -1},
		{"proof beyond the tree", "/admin/v1/audit/proof/99", 400, "is not in the tree", -1},
		{"bad consistency", "/admin/v1/audit/consistency", 400, "old", -1},
		{"bad export format", "/admin/v1/audit/export?format=xml", 400, "format must be", -1},
	} {
		status, b := call(t, srv, "GET", tc.path, "")
		if status != tc.wantStatus || !strings.Contains(string(b), tc.wantIn) {
			t.Errorf("%s: GET %s = %d %s, want %d containing %s", tc.name, tc.path, status, b, tc.wantStatus, tc.wantIn)
			continue
		}
		if tc.wantCount >= 0 {
			var resp struct{ Events []audit.Event }
			if err := json.Unmarshal(b, &resp); err != nil || len(resp.Events) != tc.wantCount {
				t.Errorf("%s: %d events (%v), want %d", tc.name, len(resp.Events), err, tc.wantCount)
			}
		}
	}

	// Checkpoint, then proofs checked as an auditor would.
	status, b := call(t, srv, "POST", "/admin/v1/audit/checkpoint", "")
	if status != 200 {
		t.Fatalf("POST checkpoint = %d %s", status, b)
	}
	var cpr httpapi.CheckpointResponse
	if err := json.Unmarshal(b, &cpr); err != nil {
		t.Fatal(err)
	}
	cp, err := audit.ParseCheckpoint([]byte(cpr.Note), l.VerifierKey())
	if err != nil || cp.Size != 4 || cpr.Key != l.VerifierKey() {
		t.Fatalf("checkpoint = %+v, %v; want size 4 signed by the ledger key", cp, err)
	}
	if _, b := call(t, srv, "GET", "/admin/v1/audit/checkpoint", ""); !strings.Contains(string(b), `"size":4`) {
		t.Errorf("GET checkpoint = %s, want the latest (size 4)", b)
	}
	_, b = call(t, srv, "GET", "/admin/v1/audit/proof/2", "")
	var ip audit.InclusionProof
	if err := json.Unmarshal(b, &ip); err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(ip.Proof, cp.Size, cp.Root, 1, tlog.RecordHash(ip.Event)); err != nil {
		t.Errorf("CheckRecord(proof of 2) = %v", err)
	}
	_, b = call(t, srv, "GET", "/admin/v1/audit/consistency?old=1&new=4", "")
	var tp audit.ConsistencyProof
	if err := json.Unmarshal(b, &tp); err != nil {
		t.Fatal(err)
	}
	first, _ := l.ProveInclusion(t.Context(), 1, 1)
	if err := tlog.CheckTree(tp.Proof, 4, cp.Root, 1, first.LeafHash); err != nil {
		t.Errorf("CheckTree(1 → 4) = %v", err)
	}

	// The unfiltered export verifies offline; the OCSF one maps classes.
	status, b = call(t, srv, "GET", "/admin/v1/audit/export", "")
	if status != 200 {
		t.Fatalf("export = %d %s", status, b)
	}
	rep, err := audit.VerifyExport(bytes.NewReader(b), [][]byte{[]byte(cpr.Note)}, cpr.Key)
	if err != nil || !rep.OK() || rep.Events != 4 {
		t.Errorf("VerifyExport(API export) = %+v, %v", rep, err)
	}
	_, b = call(t, srv, "GET", "/admin/v1/audit/export?format=ocsf&agent=other", "")
	sc := bufio.NewScanner(bytes.NewReader(b))
	lines := 0
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil || m["class_uid"] != float64(audit.OCSFClassAPIActivity) {
			t.Errorf("OCSF line %s: class %v, %v", sc.Text(), m["class_uid"], err)
		}
		lines++
	}
	if lines != 2 {
		t.Errorf("OCSF export for agent other has %d lines, want 2", lines)
	}
	if status, b := call(t, srv, "POST", "/admin/v1/audit/verify", ""); status != 200 || !strings.Contains(string(b), `"events":4`) || strings.Contains(string(b), "problems") {
		t.Errorf("verify = %d %s, want OK with 4 events", status, b)
	}
}

// TestAdminFailsClosedWhenLedgerFails breaks the ledger's database under
// a running admin API: changes are refused with 503 and do not take
// effect.
func TestAdminFailsClosedWhenLedgerFails(t *testing.T) {
	t.Parallel()
	srv, db, ledgerDB, _ := newAuditServer(t)
	if status, b := call(t, srv, "POST", "/admin/v1/agents", agentBody); status != 201 {
		t.Fatalf("register = %d %s", status, b)
	}
	ledgerDB.Close() // a real failure: the ledger can no longer write
	status, b := call(t, srv, "POST", "/admin/v1/agents", strings.Replace(agentBody, `"bot"`, `"late"`, 1))
	if status != http.StatusServiceUnavailable || !strings.Contains(string(b), "audit log is unavailable") {
		t.Errorf("register with the ledger down = %d %s, want 503 audit log unavailable", status, b)
	}
	late, err := db.GetAgent(context.Background(), mustID(t, "late"))
	if err == nil && late.Status == identity.StatusActive {
		t.Error("an agent whose registration was not audited is active")
	}
	if status, _ := call(t, srv, "POST", "/admin/v1/tasks", `{"agent":"bot","on_behalf_of":"alice","purpose":"p","scope":["file.read:/repo/**"]}`); status != http.StatusServiceUnavailable {
		t.Errorf("start task with the ledger down = %d, want 503", status)
	}
	if tasks, _ := db.ListTasks(context.Background(), taskFilter()); len(tasks) != 0 {
		for _, tk := range tasks {
			if tk.Status == "active" {
				t.Errorf("task %s is active although its start was not audited", tk.ID)
			}
		}
	}
}

// TestTokenIssuanceFailsClosedWhenLedgerFails: the token endpoint refuses
// to issue once the ledger cannot write.
func TestTokenIssuanceFailsClosedWhenLedgerFails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "mandate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	ledgerDB, err := sqlite.Open(ctx, filepath.Join(dir, "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ledgerDB.Close() })
	mux := http.NewServeMux()
	ts := httptest.NewServer(mux)
	t.Cleanup(ts.Close)
	srv, err := token.NewServer(ctx, token.Config{
		Sealer: sealtest.Keyring(),
		Issuer: ts.URL, TrustDomain: "example.org",
		Identities: db, Tasks: db, Entitlements: db, Tokens: db, Audit: mustLedger(t, ledgerDB),
	})
	if err != nil {
		t.Fatal(err)
	}
	httpapi.NewOAuth(httpapi.OAuthConfig{Server: srv}).Register(mux)
	e := &env{t: t, db: db, srv: srv, http: ts, keys: map[string]ed25519.PrivateKey{}}
	id := e.register("bot", false)
	e.agentToken(id, nil) // works while the ledger does
	ledgerDB.Close()
	f := e.clientAuth(id, ts.URL+httpapi.PathOAuthToken)
	f.Set("grant_type", token.GrantClientCredentials)
	status, m, _ := e.post(httpapi.PathOAuthToken, f, nil)
	if status != http.StatusServiceUnavailable || m["error"] != "temporarily_unavailable" || m["access_token"] != nil {
		t.Errorf("token request with the ledger down = %d %v, want 503 temporarily_unavailable and no token", status, m)
	}
}

func mustID(t *testing.T, name string) identity.ID {
	t.Helper()
	id, err := identity.NewID("example.org", name)
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func taskFilter() task.Filter { return task.Filter{} }
