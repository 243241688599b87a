package server

import (
	"database/sql"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/token"
)

// taskToken registers an agent, starts a task for it over the admin
// socket and signs a task token for it with the server's keyring.
func taskToken(t *testing.T, s *Server) (agent, tok string) {
	t.Helper()
	sock := socketClient(s.SocketPath())
	if code, body := sockDo(t, sock, "POST", "/admin/v1/agents", "application/json",
		`{"name": "coder", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "supervised"}`); code != 201 {
		t.Fatalf("register: %d %s", code, body)
	}
	code, body := sockDo(t, sock, "POST", "/admin/v1/tasks", "application/json",
		`{"agent": "coder", "on_behalf_of": "alice@example.org", "purpose": "p", "scope": ["file.*:/repo/**"]}`)
	if code != 201 {
		t.Fatalf("task: %d %s", code, body)
	}
	var tk struct {
		ID    string `json:"id"`
		Agent string `json:"agent"`
	}
	if err := json.Unmarshal([]byte(body), &tk); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tok, err := s.authz.Keyring().Sign(&token.Claims{
		Issuer: s.PublicURL(), Subject: "alice@example.org", Audience: jwt.Audience{s.PublicURL()},
		Expiry: jwt.NewNumericDate(now.Add(5 * time.Minute)), IssuedAt: jwt.NewNumericDate(now),
		ID: "jti-anchor-test", ClientID: tk.Agent, TaskID: tk.ID, Scope: "file.*:/repo/**", Use: token.UseTask,
		Act: token.ActorChain([]string{tk.Agent}),
	})
	if err != nil {
		t.Fatal(err)
	}
	return tk.Agent, tok
}

type httpResult struct {
	code int
	hdr  http.Header
	body string
}

func do(t *testing.T, c *http.Client, method, url, auth, body string) httpResult {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return httpResult{resp.StatusCode, resp.Header, string(b)}
}

// evaluate asks AuthZEN whether agent may read /repo/a and reports
// whether the answer is an allow.
func evaluate(t *testing.T, s *Server, agent, tok string) (bool, httpResult) {
	t.Helper()
	r := do(t, http.DefaultClient, "POST", "http://"+s.Addr().String()+"/access/v1/evaluation", "Bearer "+tok,
		`{"subject": {"type": "agent", "id": "`+agent+`"}, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "/repo/a"}}`)
	var out struct {
		Decision bool `json:"decision"`
	}
	_ = json.Unmarshal([]byte(r.body), &out)
	return r.code == 200 && out.Decision, r
}

// waitNotReady polls /readyz until it answers 503 and returns its body.
func waitNotReady(t *testing.T, s *Server) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := get(t, http.DefaultClient, "http://"+s.Addr().String()+"/readyz")
		if code == http.StatusServiceUnavailable {
			return body
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET /readyz = %d %q long after the store was lost, want 503", code, body)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestStoreLostUnderRunningServer deletes the database (with its -wal and
// -shm), or renames another mandate database over it, under a running
// server: /readyz says the store is lost, decisions deny, admin changes
// answer 503 with Retry-After. A restart on the same data directory is
// refused until --accept-new-store, whose ledger then begins with the
// reset event and verifies.
func TestStoreLostUnderRunningServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		lose func(t *testing.T, path string)
	}{
		{"deleted", func(t *testing.T, path string) {
			// rm mandate.db*: the database, its -wal, -shm and -ledger journal.
			for _, p := range []string{path, path + "-wal", path + "-shm", path + "-ledger"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
		}},
		{"replaced", func(t *testing.T, path string) {
			other := filepath.Join(filepath.Dir(path), "other.db")
			db, err := sqlite.Open(t.Context(), other, sqlite.WithIdentityCheck(-1))
			if err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			for _, p := range []string{path + "-wal", path + "-shm", path + "-ledger"} {
				if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
					t.Fatal(err)
				}
			}
			if err := os.Rename(other, path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			dbPath := filepath.Join(cfg.DataDir, "mandate.db")
			s, stop := startServer(t, cfg)
			agent, tok := taskToken(t, s)
			if ok, r := evaluate(t, s, agent, tok); !ok {
				t.Fatalf("evaluation before the loss = %d %s, want an allow", r.code, r.body)
			}

			tc.lose(t, dbPath)
			if body := waitNotReady(t, s); !strings.Contains(body, "store lost") {
				t.Errorf("GET /readyz = %q, want it to say the store is lost", body)
			}
			for i := range 20 {
				if ok, r := evaluate(t, s, agent, tok); ok {
					t.Fatalf("evaluation %d after the loss = %d %s, want a deny", i, r.code, r.body)
				} else if i == 0 && (r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "") {
					t.Errorf("evaluation after the loss = %d (Retry-After %q) %s, want 503 with Retry-After", r.code, r.hdr.Get("Retry-After"), r.body)
				}
			}
			r := do(t, socketClient(s.SocketPath()), "POST", "http://mandate/admin/v1/agents", "",
				`{"name": "late", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "assist"}`)
			if r.code != http.StatusServiceUnavailable || r.hdr.Get("Retry-After") == "" ||
				r.hdr.Get("Content-Type") != "application/problem+json" {
				t.Errorf("POST /admin/v1/agents after the loss = %d %v %s, want 503 problem+json with Retry-After", r.code, r.hdr, r.body)
			}
			_ = stop() // the lost store cannot be closed cleanly

			s2, err := New(t.Context(), cfg)
			if err == nil {
				s2.Close()
			}
			if err == nil || !strings.Contains(err.Error(), "refusing to start") || !strings.Contains(err.Error(), "--accept-new-store") {
				t.Fatalf("New() on the lost store = %v, want a refusal that names --accept-new-store", err)
			}
			anchor, aerr := audit.ReadAnchor(AnchorPath(cfg.DataDir))
			if aerr != nil {
				t.Fatal(aerr)
			}

			cfg.AcceptNewStore = true
			_, stop = startServer(t, cfg)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			checkResetLedger(t, cfg, anchor)

			// The anchor now belongs to the new ledger: no flag needed.
			cfg.AcceptNewStore = false
			_, stop = startServer(t, cfg)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// checkResetLedger opens the store and checks that its ledger begins
// with the reset event naming old, and verifies.
func checkResetLedger(t *testing.T, cfg Config, old *audit.Anchor) {
	t.Helper()
	db, err := openStoreForTest(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _, err := openSealer(&cfg) // the KEK the server made in its data directory
	if err != nil {
		t.Fatal(err)
	}
	l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealer})
	if err != nil {
		t.Fatal(err)
	}
	evs, err := l.Events(t.Context(), audit.Query{Limit: 1})
	if err != nil || len(evs) != 1 {
		t.Fatalf("Events() = %v, %v", evs, err)
	}
	ev := evs[0]
	if ev.Type != audit.TypeLedgerReset || ev.Details["anchor_size"] != strconv.FormatInt(old.Size, 10) || ev.Details["anchor_root"] != old.RootString() {
		t.Errorf("first event = %s %v, want ledger.reset naming size %d root %s", ev.Type, ev.Details, old.Size, old.RootString())
	}
	if rep, err := l.Verify(t.Context()); err != nil || !rep.OK() {
		t.Errorf("Verify() = %+v, %v", rep, err)
	}
	if err := db.(interface{ Close() error }).Close(); err != nil {
		t.Fatal(err)
	}
}

// TestTruncatedLedgerRefused: a store whose ledger is shorter than the
// anchor — an older copy of the database restored, or its last events
// deleted — is refused at start.
func TestTruncatedLedgerRefused(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name     string
		truncate func(t *testing.T, dbPath, backup string)
	}{
		{"older copy restored", func(t *testing.T, dbPath, backup string) {
			copyFile(t, backup, dbPath)
		}},
		{"events deleted", func(t *testing.T, dbPath, _ string) {
			raw, err := sql.Open("sqlite", dbPath)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, q := range []string{
				`DELETE FROM ledger_hashes WHERE start = (SELECT max(start) FROM ledger_hashes)`,
				`DELETE FROM events WHERE seq > (SELECT coalesce(max(size), 0) FROM ledger_hashes)`,
			} {
				if _, err := raw.Exec(q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cfg := testConfig(t)
			dbPath := filepath.Join(cfg.DataDir, "mandate.db")
			_, stop := startServer(t, cfg)
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			backup := filepath.Join(t.TempDir(), "backup.db")
			copyFile(t, dbPath, backup)
			s, stop := startServer(t, cfg)
			taskToken(t, s) // more events
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			old, err := audit.ReadAnchor(AnchorPath(cfg.DataDir))
			if err != nil {
				t.Fatal(err)
			}
			tc.truncate(t, dbPath, backup)
			_, err = New(t.Context(), cfg)
			if err == nil || !strings.Contains(err.Error(), "refusing to start") ||
				!strings.Contains(err.Error(), "but the anchor shows "+strconv.FormatInt(old.Size, 10)) {
				t.Fatalf("New() on a truncated ledger = %v, want a refusal naming the anchored size %d", err, old.Size)
			}
		})
	}
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
