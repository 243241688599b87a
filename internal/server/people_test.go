package server

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// browser is a person's browser: cookies kept, redirects not followed.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}}
}

func (b *browser) do(method, u string, form url.Values) (*http.Response, string) {
	b.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, _ := http.NewRequest(method, u, body)
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp, string(data)
}

var hiddenField = regexp.MustCompile(`name="(csrf|request)" value="([^"]*)"`)

func hidden(page string) url.Values {
	v := url.Values{}
	for _, m := range hiddenField.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

// peopleFixture is a server with the MCP gateway fronting one upstream,
// a client rule admitting clients whose metadata documents are on
// loopback, and a client metadata document.
type peopleFixture struct {
	s        *Server
	base     string
	clientID string
	redirect string
	resource string
	name     string // the client's name, as the consent page shows it
}

func newPeopleFixture(t *testing.T) *peopleFixture {
	up := mcp.NewServer(&mcp.Implementation{Name: "notes", Version: "1"}, nil)
	mcp.AddTool(up, &mcp.Tool{Name: "read_note", Description: "reads a note", Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, func(_ context.Context, _ *mcp.CallToolRequest, _ struct{}) (*mcp.CallToolResult, any, error) {
		return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "the note"}}}, nil, nil
	})
	us := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return up }, nil))
	t.Cleanup(us.Close)
	f := &peopleFixture{redirect: "http://127.0.0.1:1/callback", name: "Notes client"}
	doc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": f.clientID, "client_name": "Notes client",
			"redirect_uris": []string{f.redirect}, "token_endpoint_auth_method": "none"})
	}))
	t.Cleanup(doc.Close)
	f.clientID = doc.URL + "/client.json"
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "notes", URL: us.URL}}
	cfg.OAuth.MetadataAllowPrivate = true
	cfg.OAuth.Registration = true
	ent := &ClientEntitlement{Scope: []string{"tool.call:notes/*"}, MaxTaskTTL: "8h"}
	cfg.OAuth.Clients = []OAuthClient{
		{ClientIDPattern: "http://127.0.0.1:*/client.json", Tier: "autonomous", Entitlement: ent},
		{Registered: true, Tier: "autonomous", Entitlement: ent},
	}
	f.s, _ = startServer(t, cfg)
	f.base = f.s.PublicURL()
	f.resource = f.base + "/mcp/notes"
	return f
}

func pkce() (verifier, challenge string) {
	verifier = strings.Repeat("v", 20) + "-verifier-0123456789abcdefghijk"
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func (f *peopleFixture) authorizeURL(challenge string, extra url.Values) string {
	q := url.Values{"response_type": {"code"}, "client_id": {f.clientID}, "redirect_uri": {f.redirect},
		"code_challenge": {challenge}, "code_challenge_method": {"S256"}, "state": {"st-1"}, "resource": {f.resource}}
	for k, v := range extra {
		q[k] = v
	}
	return f.base + "/oauth/authorize?" + q.Encode()
}

// signIn signs the browser in as the local administrator by the link.
func (f *peopleFixture) signIn(t *testing.T, b *browser) {
	link, err := f.s.LoginLink()
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", link, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("local link = %d", resp.StatusCode)
	}
	if resp, _ := b.do("GET", link, nil); resp.StatusCode != http.StatusForbidden {
		t.Fatalf("local link used twice = %d, want 403", resp.StatusCode)
	}
}

// consent walks the consent page and returns the redirect's parameters.
func (f *peopleFixture) consent(t *testing.T, b *browser, challenge string) url.Values {
	resp, page := b.do("GET", f.authorizeURL(challenge, nil), nil)
	if resp.StatusCode != 200 || !strings.Contains(page, f.name) || !strings.Contains(page, f.resource) {
		t.Fatalf("consent page = %d %s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "form-action 'self' http://127.0.0.1:1") {
		t.Errorf("consent CSP = %q", csp)
	}
	form := hidden(page)
	form.Set("purpose", "read my notes")
	form.Set("scope", "tool.call:notes/*")
	form.Set("ttl", "1h0m0s")
	form.Set("decision", "approve")
	resp, body := b.do("POST", f.base+"/oauth/authorize/decision", form)
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("approve = %d %s", resp.StatusCode, body)
	}
	loc, _ := url.Parse(resp.Header.Get("Location"))
	if !strings.HasPrefix(loc.String(), f.redirect+"?") {
		t.Fatalf("approve redirects to %s", loc)
	}
	return loc.Query()
}

func (f *peopleFixture) token(t *testing.T, form url.Values) (int, map[string]any) {
	resp, err := http.PostForm(f.base+"/oauth/token", form)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func (f *peopleFixture) exchange(t *testing.T, code, verifier string) (int, map[string]any) {
	return f.token(t, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "client_id": {f.clientID},
		"redirect_uri": {f.redirect}, "code_verifier": {verifier}})
}

type authBearer struct{ tok string }

func (b authBearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.tok)
	return http.DefaultTransport.RoundTrip(r)
}

func (f *peopleFixture) callTool(t *testing.T, tok string) error {
	c := mcp.NewClient(&mcp.Implementation{Name: "c", Version: "1"}, nil)
	sess, err := c.Connect(t.Context(), &mcp.StreamableClientTransport{Endpoint: f.resource, HTTPClient: &http.Client{Transport: authBearer{tok}}}, nil)
	if err != nil {
		return err
	}
	defer sess.Close()
	res, err := sess.CallTool(t.Context(), &mcp.CallToolParams{Name: "read_note"})
	if err != nil {
		return err
	}
	if res.IsError {
		b, _ := json.Marshal(res.Content)
		t.Fatalf("tool call refused: %s", b)
	}
	return nil
}

// TestPeopleAuthorizationCodeFlow: a person signs in with the local link,
// consents, the client exchanges the code (PKCE), calls a tool through the
// gateway on the person's behalf, refreshes; a replayed code or refresh
// token revokes the task; ending it on /me stops the client.
func TestPeopleAuthorizationCodeFlow(t *testing.T) {
	f := newPeopleFixture(t)
	b := newBrowser(t)

	// Not signed in: the authorization endpoint sends the person to sign in.
	verifier, challenge := pkce()
	resp, _ := b.do("GET", f.authorizeURL(challenge, nil), nil)
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(resp.Header.Get("Location"), "/signin?next=%2Foauth%2Fauthorize%3F") {
		t.Fatalf("unauthenticated authorize = %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}
	f.signIn(t, b)
	q := f.consent(t, b, challenge)
	if q.Get("state") != "st-1" || q.Get("iss") != f.base || q.Get("code") == "" {
		t.Fatalf("authorization response = %v", q)
	}

	// A wrong verifier spends the code; the right one then fails too.
	if code, out := f.exchange(t, q.Get("code"), strings.Repeat("w", 43)); code != 400 || out["error"] != "invalid_grant" {
		t.Errorf("wrong verifier = %d %v", code, out)
	}
	q = f.consent(t, b, challenge)
	code, out := f.exchange(t, q.Get("code"), verifier)
	if code != 200 || out["refresh_token"] == nil {
		t.Fatalf("exchange = %d %v", code, out)
	}
	if err := f.callTool(t, out["access_token"].(string)); err != nil {
		t.Fatalf("tool call with the consented token: %v", err)
	}
	tasks, err := f.s.backend.ListTasks(t.Context(), task.Filter{OnBehalfOf: "admin", Status: task.StatusActive})
	if err != nil || len(tasks) != 2 {
		t.Fatalf("active tasks on behalf of admin = %d, %v; want 2", len(tasks), err)
	}

	// Refresh rotates; the old refresh token then revokes the family.
	rt := out["refresh_token"].(string)
	code, out2 := f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {f.clientID}})
	if code != 200 || out2["refresh_token"] == rt {
		t.Fatalf("refresh = %d %v", code, out2)
	}
	if err := f.callTool(t, out2["access_token"].(string)); err != nil {
		t.Fatalf("tool call after refresh: %v", err)
	}

	// Code replay: revokes what the first use issued.
	if code, out := f.exchange(t, q.Get("code"), verifier); code != 400 || out["error"] != "invalid_grant" {
		t.Errorf("replayed code = %d %v", code, out)
	}
	if err := f.callTool(t, out2["access_token"].(string)); err == nil {
		t.Errorf("tool call after the code was replayed succeeded, want 401")
	}
	code, _ = f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {out2["refresh_token"].(string)}, "client_id": {f.clientID}})
	if code != 400 {
		t.Errorf("refresh after the task was revoked = %d, want 400", code)
	}

	// A fresh consent; reuse of a rotated refresh token revokes it.
	q = f.consent(t, b, challenge)
	_, out = f.exchange(t, q.Get("code"), verifier)
	rt = out["refresh_token"].(string)
	_, out2 = f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {f.clientID}})
	if code, _ := f.token(t, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}, "client_id": {f.clientID}}); code != 400 {
		t.Errorf("reused refresh token = %d, want 400", code)
	}
	if err := f.callTool(t, out2["access_token"].(string)); err == nil {
		t.Errorf("tool call after refresh token reuse succeeded, want refused")
	}

	// End the task on /me: the client's next call fails.
	q = f.consent(t, b, challenge)
	_, out = f.exchange(t, q.Get("code"), verifier)
	resp, page := b.do("GET", f.base+"/me", nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "read my notes") {
		t.Fatalf("/me = %d", resp.StatusCode)
	}
	active, _ := f.s.backend.ListTasks(t.Context(), task.Filter{OnBehalfOf: "admin", Status: task.StatusActive})
	form := hidden(page)
	form.Set("id", string(active[0].ID))
	if r, _ := b.do("POST", f.base+"/me/tasks/end", url.Values{"id": {string(active[0].ID)}, "csrf": {"forged"}}); r.StatusCode != 403 {
		t.Errorf("end task with a forged CSRF token = %d, want 403", r.StatusCode)
	}
	if r, body := b.do("POST", f.base+"/me/tasks/end", form); r.StatusCode != http.StatusSeeOther {
		t.Fatalf("end task = %d %s", r.StatusCode, body)
	}
	if err := f.callTool(t, out["access_token"].(string)); err == nil {
		t.Errorf("tool call after the task ended on /me succeeded")
	}
}

// TestPeopleAuthorizeRefusals: bad requests get a page (client or redirect
// URI in doubt, never a redirect) or an OAuth error at the client's own
// redirect URI; none gets a code.
func TestPeopleAuthorizeRefusals(t *testing.T) {
	f := newPeopleFixture(t)
	b := newBrowser(t)
	f.signIn(t, b)
	_, challenge := pkce()
	for _, tc := range []struct {
		name     string
		extra    url.Values
		redirect string // the error, when it goes back to the client
	}{
		{"plain PKCE", url.Values{"code_challenge_method": {"plain"}}, "invalid_request"},
		{"no PKCE", url.Values{"code_challenge": {""}}, "invalid_request"},
		{"no method", url.Values{"code_challenge_method": {""}}, "invalid_request"},
		{"short challenge", url.Values{"code_challenge": {"abc"}}, "invalid_request"},
		{"token response", url.Values{"response_type": {"token"}}, "unsupported_response_type"},
		{"foreign resource", url.Values{"resource": {"https://evil.example/mcp"}}, "invalid_target"},
		{"redirect with trailing slash", url.Values{"redirect_uri": {"http://127.0.0.1:1/callback/"}}, ""},
		{"redirect other port", url.Values{"redirect_uri": {"http://127.0.0.1:2/callback"}}, ""},
		{"redirect in upper case", url.Values{"redirect_uri": {"http://127.0.0.1:1/CALLBACK"}}, ""},
		{"redirect with query", url.Values{"redirect_uri": {"http://127.0.0.1:1/callback?x=1"}}, ""},
		{"open redirect", url.Values{"redirect_uri": {"https://evil.example/"}}, ""},
		{"no redirect", url.Values{"redirect_uri": {""}}, ""},
		{"unknown client", url.Values{"client_id": {"https://evil.example/client.json"}}, ""},
		{"not a URL client", url.Values{"client_id": {"cursor"}}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, page := b.do("GET", f.authorizeURL(challenge, tc.extra), nil)
			loc := resp.Header.Get("Location")
			if tc.redirect == "" {
				if resp.StatusCode != 400 || loc != "" || !strings.Contains(page, "refused") {
					t.Fatalf("= %d Location %q, want a 400 page", resp.StatusCode, loc)
				}
				return
			}
			u, _ := url.Parse(loc)
			if resp.StatusCode != http.StatusFound || !strings.HasPrefix(loc, f.redirect+"?") || u.Query().Get("error") != tc.redirect ||
				u.Query().Get("code") != "" || u.Query().Get("iss") != f.base {
				t.Fatalf("= %d Location %q, want error %s at the client", resp.StatusCode, loc, tc.redirect)
			}
		})
	}
	// A repeated parameter is refused on a page.
	resp, _ := b.do("GET", f.authorizeURL(challenge, nil)+"&state=again", nil)
	if resp.StatusCode != 400 || resp.Header.Get("Location") != "" {
		t.Errorf("repeated state = %d", resp.StatusCode)
	}
	// The consent form without the session's CSRF token, and from a
	// browser with no session.
	_, page := b.do("GET", f.authorizeURL(challenge, nil), nil)
	form := hidden(page)
	form.Set("purpose", "x")
	form.Set("scope", "tool.call:notes/*")
	form.Set("ttl", "1h0m0s")
	form.Set("decision", "approve")
	bad := url.Values{}
	for k, v := range form {
		bad[k] = v
	}
	bad.Set("csrf", "not-it")
	if r, _ := b.do("POST", f.base+"/oauth/authorize/decision", bad); r.StatusCode != 403 || r.Header.Get("Location") != "" {
		t.Errorf("consent with a bad CSRF token = %d", r.StatusCode)
	}
	if r, _ := newBrowser(t).do("POST", f.base+"/oauth/authorize/decision", form); r.StatusCode != 403 {
		t.Errorf("consent from another browser = %d", r.StatusCode)
	}
	// A scope above the entitlement.
	over := url.Values{}
	for k, v := range form {
		over[k] = v
	}
	over.Set("scope", "*")
	if r, _ := b.do("POST", f.base+"/oauth/authorize/decision", over); r.StatusCode != 400 || r.Header.Get("Location") != "" {
		t.Errorf("consent with a scope above the entitlement = %d", r.StatusCode)
	}
	// Deny: access_denied at the client.
	form.Set("decision", "deny")
	r, _ := b.do("POST", f.base+"/oauth/authorize/decision", form)
	if u, _ := url.Parse(r.Header.Get("Location")); r.StatusCode != http.StatusSeeOther || u.Query().Get("error") != "access_denied" {
		t.Errorf("deny = %d %s", r.StatusCode, r.Header.Get("Location"))
	}
}

// TestPeopleSessionFixation: a session cookie planted before sign-in is
// never the session after it, and a made-up cookie names no session.
func TestPeopleSessionFixation(t *testing.T) {
	f := newPeopleFixture(t)
	b := newBrowser(t)
	u, _ := url.Parse(f.base)
	b.c.Jar.SetCookies(u, []*http.Cookie{{Name: "mandate_session", Value: "planted-by-attacker", Path: "/"}})
	if r, _ := b.do("GET", f.base+"/me", nil); r.StatusCode != http.StatusFound {
		t.Fatalf("/me with a made-up cookie = %d, want a redirect to sign in", r.StatusCode)
	}
	f.signIn(t, b)
	var now string
	for _, c := range b.c.Jar.Cookies(u) {
		if c.Name == "mandate_session" {
			now = c.Value
		}
	}
	if now == "" || now == "planted-by-attacker" {
		t.Fatalf("session cookie after sign-in = %q", now)
	}
	// Signing in again rotates the cookie and ends the previous session.
	f.signIn(t, b)
	other := newBrowser(t)
	other.c.Jar.SetCookies(u, []*http.Cookie{{Name: "mandate_session", Value: now, Path: "/"}})
	if r, _ := other.do("GET", f.base+"/me", nil); r.StatusCode != http.StatusFound {
		t.Errorf("/me with the pre-rotation cookie = %d, want refused", r.StatusCode)
	}
}

// TestPeopleMetadataAndRegistration: the metadata a stock client needs,
// and RFC 7591 registration whose client then completes the flow.
func TestPeopleMetadataAndRegistration(t *testing.T) {
	f := newPeopleFixture(t)
	code, body := get(t, http.DefaultClient, f.base+"/.well-known/oauth-authorization-server")
	var md map[string]any
	_ = json.Unmarshal([]byte(body), &md)
	if code != 200 || md["authorization_endpoint"] != f.base+"/oauth/authorize" || md["registration_endpoint"] != f.base+"/oauth/register" ||
		md["client_id_metadata_document_supported"] != true || md["authorization_response_iss_parameter_supported"] != true ||
		!strings.Contains(body, `"code_challenge_methods_supported":["S256"]`) || !strings.Contains(body, `"response_types_supported":["code"]`) {
		t.Fatalf("metadata = %d %s", code, body)
	}
	post := func(body string) (int, map[string]any) {
		resp, err := http.Post(f.base+"/oauth/register", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	for _, hostile := range []string{`{"redirect_uris":["javascript:alert(1)"]}`, `{"redirect_uris":["http://evil.example/cb"]}`,
		`{"client_id":"mdc_mine","redirect_uris":["http://127.0.0.1:1/cb"]}`, `not json`, `{"redirect_uris":["http://127.0.0.1:1/cb"],"token_endpoint_auth_method":"client_secret_basic"}`} {
		if code, out := post(hostile); code != 400 || out["client_id"] != nil {
			t.Errorf("register %s = %d %v", hostile, code, out)
		}
	}
	code, out := post(`{"redirect_uris":["http://127.0.0.1:1/callback"],"client_name":"Registered client"}`)
	if code != 201 || !strings.HasPrefix(out["client_id"].(string), "mdc_") {
		t.Fatalf("register = %d %v", code, out)
	}
	f.clientID, f.name = out["client_id"].(string), "Registered client"
	b := newBrowser(t)
	f.signIn(t, b)
	verifier, challenge := pkce()
	resp, page := b.do("GET", f.authorizeURL(challenge, nil), nil)
	if resp.StatusCode != 200 || !strings.Contains(page, "Registered client") {
		t.Fatalf("consent for a registered client = %d", resp.StatusCode)
	}
	q := f.consent(t, b, challenge)
	if code, out := f.exchange(t, q.Get("code"), verifier); code != 200 || out["access_token"] == nil {
		t.Fatalf("exchange = %d %v", code, out)
	}
	// The ledger has consent and sign-in events.
	evs, err := f.s.backend.ListEvents(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, e := range evs {
		seen[string(e.Type)] = true
	}
	for _, want := range []string{"person.signed_in", "consent.granted", "task.started", "client.registered", "client.refused", "token.issued"} {
		if !seen[want] {
			t.Errorf("no %s event in the ledger", want)
		}
	}
}
