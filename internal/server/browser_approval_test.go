package server

import (
	"context"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
)

// heldResult is what a held deploy call finally answered.
type heldResult struct {
	text string
	err  error
}

// callForResult calls deploy(env) in the background and reports the
// tool's text.
func callForResult(cs *mcp.ClientSession, env string) <-chan heldResult {
	done := make(chan heldResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "deploy", Arguments: map[string]any{"env": env}})
		var out heldResult
		out.err = err
		if err == nil {
			for _, c := range res.Content {
				if tc, ok := c.(*mcp.TextContent); ok {
					out.text += tc.Text
				}
			}
			if res.IsError {
				out.err = &toolError{out.text}
			}
		}
		done <- out
	}()
	return done
}

type toolError struct{ text string }

func (e *toolError) Error() string { return "tool error: " + e.text }

// browserAt waits until chromium's location starts with prefix and
// returns it.
func browserAt(t *testing.T, ctx context.Context, prefix string) string {
	t.Helper()
	var loc string
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var err error
		if loc, err = chromedp.Run(ctx, chromedp.Location()); err == nil && strings.HasPrefix(loc, prefix) {
			return loc
		}
	}
	t.Fatalf("the browser is at %q, want %s…", loc, prefix)
	return ""
}

// pageText is the text of the page's first element matching css.
func pageText(t *testing.T, ctx context.Context, css string) string {
	t.Helper()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(css)))
	if err != nil {
		t.Fatalf("the text of %s: %v", css, err)
	}
	return s
}

// TestBrowserApproval: an autonomous agent's destructive call through the
// real gateway (the shipped default policies) is held; the loopback
// webhook receiver gets the signed Slack-shaped message; headless
// chromium follows its link, is sent to sign in, signs in as the agent's
// owner by the local link and comes back to the page, sees the arguments
// and approves; the held call completes with the tool's result; the
// ledger has the request, the decision and the decider. The page is
// saved as docs/screenshots/approval.png.
func TestBrowserApproval(t *testing.T) {
	if testing.Short() {
		t.Skip("browser in -short mode")
	}
	_, chromium := browserDeps(t)
	secret := []byte("webhook-secret")
	rc := &receiver{t: t, secret: secret}
	hook := httptest.NewServer(rc)
	defer hook.Close()
	e := newApprovalEnv(t, func(c *Config) {
		f := filepath.Join(filepath.Dir(c.DataDir), "webhook.secret")
		if err := os.WriteFile(f, secret, 0o600); err != nil {
			t.Fatal(err)
		}
		c.Approvals.WebhookURL, c.Approvals.WebhookSecretFile = hook.URL, f
		c.People.LocalPrincipal = "alice@example.org" // the agent's owner
	})
	chrome := newChromium(t, chromium)

	// The agent's task on bob's behalf: alice, the owner, may approve it.
	cs := e.session(t, e.token("bob@example.org"))
	held := callForResult(cs, "staging")
	r := e.pending(t, "staging")

	var link string
	eventually(t, "the webhook message with the page's link", func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for _, txt := range rc.texts {
			if m := slackLink.FindStringSubmatch(txt); m != nil && strings.Contains(txt, "Approval needed") {
				link = m[1]
				return true
			}
		}
		return false
	})
	if link != e.base+"/approvals/"+string(r.ID) {
		t.Fatalf("webhook link = %q, want the page of %s", link, r.ID)
	}

	// Not signed in: the page asks for a sign-in and shows nothing.
	resp, err := chromedp.RunResponse(chrome, chromedp.Navigate(link))
	if err != nil || resp.Status != 401 {
		t.Fatalf("the page without a session: %v, %v; want 401", resp, err)
	}
	if err := chromedp.Do(chrome, chromedp.WaitVisible(chromedp.CSS(`a.button.primary[href^="/signin"]`))); err != nil {
		t.Fatalf("the page without a session has no sign-in button: %v", err)
	}
	body := pageText(t, chrome, "body")
	if strings.Contains(body, "staging") || strings.Contains(body, r.ArgsDigest) {
		t.Fatalf("the page shows the request before sign-in:\n%s", body)
	}
	if err := chromedp.Do(chrome, chromedp.Click(chromedp.CSS(`a.button.primary`))); err != nil {
		t.Fatal(err)
	}
	signin, err := url.Parse(browserAt(t, chrome, e.base+"/signin?"))
	if err != nil {
		t.Fatal(err)
	}
	next := signin.Query().Get("next")
	if next != "/approvals/"+string(r.ID) {
		t.Fatalf("sign-in returns to %q, want the approval page", next)
	}
	if body := pageText(t, chrome, "body"); !strings.Contains(body, "mandate admin login-link") {
		t.Errorf("the sign-in page with no IdP does not tell how to sign in:\n%s", body)
	}

	// The owner signs in by the local link (no IdP) and comes back.
	local, err := e.s.LoginLink()
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(chrome, chromedp.Navigate(local+"&"+url.Values{"next": {next}}.Encode()),
		chromedp.WaitVisible(chromedp.CSS(`form.approve button.primary`))); err != nil {
		t.Fatalf("signing in by the local link: %v", err)
	}
	if at := browserAt(t, chrome, link); at != link {
		t.Fatalf("after sign-in the browser is at %s, want %s", at, link)
	}
	body = pageText(t, chrome, "body")
	for _, want := range []string{r.Agent, string(r.Task), "bob@example.org", r.Resource, `"env": "staging"`, r.ArgsDigest, "alice@example.org"} {
		if !strings.Contains(body, want) {
			t.Errorf("the approval page does not show %q:\n%s", want, body)
		}
	}
	if e.deploys.Load() != 0 {
		t.Fatal("the upstream ran the call before it was approved")
	}
	if err := chromedp.Do(chrome, chromedp.SendKeys(chromedp.CSS(`form.approve input[name=reason]`), "staging is fine")); err != nil {
		t.Fatal(err)
	}
	screenshot(t, chrome, "approval.png")

	// Approve: the page says so, and the held call completes.
	if err := chromedp.Do(chrome, chromedp.Click(chromedp.CSS(`form.approve button.primary`)),
		chromedp.WaitVisible(chromedp.CSS(`p.status-approved`))); err != nil {
		t.Fatalf("approving on the page: %v", err)
	}
	body = pageText(t, chrome, `p.status-approved`)
	if !strings.Contains(body, "approved by alice@example.org") || !strings.Contains(body, "staging is fine") || !strings.Contains(body, "reach once") {
		t.Errorf("the decided page says %q", body)
	}
	select {
	case res := <-held:
		if res.err != nil || res.text != "deployed staging" {
			t.Fatalf("the approved call = %q, %v; want the tool's result", res.text, res.err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the held call did not complete after the approval")
	}
	if n := e.deploys.Load(); n != 1 {
		t.Fatalf("upstream ran %d calls, want 1", n)
	}

	// The ledger: the request, the decision through the page and its
	// decider, the grant, its use.
	seen := map[string]int{}
	for _, ev := range events(t, e.s) {
		if ev.ApprovalID != string(r.ID) {
			continue
		}
		switch {
		case ev.Type == approval.TypeRequested && ev.OnBehalfOf == "bob@example.org":
			seen["requested"]++
		case ev.Type == audit.TypeActionDecided && ev.Action == "approval.decide" && ev.Decision == audit.DecisionAllow &&
			ev.Actor == "alice@example.org" && strings.HasPrefix(ev.Details["via"], "web:"):
			seen["decided"]++
		case ev.Type == approval.TypeGranted && ev.Actor == "alice@example.org" && ev.Details["reach"] == "once":
			seen["granted"]++
		case ev.Type == approval.TypeUsed:
			seen["used"]++
		}
	}
	for _, k := range []string{"requested", "decided", "granted", "used"} {
		if seen[k] != 1 {
			t.Errorf("ledger events of %s: %v, want one each of requested, decided (alice, via the web), granted (alice) and used", r.ID, seen)
			break
		}
	}
}
