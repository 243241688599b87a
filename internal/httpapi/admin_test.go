package httpapi_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/token"
)

func newAdminServer(t testing.TB, withActor bool) (*httptest.Server, *sqlite.DB) {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	svc, err := admin.New(admin.Config{
		Agents: db, Tasks: db, Entitlements: db, Recorder: mustLedger(t, db),
		Revoker: token.NewRevocations(time.Now), TrustDomain: "example.org",
	})
	if err != nil {
		t.Fatal(err)
	}
	var h http.Handler = httpapi.NewAdmin(httpapi.AdminConfig{Service: svc})
	if withActor {
		inner := h
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			inner.ServeHTTP(w, r.WithContext(admin.WithActor(r.Context(), "admin:test")))
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, db
}

const agentBody = `{"name":"bot","owner":"alice@example.com","escalation":"oncall@example.com","tier":"assist",
 "keys":[{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k1"}]}`

const entitledBody = `{"name":"ent","owner":"alice@example.com","escalation":"oncall@example.com","tier":"assist",
 "entitlement":{"scope":["file.read:/repo/**","tool.call:github/*"],"max_sensitivity":"internal","max_task_ttl":"1h"}}`

func TestAdminAPI(t *testing.T) {
	t.Parallel()
	srv, db := newAdminServer(t, true)
	type step struct {
		name, method, path, body string
		contentType              string
		wantStatus               int
		wantInBody               string
	}
	steps := []step{
		{name: "register", method: "POST", path: "/admin/v1/agents", body: agentBody, wantStatus: 201, wantInBody: `"id":"spiffe://example.org/agent/bot"`},
		{name: "duplicate", method: "POST", path: "/admin/v1/agents", body: agentBody, wantStatus: 409, wantInBody: "already exists"},
		{name: "no owner", method: "POST", path: "/admin/v1/agents", body: `{"name":"x","escalation":"e","tier":"assist"}`, wantStatus: 400, wantInBody: "owner is required"},
		{name: "unknown field", method: "POST", path: "/admin/v1/agents", body: `{"name":"x","ownr":"a"}`, wantStatus: 400, wantInBody: `unknown field \"ownr\"`},
		{name: "malformed", method: "POST", path: "/admin/v1/agents", body: `{"name":`, wantStatus: 400, wantInBody: "bad request"},
		{name: "wrong type", method: "POST", path: "/admin/v1/agents", body: `{"name":7}`, wantStatus: 400, wantInBody: `field \"name\"`},
		{name: "trailing data", method: "POST", path: "/admin/v1/agents", body: `{} {}`, wantStatus: 400, wantInBody: "trailing data"},
		{name: "empty body", method: "POST", path: "/admin/v1/agents", body: ``, wantStatus: 400, wantInBody: "empty"},
		{name: "form content type", method: "POST", path: "/admin/v1/agents", body: `name=x`, contentType: "application/x-www-form-urlencoded", wantStatus: 400, wantInBody: "Content-Type"},
		{name: "oversized", method: "POST", path: "/admin/v1/agents", body: `{"description":"` + strings.Repeat("x", httpapi.MaxJSONBody) + `"}`, wantStatus: 413},
		{name: "bad agent name", method: "GET", path: "/admin/v1/agents/..", wantStatus: 404},
		{name: "show", method: "GET", path: "/admin/v1/agents/bot", wantStatus: 200, wantInBody: `"owner":"alice@example.com"`},
		{name: "show unknown", method: "GET", path: "/admin/v1/agents/ghost", wantStatus: 404, wantInBody: "agent not found"},
		{name: "list", method: "GET", path: "/admin/v1/agents?tier=assist", wantStatus: 200, wantInBody: `"agents":[{`},
		{name: "list bad tier", method: "GET", path: "/admin/v1/agents?tier=root", wantStatus: 400},
		{name: "list bad limit", method: "GET", path: "/admin/v1/agents?limit=0", wantStatus: 400},
		{name: "add key", method: "POST", path: "/admin/v1/agents/bot/keys", body: `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k2"}`, wantStatus: 201, wantInBody: `"kid":"k2"`},
		{name: "add key twice", method: "POST", path: "/admin/v1/agents/bot/keys", body: `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","kid":"k2"}`, wantStatus: 409, wantInBody: "already has a key"},
		{name: "add private key", method: "POST", path: "/admin/v1/agents/bot/keys", body: `{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","d":"nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A","kid":"k3"}`, wantStatus: 400, wantInBody: "private key"},
		{name: "add malformed key", method: "POST", path: "/admin/v1/agents/bot/keys", body: `{"kty":"OKP","kid":"k4"}`, wantStatus: 400},
		{name: "remove key", method: "DELETE", path: "/admin/v1/agents/bot/keys/k1", wantStatus: 200, wantInBody: `"kid":"k2"`},
		{name: "remove unknown key", method: "DELETE", path: "/admin/v1/agents/bot/keys/k1", wantStatus: 404, wantInBody: "no key with that kid"},
		{name: "key of unknown agent", method: "DELETE", path: "/admin/v1/agents/ghost/keys/k1", wantStatus: 404, wantInBody: "agent not found"},
		{name: "add federation", method: "POST", path: "/admin/v1/agents/bot/federations", body: `{"issuer":"https://ci.example","subject":"repo:org/x"}`, wantStatus: 201, wantInBody: `"subject":"repo:org/x"`},
		{name: "add federation twice", method: "POST", path: "/admin/v1/agents/bot/federations", body: `{"issuer":"https://ci.example","subject":"repo:org/x"}`, wantStatus: 409},
		{name: "add bad federation", method: "POST", path: "/admin/v1/agents/bot/federations", body: `{"issuer":"ci.example","subject":"s"}`, wantStatus: 400, wantInBody: "absolute http(s) URL"},
		{name: "remove federation", method: "DELETE", path: "/admin/v1/agents/bot/federations?issuer=https://ci.example&subject=repo:org/x", wantStatus: 200},
		{name: "remove unknown federation", method: "DELETE", path: "/admin/v1/agents/bot/federations?issuer=https://ci.example&subject=repo:org/x", wantStatus: 404, wantInBody: "does not trust"},
		{name: "remove federation without subject", method: "DELETE", path: "/admin/v1/agents/bot/federations?issuer=https://ci.example", wantStatus: 400},
		{name: "start task", method: "POST", path: "/admin/v1/tasks", body: `{"agent":"bot","on_behalf_of":"alice","purpose":"triage","scope":["file.read:/repo/**"]}`, wantStatus: 201, wantInBody: `"status":"active"`},
		{name: "task bad scope", method: "POST", path: "/admin/v1/tasks", body: `{"agent":"bot","on_behalf_of":"alice","purpose":"p","scope":["delete:/"]}`, wantStatus: 400, wantInBody: "unknown action"},
		{name: "register entitled", method: "POST", path: "/admin/v1/agents", body: entitledBody, wantStatus: 201, wantInBody: `"entitlement":{"scope":["file.read:/repo/**","tool.call:github/*"],"max_sensitivity":"internal","max_task_ttl":"1h0m0s"}`},
		{name: "register bad entitlement", method: "POST", path: "/admin/v1/agents", body: `{"name":"x","owner":"a","escalation":"e","tier":"assist","entitlement":{"scope":["*"],"max_sensitivity":"public","max_task_ttl":"1h","budget":1}}`, wantStatus: 400, wantInBody: "invalid task"},
		{name: "register entitlement too long", method: "POST", path: "/admin/v1/agents", body: `{"name":"x","owner":"a","escalation":"e","tier":"assist","entitlement":{"scope":["*"],"max_sensitivity":"public","max_task_ttl":"48h"}}`, wantStatus: 400, wantInBody: "longest task lifetime"},
		{name: "show entitled", method: "GET", path: "/admin/v1/agents/ent", wantStatus: 200, wantInBody: `"max_task_ttl":"1h0m0s"`},
		{name: "show without entitlement", method: "GET", path: "/admin/v1/agents/bot", wantStatus: 200, wantInBody: `"entitlement":null`},
		{name: "task beyond entitlement", method: "POST", path: "/admin/v1/tasks", body: `{"agent":"ent","on_behalf_of":"alice","purpose":"p","scope":["tool.call:github/**"]}`, wantStatus: 403, wantInBody: "exceeds its agent's entitlement"},
		{name: "task above sensitivity", method: "POST", path: "/admin/v1/tasks", body: `{"agent":"ent","on_behalf_of":"alice","purpose":"p","scope":["file.read:/repo/a"],"sensitivity":"restricted"}`, wantStatus: 403, wantInBody: "sensitivity restricted"},
		{name: "task inside entitlement", method: "POST", path: "/admin/v1/tasks", body: `{"agent":"ent","on_behalf_of":"alice","purpose":"p","scope":["tool.call:github/create_issue"]}`, wantStatus: 201},
		{name: "lower entitlement", method: "PATCH", path: "/admin/v1/agents/ent", body: `{"entitlement":{"scope":["file.read:/repo/**"],"max_sensitivity":"internal","max_task_ttl":"1h"},"revoke_exceeding":true}`, wantStatus: 200, wantInBody: `"revoked":["tsk_`},
		{name: "update nothing", method: "PATCH", path: "/admin/v1/agents/ent", body: `{}`, wantStatus: 400, wantInBody: "no single change"},
		{name: "update unknown field", method: "PATCH", path: "/admin/v1/agents/ent", body: `{"tier":"autonomous"}`, wantStatus: 400, wantInBody: "unknown field"},
		{name: "update unknown agent", method: "PATCH", path: "/admin/v1/agents/ghost", body: `{"remove_entitlement":true}`, wantStatus: 404},
		{name: "remove entitlement", method: "PATCH", path: "/admin/v1/agents/ent", body: `{"remove_entitlement":true}`, wantStatus: 200, wantInBody: `"entitlement":null`},
		{name: "task list", method: "GET", path: "/admin/v1/tasks?agent=bot&status=active", wantStatus: 200, wantInBody: `"tasks":[{`},
		{name: "task bad status", method: "GET", path: "/admin/v1/tasks?status=zombie", wantStatus: 400},
		{name: "task unknown", method: "GET", path: "/admin/v1/tasks/tsk_aaaaaaaaaaaaaaaaaaaaaaaaaa", wantStatus: 404},
		{name: "task malformed id", method: "GET", path: "/admin/v1/tasks/nope", wantStatus: 400},
		{name: "suspend", method: "POST", path: "/admin/v1/agents/bot/suspend", body: `{"reason":"test"}`, wantStatus: 200, wantInBody: `"status":"suspended"`},
		{name: "suspend again", method: "POST", path: "/admin/v1/agents/bot/suspend", wantStatus: 409, wantInBody: "already suspended"},
		{name: "tasks revoked", method: "GET", path: "/admin/v1/tasks?status=revoked", wantStatus: 200, wantInBody: `"status_reason":"agent suspended"`},
		{name: "unknown endpoint", method: "GET", path: "/admin/v1/nope", wantStatus: 404},
		{name: "unsupported method", method: "DELETE", path: "/admin/v1/agents/bot", wantStatus: 404, wantInBody: "no such admin API endpoint"},
	}
	for _, s := range steps {
		req, _ := http.NewRequest(s.method, srv.URL+s.path, strings.NewReader(s.body))
		if s.body != "" {
			ct := s.contentType
			if ct == "" {
				ct = "application/json"
			}
			req.Header.Set("Content-Type", ct)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != s.wantStatus || !strings.Contains(string(body), s.wantInBody) {
			t.Errorf("%s: %s %s = %d %s; want %d containing %q", s.name, s.method, s.path, resp.StatusCode, body, s.wantStatus, s.wantInBody)
		}
		if resp.StatusCode >= 400 {
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("%s: error Content-Type = %q, want application/problem+json", s.name, ct)
			}
			var p httpapi.Problem
			if err := json.Unmarshal(body, &p); err != nil || p.Status != resp.StatusCode {
				t.Errorf("%s: problem body %s does not carry status %d", s.name, body, resp.StatusCode)
			}
		}
	}
	// Only accepted changes reached the log, and the tasks refused for
	// exceeding an entitlement: two agents, two tasks, two refusals, the
	// lowered entitlement and the task it revoked, its removal, the
	// suspension and the revocation it caused.
	evs, _ := db.ListEvents(context.Background(), audit.Query{})
	var types []string
	for _, e := range evs {
		types = append(types, string(e.Type))
	}
	if got, want := strings.Join(types, ","), "agent.registered,agent.key_added,agent.key_removed,agent.federation_added,agent.federation_removed,task.started,"+
		"agent.registered,task.refused,task.refused,task.started,agent.entitlement_changed,task.revoked,agent.entitlement_changed,"+
		"task.revoked,agent.suspended"; got != want {
		t.Errorf("events = %s, want %s", got, want)
	}
}

func TestAdminAPIRequiresActor(t *testing.T) {
	t.Parallel()
	srv, db := newAdminServer(t, false)
	resp, err := http.Post(srv.URL+"/admin/v1/agents", "application/json", strings.NewReader(agentBody))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("POST without an admin identity = %d, want 401", resp.StatusCode)
	}
	if agents, _ := db.ListAgents(context.Background(), identityFilter()); len(agents) != 0 {
		t.Fatal("an unauthenticated request registered an agent")
	}
}

func identityFilter() identity.Filter { return identity.Filter{} }

func mustLedger(t testing.TB, s audit.Store) *audit.Ledger {
	t.Helper()
	l, err := audit.NewLedger(context.Background(), audit.LedgerConfig{Store: s, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// FuzzAdminAPI posts arbitrary bodies to the admin API's create endpoints:
// a request is either accepted (201) or refused with a 4xx problem, never
// a 5xx, and a refused request leaves no agent behind.
func FuzzAdminAPI(f *testing.F) {
	for _, seed := range []string{
		agentBody,
		`{"name":"x","owner":"o","escalation":"e","tier":"assist","labels":{"a":"b"}}`,
		`{"name":"x","owner":"o","escalation":"e","tier":"assist","keys":[{"kty":"EC","crv":"P-256","x":"1","y":"2","kid":"k"}]}`,
		`{"agent":"bot","on_behalf_of":"alice","purpose":"p","scope":["file.read:/a/**"],"ttl":"5m"}`,
		`{"agent":"bot","on_behalf_of":"alice","purpose":"p","scope":["*:**"],"budget":{"max_actions":-1}}`,
		`{"name":"spiffe://example.org/agent/y","owner":"o","escalation":"e","tier":"autonomous","federations":[{"issuer":"https://i","subject":"s"}]}`,
		entitledBody,
		`{"entitlement":{"scope":["file.read:/repo/**"],"max_sensitivity":"internal","max_task_ttl":"1h"},"revoke_exceeding":true}`,
		`{"remove_entitlement":true}`,
		`{"name":"z","owner":"o","escalation":"e","tier":"assist","entitlement":{"scope":["*"],"max_sensitivity":"public","max_task_ttl":"1.5s"}}`,
		`[]`, `{"name":null}`, "\x00",
	} {
		f.Add(seed)
	}
	srv, db := newAdminServer(f, true)
	resp, err := http.Post(srv.URL+"/admin/v1/agents", "application/json", strings.NewReader(agentBody))
	if err != nil {
		f.Fatal(err)
	}
	resp.Body.Close()
	f.Fuzz(func(t *testing.T, body string) {
		for _, path := range []string{"/admin/v1/agents", "/admin/v1/tasks", "/admin/v1/agents/bot"} {
			method, ok := "POST", http.StatusCreated
			if path == "/admin/v1/agents/bot" {
				method, ok = "PATCH", http.StatusOK
			}
			before, _ := db.ListAgents(context.Background(), identity.Filter{})
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			switch {
			case resp.StatusCode == ok:
			case resp.StatusCode >= 400 && resp.StatusCode < 500:
				if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
					t.Fatalf("%s %s %q = %d with Content-Type %q", method, path, body, resp.StatusCode, ct)
				}
				after, _ := db.ListAgents(context.Background(), identity.Filter{})
				if len(after) != len(before) {
					t.Fatalf("refused %s %s %q changed the agents", method, path, body)
				}
			default:
				t.Fatalf("%s %s %q = %d", method, path, body, resp.StatusCode)
			}
		}
	})
}
