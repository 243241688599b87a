package server

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// browserFixture is mandate's gateway fronting server-filesystem on a
// temporary directory holding one file, for the TypeScript SDK's client.
type browserFixture struct {
	s      *Server
	base   string
	file   string
	npm    string
	chrome context.Context
}

const browserFileText = "hello from the person's task\n"

func newBrowserFixture(t *testing.T, configure func(*Config)) *browserFixture {
	npmDir, chromium := browserDeps(t)
	root, _ := filepath.EvalSymlinks(t.TempDir())
	file := filepath.Join(root, "notes.txt")
	if err := os.WriteFile(file, []byte(browserFileText), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := testConfig(t)
	cfg.MCP.Upstreams = []MCPUpstream{{Name: "fs", Command: nodeBin(npmDir), Env: []string{"HOME=" + root},
		Args: []string{filepath.Join(npmDir, "node_modules", "@modelcontextprotocol", "server-filesystem", "dist", "index.js"), root}}}
	configure(&cfg)
	s, _ := startServer(t, cfg)
	return &browserFixture{s: s, base: s.PublicURL(), file: file, npm: npmDir, chrome: newChromium(t, chromium)}
}

// fsEntitlement is what the client rules give the SDK's client.
var fsEntitlement = &ClientEntitlement{Scope: []string{"tool.call:fs/**"}, MaxTaskTTL: "8h"}

// run drives the whole flow for person: the SDK's client asks, signIn
// signs the browser in (it starts on the page the authorization URL led
// to), the person consents, the client lists tools, reads the file and
// refreshes; the ledger has the task on the person's behalf; ending it on
// /me makes the client's next call fail with 401. With shots, the pages
// are saved in docs/screenshots.
func (f *browserFixture) run(t *testing.T, person, metadataURL string, signIn func(authorizeURL string), onRedirect func(string), shots bool) {
	args := []string{f.base + "/mcp/fs", f.file}
	if metadataURL != "" {
		args = append(args, metadataURL)
	}
	client := startNode(t, f.npm, nodeScript(t, f.npm, "mcp-client.mjs"), nil, args...)
	onRedirect(client.next(t, "redirect").URL)
	authorize := client.next(t, "authorize").URL
	if !strings.HasPrefix(authorize, f.base+"/oauth/authorize?") {
		t.Fatalf("the SDK's authorization URL = %s", authorize)
	}
	signIn(authorize)

	// Consent on mandate's page.
	if err := chromedp.Do(f.chrome, chromedp.WaitVisible(chromedp.CSS(`button[value=approve]`))); err != nil {
		t.Fatalf("no consent page: %v", err)
	}
	page, _ := chromedp.Run(f.chrome, chromedp.Text(chromedp.CSS("body")))
	if !strings.Contains(page, f.base+"/mcp/fs") {
		t.Errorf("consent page does not name the MCP server:\n%s", page)
	}
	if shots {
		screenshot(t, f.chrome, "consent.png")
	}
	if err := chromedp.Do(f.chrome, chromedp.SetValue(chromedp.CSS(`input[name=purpose]`), "read my notes"),
		chromedp.Click(chromedp.CSS(`button[value=approve]`))); err != nil {
		t.Fatal(err)
	}
	if ev := client.next(t, "code"); ev.ISS != f.base || ev.Error != "" {
		t.Fatalf("authorization response iss %q error %q", ev.ISS, ev.Error)
	}
	f.checkSessionCookie(t)
	if ev := client.next(t, "client"); metadataURL != "" && ev.ClientID != metadataURL || metadataURL == "" && !strings.HasPrefix(ev.ClientID, "mdc_") {
		t.Errorf("client id = %q", ev.ClientID)
	}
	if ev := client.next(t, "tools"); !slices.Contains(ev.Names, "read_text_file") || slices.Contains(ev.Names, "write_file") {
		t.Errorf("tools for an assist client = %v", ev.Names)
	}
	if ev := client.next(t, "read"); ev.Text != browserFileText {
		t.Errorf("read_text_file = %q", ev.Text)
	}
	if ev := client.next(t, "refresh"); ev.Result != "AUTHORIZED" || !ev.Rotated || !ev.Renewed {
		t.Errorf("refresh = %+v, want a new access token and a rotated refresh token", ev)
	}
	if ev := client.next(t, "read-after-refresh"); ev.Text != browserFileText {
		t.Errorf("read after refresh = %q", ev.Text)
	}
	client.next(t, "ready")

	// The ledger: the task on the person's behalf, and the flow's events.
	tasks, err := f.s.backend.ListTasks(t.Context(), task.Filter{OnBehalfOf: person, Status: task.StatusActive})
	if err != nil || len(tasks) != 1 || tasks[0].Purpose != "read my notes" {
		t.Fatalf("active tasks on behalf of %s = %+v, %v", person, tasks, err)
	}
	evs, err := f.s.backend.ListEvents(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range evs {
		if e.Type == "person.signed_in" && e.Actor != person && e.OnBehalfOf != person {
			continue
		}
		if e.Task == string(tasks[0].ID) || e.Type == "person.signed_in" {
			seen[string(e.Type)]++
		}
	}
	for _, want := range []string{"person.signed_in", "consent.granted", "task.started"} {
		if seen[want] == 0 {
			t.Errorf("no %s event for %s's task in the ledger (%v)", want, person, seen)
		}
	}
	if seen["token.issued"] < 2 {
		t.Errorf("token.issued events for the task = %d, want the code's and the refresh's", seen["token.issued"])
	}

	refusedBefore := f.count(t, audit.TypeTokenRefused)

	// End the task on /me; the client's next call fails with 401.
	if err := chromedp.Do(f.chrome, chromedp.Navigate(f.base+"/me"),
		chromedp.WaitVisible(chromedp.CSS(`form[action="/me/tasks/end"] button`))); err != nil {
		t.Fatalf("/me: %v", err)
	}
	if shots {
		screenshot(t, f.chrome, "me.png")
	}
	if err := chromedp.Do(f.chrome, chromedp.Click(chromedp.CSS(`form[action="/me/tasks/end"] button`)),
		chromedp.WaitReady(chromedp.CSS("body"))); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := f.s.backend.GetTask(t.Context(), tasks[0].ID)
		if err == nil && got.Status != task.StatusActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the task is still %v after End on /me (%v)", got.Status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := client.stdin.Write([]byte("again\n")); err != nil {
		t.Fatal(err)
	}
	if ev := client.next(t, "after-end"); ev.Status != 401 || !strings.HasPrefix(ev.WWWAuthenticate, "Bearer") {
		t.Errorf("call after the task ended = %d (WWW-Authenticate %q), want 401", ev.Status, ev.WWWAuthenticate)
	}
	// The SDK's own call: 401, its refresh is refused (the task ended),
	// so it sends the person to authorize again and gives up.
	if ev := client.next(t, "authorize"); !strings.HasPrefix(ev.URL, f.base+"/oauth/authorize?") {
		t.Errorf("the SDK's second authorization URL = %s", ev.URL)
	}
	if ev := client.next(t, "sdk-after-end"); ev.OK || !ev.Unauthorized {
		t.Errorf("the SDK's call after the task ended = %+v, want UnauthorizedError", ev)
	}
	if n := f.count(t, audit.TypeTokenRefused); n <= refusedBefore {
		t.Errorf("token.refused events = %d after the refresh of an ended task, %d before", n, refusedBefore)
	}
}

// checkSessionCookie: the session cookie, as the browser keeps it, is
// HttpOnly and SameSite=Lax.
func (f *browserFixture) checkSessionCookie(t *testing.T) {
	res, err := chromedp.Run(f.chrome, func(ctx context.Context, tg *chromedp.Target) (network.GetCookiesResult, error) {
		return cdp.Call(ctx, tg, network.GetCookies, network.GetCookiesParams{URLs: []string{f.base + "/me"}})
	})
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, c := range res.Cookies {
		if c.Name == "mandate_session" {
			found = true
			if !c.HTTPOnly || c.SameSite != network.CookieSameSiteLax {
				t.Errorf("session cookie HttpOnly %v SameSite %q, want HttpOnly and Lax", c.HTTPOnly, c.SameSite)
			}
		}
	}
	if !found {
		t.Errorf("no session cookie in the browser after sign-in: %d cookies", len(res.Cookies))
	}
}

// count is the number of ledger events of type typ.
func (f *browserFixture) count(t *testing.T, typ audit.Type) int {
	evs, err := f.s.backend.ListEvents(t.Context(), audit.Query{})
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range evs {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// TestBrowserSignInAtIdP: the TypeScript SDK's OAuth client, identified by
// a Client ID Metadata Document, connects to the gateway fronting
// server-filesystem; chromium signs the person in at oidc-provider and
// consents on mandate's page.
func TestBrowserSignInAtIdP(t *testing.T) {
	if testing.Short() {
		t.Skip("browser in -short mode")
	}
	idp, err := net.ListenTCP("tcp", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer idp.Close()
	meta := startMetadataServer(t)
	f := newBrowserFixture(t, func(c *Config) {
		c.OAuth.MetadataAllowPrivate = true
		c.OAuth.MetadataTransport = meta.transport()
		c.OAuth.Clients = []OAuthClient{{ClientIDPattern: "https://127.0.0.1:*/client.json", Tier: "assist", Entitlement: fsEntitlement}}
		c.People.IdPs = []PeopleIdP{{Name: "test", Display: "Example IdP", Issuer: "http://" + idp.Addr().String(),
			ClientID: "mandate", ClientSecret: "browser-test-secret-0123456789"}}
	})
	startOIDCProvider(t, f.npm, idp, f.base+"/signin/oidc/test/callback", "browser-test-secret-0123456789")

	f.run(t, "alice@example.com", meta.url(), func(authorize string) {
		// Not signed in: mandate's sign-in page, then the IdP's.
		if err := chromedp.Do(f.chrome, chromedp.Navigate(authorize), chromedp.WaitVisible(chromedp.CSS(`a.button`))); err != nil {
			t.Fatalf("sign-in page: %v", err)
		}
		screenshot(t, f.chrome, "signin.png")
		if err := chromedp.Do(f.chrome, chromedp.Click(chromedp.CSS(`a.button`)),
			chromedp.WaitVisible(chromedp.CSS(`input[name=login]`))); err != nil {
			t.Fatalf("the IdP's sign-in form: %v", err)
		}
		screenshot(t, f.chrome, "signin-idp.png")
		if err := chromedp.Do(f.chrome,
			chromedp.SendKeys(chromedp.CSS(`input[name=login]`), "alice"),
			chromedp.SendKeys(chromedp.CSS(`input[name=password]`), "correct horse"),
			chromedp.Submit(chromedp.CSS(`input[name=login]`)),
			// The IdP's own consent for mandate.
			chromedp.WaitVisible(chromedp.CSS(`input[name=prompt][value=consent] ~ button`)),
			chromedp.Click(chromedp.CSS(`input[name=prompt][value=consent] ~ button`))); err != nil {
			t.Fatalf("signing in at the IdP: %v", err)
		}
	}, meta.setRedirect, true)

	// The person is a Human record from the ID token's claims.
	h, err := f.s.backend.GetHuman(t.Context(), "http://"+idp.Addr().String(), "alice")
	if err != nil || h.Principal != "alice@example.com" || h.Email != "alice@example.com" || !slices.Contains(h.Groups, "engineering") {
		t.Errorf("the signed-in person = %+v, %v", h, err)
	}
}

// TestBrowserLocalLink: the zero-configuration start — no IdP; the
// printed link signs the local administrator in, and the SDK's client,
// registering itself (RFC 7591), gets the same consent.
func TestBrowserLocalLink(t *testing.T) {
	if testing.Short() {
		t.Skip("browser in -short mode")
	}
	f := newBrowserFixture(t, func(c *Config) {
		c.OAuth.Registration = true
		c.OAuth.Clients = []OAuthClient{{Registered: true, Tier: "assist", Entitlement: fsEntitlement}}
	})
	f.run(t, "admin", "", func(authorize string) {
		// Not signed in: the sign-in page says where the link is.
		if err := chromedp.Do(f.chrome, chromedp.Navigate(authorize), chromedp.WaitVisible(chromedp.CSS(`code`))); err != nil {
			t.Fatalf("sign-in page: %v", err)
		}
		if page, _ := chromedp.Run(f.chrome, chromedp.Text(chromedp.CSS("body"))); !strings.Contains(page, "mandate admin login-link") {
			t.Errorf("the sign-in page with no IdP does not tell how to sign in:\n%s", page)
		}
		screenshot(t, f.chrome, "signin-local.png")
		link, err := f.s.LoginLink()
		if err != nil {
			t.Fatal(err)
		}
		if err := chromedp.Do(f.chrome, chromedp.Navigate(link), chromedp.WaitReady(chromedp.CSS("body")),
			chromedp.Navigate(authorize)); err != nil {
			t.Fatalf("local link: %v", err)
		}
	}, func(string) {}, false)
}
