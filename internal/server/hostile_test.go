package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/token"
)

// hostilePointToken is the enforcement point token of a hostileEnv.
const hostilePointToken = "mandate_point_hostile_token"

// hostileEnv is a running server (server.New on 127.0.0.1:0 over SQLite
// in a temporary data directory) with a registered agent, a task and an
// enforcement point, for sending hostile requests and checking that the
// ledger still verifies afterwards. A fuzz target starts one and sends
// every input to it.
type hostileEnv struct {
	s        *Server
	hc       *http.Client
	tokenURL string
	agent    *harness.Agent
	taskID   string

	agentToken string
	tokenAt    time.Time
	checked    int64 // the events checkNew has seen
	sinceFull  int   // inputs since the last full verification
}

func newHostileEnv(tb testing.TB) *hostileEnv {
	tb.Helper()
	dir, err := os.MkdirTemp("", "mandate-hostile-") // short: unix socket paths are limited
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	sum := sha256.Sum256([]byte(hostilePointToken))
	cfg.Access.PointTokenHashes = []string{"sha256:" + hex.EncodeToString(sum[:])}
	s, err := New(tb.Context(), cfg)
	if err != nil {
		tb.Fatalf("New() = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			tb.Error("Run did not return after cancel")
		}
	})

	e := &hostileEnv{s: s, hc: &http.Client{Timeout: 10 * time.Second}}
	admin := harness.AdminClient(s.SocketPath())
	if e.agent, err = harness.RegisterAgent(tb.Context(), admin, harness.Registration{
		Name: "coder", Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: "autonomous",
		Entitle: []string{"*"}, MaxSensitivity: "restricted",
	}); err != nil {
		tb.Fatal(err)
	}
	if e.tokenURL, err = harness.TokenEndpoint(tb.Context(), e.hc, s.PublicURL()); err != nil {
		tb.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(tb.Context(), http.MethodPost, "http://mandate/admin/v1/tasks", strings.NewReader(
		`{"agent": "coder", "on_behalf_of": "alice@example.org", "purpose": "fix the build", "scope": ["file.*:/repo/**", "tool.call:*"]}`))
	req.Header.Set("Content-Type", "application/json")
	var tk struct {
		ID string `json:"id"`
	}
	if err := harness.DoJSON(admin, req, &tk); err != nil {
		tb.Fatal(err)
	}
	e.taskID = tk.ID
	e.check(tb, true)
	return e
}

// freshAgentToken returns an agent token (client_credentials), renewed
// every minute.
func (e *hostileEnv) freshAgentToken(tb testing.TB) string {
	if time.Since(e.tokenAt) > time.Minute {
		tok, err := e.agent.Token(tb.Context(), e.hc, e.tokenURL)
		if err != nil {
			tb.Fatal(err)
		}
		e.agentToken, e.tokenAt = tok, time.Now()
	}
	return e.agentToken
}

// assertion returns a fresh private_key_jwt client assertion of the agent.
func (e *hostileEnv) assertion(tb testing.TB) string {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: e.agent.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", e.agent.KeyID))
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now()
	a, err := josejwt.Signed(sig).Claims(josejwt.Claims{
		Issuer: e.agent.ID, Subject: e.agent.ID, Audience: josejwt.Audience{e.tokenURL},
		ID: rand.Text(), IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		tb.Fatal(err)
	}
	return a
}

// expand replaces the placeholders a fuzzer's input may hold with live
// values, so that inputs reach past authentication: $AGENT_TOKEN (an
// agent token), $ASSERTION (a client assertion, form-encoded), $AGENT
// (the agent's SPIFFE ID) and $TASK (its task's ID).
func (e *hostileEnv) expand(tb testing.TB, s string) string {
	if strings.Contains(s, "$AGENT_TOKEN") {
		s = strings.ReplaceAll(s, "$AGENT_TOKEN", e.freshAgentToken(tb))
	}
	if strings.Contains(s, "$ASSERTION") {
		s = strings.ReplaceAll(s, "$ASSERTION", url.QueryEscape(e.assertion(tb)))
	}
	s = strings.ReplaceAll(s, "$AGENT", e.agent.ID)
	return strings.ReplaceAll(s, "$TASK", e.taskID)
}

// do sends a request and returns its status and body; ok is false if the
// client refused to send it (a header value net/http will not write).
func (e *hostileEnv) do(tb testing.TB, method, path, ctype, body string, hdr http.Header) (status int, resp string, ok bool) {
	req, err := http.NewRequestWithContext(tb.Context(), method, e.s.PublicURL()+path, strings.NewReader(body))
	if err != nil {
		return 0, "", false
	}
	req.Header.Set("Content-Type", ctype)
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	r, err := e.hc.Do(req)
	if err != nil {
		if strings.Contains(err.Error(), "invalid header") {
			return 0, "", false
		}
		tb.Fatalf("%s %s: %v", method, path, err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b), true
}

// check holds the ledger to what verification demands. Every new event
// must pass the canonical check verify makes (audit.ParseEvent) and match
// its stored leaf hash; with full set (and every 256th call) the whole
// ledger goes through Ledger.Verify and an export through the offline
// audit.VerifyExport, against a checkpoint signed now.
func (e *hostileEnv) check(tb testing.TB, full bool) {
	tb.Helper()
	ctx := tb.Context()
	for {
		recs, err := e.s.backend.ScanRecords(ctx, e.checked, 1000)
		if err != nil {
			tb.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		for _, rec := range recs {
			if _, err := audit.ParseEvent(rec.Data); err != nil {
				tb.Fatalf("event %d is not canonical: %v\n%q", rec.Seq, err, rec.Data)
			}
			hs, err := e.s.backend.ReadHashes(ctx, tlog.StoredHashIndex(0, rec.Seq-1), tlog.StoredHashIndex(0, rec.Seq-1)+1)
			if err != nil {
				tb.Fatal(err)
			}
			if hs[0] != audit.LeafHash(rec.Data) {
				tb.Fatalf("event %d does not match its stored leaf hash", rec.Seq)
			}
			e.checked = rec.Seq
		}
	}
	if e.sinceFull++; !full && e.sinceFull < 256 {
		return
	}
	e.sinceFull = 0
	verifyLedger(ctx, tb, e.s)
}

// verifyLedger runs `mandate audit verify`'s check (Ledger.Verify) and
// `mandate audit verify --export`'s (an export checked offline against a
// checkpoint) on s's ledger.
func verifyLedger(ctx context.Context, tb testing.TB, s *Server) {
	tb.Helper()
	rep, err := s.ledger.Verify(ctx)
	if err != nil || !rep.OK() {
		tb.Fatalf("Ledger.Verify() = %v, %v", rep, err)
	}
	cp, err := s.ledger.Checkpoint(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	var export bytes.Buffer
	if _, err := s.ledger.Export(ctx, &export); err != nil {
		tb.Fatal(err)
	}
	rep, err = audit.VerifyExport(&export, [][]byte{cp.Note}, s.ledger.VerifierKey())
	if err != nil || !rep.OK() {
		tb.Fatalf("VerifyExport() = %v, %v", rep, err)
	}
}

// events returns the events of type typ recorded after seq.
func (e *hostileEnv) events(tb testing.TB, after int64, typ audit.Type) []*audit.Event {
	tb.Helper()
	evs, err := e.s.backend.ListEvents(tb.Context(), audit.Query{Type: typ, AfterSeq: after})
	if err != nil {
		tb.Fatal(err)
	}
	return evs
}

// oauthError decodes an OAuth error response's code.
func oauthError(body string) string {
	var m struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &m)
	return m.Error
}

const formType = "application/x-www-form-urlencoded"

// TestHostileInputKeepsLedgerVerifiable: each request that used to store
// an event the ledger could not verify (issue 12) gets its protocol error,
// is not decided on, and afterwards `audit verify` passes, live and
// offline. Each case has a server of its own: one bad event would fail
// every later check.
func TestHostileInputKeepsLedgerVerifiable(t *testing.T) {
	t.Parallel()
	exchange := "grant_type=" + url.QueryEscape(token.GrantTokenExchange) + "&subject_token=$AGENT_TOKEN&subject_token_type=" +
		url.QueryEscape(token.TokenTypeAccessToken) + "&scope=" + url.QueryEscape("file.read:/repo/**")
	for _, tc := range []struct {
		name, path, body string
		status           int
		code             string
	}{
		{"grant_type %FF", "/oauth/token", "grant_type=%FF", 400, token.CodeInvalidRequest},
		{"client_id %FF%FE", "/oauth/token", "grant_type=client_credentials&client_id=%FF%FE", 400, token.CodeInvalidRequest},
		{"client_id %FF%FE without a grant", "/oauth/token", "client_id=%FF%FE", 400, token.CodeInvalidRequest},
		// Valid UTF-8, refused for want of client authentication: the
		// claimed client_id is recorded, cut where é begins.
		{"255-byte client_id then é", "/oauth/token", "grant_type=client_credentials&client_id=" + strings.Repeat("a", 255) + "%C3%A9", 401, token.CodeInvalidClient},
		{"exchange purpose not UTF-8", "/oauth/token", exchange + "&on_behalf_of=alice%40example.org&purpose=fix%FF%FEthe+build", 400, token.CodeInvalidRequest},
		{"exchange on_behalf_of not UTF-8", "/oauth/token", exchange + "&purpose=fix&on_behalf_of=alice%C3", 400, token.CodeInvalidRequest},
		{"introspection client_id not UTF-8", "/oauth/introspect", "token=abc&client_id=%FF%FE", 400, token.CodeInvalidRequest},
		{"revocation client_id not UTF-8", "/oauth/revoke", "token=abc&client_id=%FF%FE", 400, token.CodeInvalidRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newHostileEnv(t)
			before := e.checked
			status, body, _ := e.do(t, http.MethodPost, tc.path, formType, e.expand(t, tc.body), nil)
			if status != tc.status || oauthError(body) != tc.code {
				t.Errorf("POST %s %q = %d %s, want %d %s", tc.path, tc.body, status, body, tc.status, tc.code)
			}
			e.check(t, true)
			if evs := e.events(t, before, audit.TypeTaskStarted); len(evs) != 0 {
				t.Errorf("a refused exchange started a task: %+v", evs[0])
			}
			if tc.status != 401 {
				return
			}
			evs := e.events(t, before, audit.TypeTokenRefused)
			if len(evs) != 1 || evs[0].Details["claimed_client_id"] != strings.Repeat("a", 255) {
				t.Errorf("token.refused events = %+v, want one with the claimed client_id cut before é", evs)
			}
		})
	}
	evaluation := `{"subject": {"type": "agent", "id": "$AGENT", "properties": {"task": "$TASK"}},
		"action": {"name": "file.read"}, "resource": {"type": "file", "id": "/repo/main.go"}}`
	for _, tc := range []struct {
		name, auth, reqID, body string
		status                  int
	}{
		{"X-Request-ID id-\\xff\\xfe from an enforcement point", "Bearer " + hostilePointToken, "id-\xff\xfe", evaluation, 400},
		{"X-Request-ID id-\\xff\\xfe unauthenticated", "Bearer not-a-token", "id-\xff\xfe", evaluation, 400},
		{"X-Request-ID of 129 bytes", "Bearer " + hostilePointToken, strings.Repeat("r", 129), evaluation, 400},
		{"AuthZEN body not UTF-8", "Bearer " + hostilePointToken, "r1", strings.Replace(evaluation, "main.go", "main\xff.go", 1), 400},
		{"AuthZEN body with a lone surrogate", "Bearer " + hostilePointToken, "r2", strings.Replace(evaluation, "main.go", `main\ud800.go`, 1), 400},
		{"valid X-Request-ID", "Bearer " + hostilePointToken, "r3", evaluation, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newHostileEnv(t)
			before := e.checked
			status, body, ok := e.do(t, http.MethodPost, "/access/v1/evaluation", "application/json", e.expand(t, tc.body),
				http.Header{"Authorization": {tc.auth}, "X-Request-Id": {tc.reqID}})
			if !ok || status != tc.status {
				t.Errorf("POST /access/v1/evaluation (X-Request-ID %q) = %d %s, want %d", tc.reqID, status, body, tc.status)
			}
			e.check(t, true)
			evs := e.events(t, before, audit.TypeActionDecided)
			switch {
			case tc.status != 200 && len(evs) != 0:
				t.Errorf("a refused request was decided: %+v", evs[0])
			case tc.status == 200 && (len(evs) != 1 || evs[0].RequestID != tc.reqID):
				t.Errorf("decision events = %+v, want one with request_id %q", evs, tc.reqID)
			}
		})
	}
}

// hostileOAuthSeeds are the requests of TestHostileInputKeepsLedgerVerifiable
// and their neighbours, for the fuzzers' seed corpora.
func hostileOAuthSeeds() []struct {
	path uint8
	body string
} {
	exchange := "grant_type=" + url.QueryEscape(token.GrantTokenExchange) + "&subject_token=$AGENT_TOKEN&subject_token_type=" + url.QueryEscape(token.TokenTypeAccessToken)
	cc := "grant_type=client_credentials&client_assertion_type=" + url.QueryEscape(token.ClientAssertionJWT) + "&client_assertion=$ASSERTION"
	return []struct {
		path uint8
		body string
	}{
		{0, "grant_type=%FF"},
		{0, "grant_type=client_credentials&client_id=%FF%FE"},
		{0, "grant_type=client_credentials&client_id=" + strings.Repeat("a", 255) + "%C3%A9"},
		{0, "grant_type=" + strings.Repeat("g", 127) + "%C3%A9"},
		{0, exchange + "&scope=file.read%3A%2Frepo%2F**&purpose=fix%FF%FE&on_behalf_of=alice%40example.org"},
		{0, exchange + "&scope=file.read%3A%2Frepo%2F**&purpose=fix&on_behalf_of=alice%C3"},
		{0, exchange + "&scope=file.read%3A%2Frepo%2F**&purpose=fix+%E2%80%A8%3C%26%3E%00&on_behalf_of=alice%40example.org"},
		{0, cc},
		{0, cc + "&client_id=%C3%A9"},
		{0, "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=e30.e30.x"},
		{1, "token=abc&client_id=%FF%FE"},
		{1, "token=$AGENT_TOKEN&client_assertion_type=" + url.QueryEscape(token.ClientAssertionJWT) + "&client_assertion=$ASSERTION"},
		{2, "token=%C3%28&client_id=" + strings.Repeat("b", 300)},
	}
}

var hostileOAuthPaths = []string{"/oauth/token", "/oauth/introspect", "/oauth/revoke"}

// FuzzHostileOAuth drives the whole path — an HTTP request to the token,
// introspection or revocation endpoint of a real server, its events, the
// SQLite store — and asserts that the ledger verifies after every input
// and that no input gets a 5xx. The placeholders of hostileEnv.expand
// let inputs reach past client authentication.
func FuzzHostileOAuth(f *testing.F) {
	for _, s := range hostileOAuthSeeds() {
		f.Add(s.path, s.body)
	}
	e := newHostileEnv(f)
	f.Cleanup(func() { verifyLedger(context.Background(), f, e.s) }) // f.Context() has ended by then
	f.Fuzz(func(t *testing.T, path uint8, body string) {
		p := hostileOAuthPaths[int(path)%len(hostileOAuthPaths)]
		status, resp, _ := e.do(t, http.MethodPost, p, formType, e.expand(t, body), nil)
		if status >= 500 {
			t.Fatalf("POST %s %q = %d %s", p, body, status, resp)
		}
		e.check(t, false)
	})
}

// FuzzHostileAuthZEN drives AuthZEN requests — any X-Request-ID, any body,
// as an enforcement point, a task token's bearer or nobody — through a
// real server and asserts that the ledger verifies after every input and
// that no input gets a 5xx.
func FuzzHostileAuthZEN(f *testing.F) {
	evaluation := `{"subject": {"type": "agent", "id": "$AGENT", "properties": {"task": "$TASK"}}, "action": {"name": "file.read"}, "resource": {"type": "file", "id": "/repo/main.go"}}`
	for _, s := range []struct {
		auth        uint8
		reqID, body string
	}{
		{0, "id-\xff\xfe", evaluation},
		{1, "id-\xff\xfe", evaluation},
		{0, "r1", evaluation},
		{0, "r1", strings.Replace(evaluation, "main.go", "main\xff.go", 1)},
		{0, "r1", strings.Replace(evaluation, "main.go", `main\ud800.go`, 1)},
		{0, "r1", strings.Replace(evaluation, "main.go", `\u2028<&>\u0000`+strings.Repeat("é", 3000), 1)},
		{0, strings.Repeat("r", 129), evaluation},
		{0, "", `{"evaluations": [` + evaluation + `, ` + strings.Replace(evaluation, "file.read", "file.write", 1) + `]}`},
		{2, "r2", strings.Replace(evaluation, "$AGENT", "spiffe://mandate.local/agent/\xc3", 1)},
	} {
		f.Add(s.auth, s.reqID, s.body)
	}
	e := newHostileEnv(f)
	f.Cleanup(func() { verifyLedger(context.Background(), f, e.s) }) // f.Context() has ended by then
	f.Fuzz(func(t *testing.T, auth uint8, reqID, body string) {
		hdr := http.Header{"X-Request-Id": {reqID}}
		switch auth % 3 {
		case 0:
			hdr.Set("Authorization", "Bearer "+hostilePointToken)
		case 1:
			hdr.Set("Authorization", "Bearer not-a-token")
		}
		path := "/access/v1/evaluation"
		if strings.Contains(body, `"evaluations"`) {
			path += "s"
		}
		status, resp, ok := e.do(t, http.MethodPost, path, "application/json", e.expand(t, body), hdr)
		if ok && status >= 500 {
			t.Fatalf("POST %s (X-Request-ID %q) %q = %d %s", path, reqID, body, status, resp)
		}
		e.check(t, false)
	})
}
