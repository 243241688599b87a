package server

import (
	"html"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
)

// The approval page (internal/web/approval*.go) over real HTTP: a person
// signed in by the local link, the held MCP call through the real
// gateway, the webhook receiver on loopback.

var (
	slackLink  = regexp.MustCompile(`<(http://[^|>]+/approvals/apr_[a-z2-7]{26})\|`)
	formField  = regexp.MustCompile(`name="(csrf|digest)" value="([^"]*)"`)
	pageAction = regexp.MustCompile(`action="(/approvals/apr_[a-z2-7]{26}/(approve|deny))"`)
)

// fields returns the page's hidden csrf and digest fields.
func fields(page string) url.Values {
	v := url.Values{}
	for _, m := range formField.FindAllStringSubmatch(page, -1) {
		v.Set(m[1], html.UnescapeString(m[2]))
	}
	return v
}

func with(v url.Values, kv ...string) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "\x00" {
			out.Del(kv[i])
			continue
		}
		out.Set(kv[i], kv[i+1])
	}
	return out
}

// signInAs signs b in by a local link (as the configured local
// principal).
func signInAs(t *testing.T, s *Server, b *browser) {
	t.Helper()
	link, err := s.LoginLink()
	if err != nil {
		t.Fatal(err)
	}
	if resp, _ := b.do("GET", link, nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("local link = %d", resp.StatusCode)
	}
}

// events returns the ledger's events.
func events(t *testing.T, s *Server) []*audit.Event {
	t.Helper()
	evs, err := s.backend.ListEvents(t.Context(), audit.Query{Limit: 10000})
	if err != nil {
		t.Fatal(err)
	}
	return evs
}

// TestApprovalPageEndToEnd: the webhook receiver gets the Slack-shaped
// message with the link to the page; following it needs a session; signed
// in as the owner, the page shows the request and its arguments in full;
// posts without or with a wrong CSRF token, or without the digest of what
// was shown, decide nothing (recorded); the owner approves and the held
// call completes; the same post again is refused as decided; the next
// call with other arguments shows the diff and is denied on the page; a
// post replayed after signing out is refused.
func TestApprovalPageEndToEnd(t *testing.T) {
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
	cs := e.session(t, e.token("bob@example.org"))
	held := call(cs, "staging")
	r := e.pending(t, "staging")

	// The message links to the page.
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

	b := newBrowser(t)
	if resp, page := b.do("GET", link, nil); resp.StatusCode != http.StatusUnauthorized || strings.Contains(page, "staging") {
		t.Fatalf("the page without a session = %d, want 401 without the arguments", resp.StatusCode)
	}
	signInAs(t, e.s, b)
	resp, page := b.do("GET", link, nil)
	if resp.StatusCode != 200 {
		t.Fatalf("the page = %d %s", resp.StatusCode, page)
	}
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("CSP = %q", csp)
	}
	text := html.UnescapeString(page)
	for _, want := range []string{r.Agent, string(r.Task), "bob@example.org", r.Action, r.Resource, `"env": "staging"`, r.ArgsDigest,
		r.Reasons[0], r.ExpiresAt.UTC().Format("2006-01-02 15:04:05 UTC"), "No earlier approval"} {
		if !strings.Contains(text, want) {
			t.Errorf("the page does not show %q", want)
		}
	}
	if _, list := b.do("GET", e.base+"/approvals", nil); !strings.Contains(list, string(r.ID)) {
		t.Error("/approvals does not list the pending request")
	}
	f := fields(page)
	approveURL := e.base + "/approvals/" + string(r.ID) + "/approve"
	if f.Get("csrf") == "" || f.Get("digest") != r.ArgsDigest || len(pageAction.FindAllString(page, -1)) != 2 {
		t.Fatalf("the page's forms: %v", f)
	}

	// Refused posts decide nothing.
	twice := with(f)
	twice["reach"] = []string{"once", "task"}
	for _, c := range []struct {
		name string
		form url.Values
		code int
	}{
		{"no CSRF token", with(f, "csrf", "\x00", "reach", "once"), http.StatusForbidden},
		{"a wrong CSRF token", with(f, "csrf", strings.Repeat("A", len(f.Get("csrf"))), "reach", "once"), http.StatusForbidden},
		{"no digest", with(f, "digest", "\x00", "reach", "once"), http.StatusBadRequest},
		{"no reach", with(f), http.StatusBadRequest},
		{"the reach twice", twice, http.StatusBadRequest},
		{"an oversized reason", with(f, "reach", "once", "reason", strings.Repeat("r", 4097)), http.StatusBadRequest},
		{"another call's digest", with(f, "digest", "hmac-sha256:"+strings.Repeat("0", 64), "reach", "once"), http.StatusConflict},
	} {
		if resp, body := b.do("POST", approveURL, c.form); resp.StatusCode != c.code || !strings.Contains(body, "Nothing was") && !strings.Contains(body, "nothing was") {
			t.Errorf("%s: %d, want %d and that nothing was decided: %s", c.name, resp.StatusCode, c.code, body)
		}
	}
	for _, u := range []string{approveURL + "?reach=task", strings.Replace(approveURL, "apr_", "APR_", 1)} {
		if resp, _ := b.do("POST", u, with(f, "reach", "once")); resp.StatusCode/100 != 4 {
			t.Errorf("POST %s = %d, want refused", u, resp.StatusCode)
		}
	}
	if got, _ := e.s.approvals.svc.Get(t.Context(), r.ID); got.Status != approval.StatusPending || e.deploys.Load() != 0 {
		t.Fatalf("after refused posts: %s, %d deploys", got.Status, e.deploys.Load())
	}

	// The owner approves: the held call completes.
	good := with(f, "reach", "once", "reason", "staging is fine")
	if resp, body := b.do("POST", approveURL, good); resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/approvals/"+string(r.ID) {
		t.Fatalf("approve = %d %s", resp.StatusCode, body)
	}
	if err := wait(t, held); err != nil {
		t.Fatalf("the approved call: %v", err)
	}
	if e.deploys.Load() != 1 {
		t.Fatalf("upstream ran %d calls, want 1", e.deploys.Load())
	}
	// The same post again: decided already.
	if resp, body := b.do("POST", approveURL, good); resp.StatusCode != http.StatusConflict || !strings.Contains(body, "already approved by alice@example.org") {
		t.Errorf("the approval posted again = %d %s, want 409 already decided", resp.StatusCode, body)
	}
	if _, page := b.do("GET", link, nil); !strings.Contains(page, "approved by alice@example.org") || strings.Contains(page, `action="/approvals/`) {
		t.Error("the decided request's page does not say who approved it, or still has forms")
	}

	// Other arguments: the page shows the difference; denied there.
	prod := call(cs, "prod")
	p := e.pending(t, "prod")
	_, page = b.do("GET", e.base+"/approvals/"+string(p.ID), nil)
	text = html.UnescapeString(page)
	if !strings.Contains(text, string(r.ID)+": approved by alice@example.org") ||
		!regexp.MustCompile(`diff-changed"><td><code>env</code></td><td>changed</td><td><code>"staging"</code></td><td><code>"prod"</code>`).MatchString(text) {
		t.Errorf("the page of deploy(env=prod) does not show the change from the earlier approval:\n%s", text)
	}
	deny := with(fields(page), "reason", "not during the freeze")
	if resp, body := b.do("POST", e.base+"/approvals/"+string(p.ID)+"/deny", with(deny, "reach", "task")); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("a denial with a reach = %d %s, want 400", resp.StatusCode, body)
	}
	if resp, body := b.do("POST", e.base+"/approvals/"+string(p.ID)+"/deny", deny); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("deny = %d %s", resp.StatusCode, body)
	}
	if err := wait(t, prod); err == nil || !strings.Contains(err.Error(), "denied by alice@example.org: not during the freeze") {
		t.Fatalf("the denied call: %v", err)
	}

	// Signed out, the same form replayed is refused.
	if resp, _ := b.do("POST", e.base+"/signout", url.Values{"csrf": {f.Get("csrf")}}); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign out = %d", resp.StatusCode)
	}
	if resp, _ := b.do("POST", approveURL, good); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a post replayed after signing out = %d, want 403", resp.StatusCode)
	}

	var webRefusals, serviceRefusals, decidedViaWeb int
	var granted []string
	for _, ev := range events(t, e.s) {
		switch {
		case ev.Type == approval.TypeRefused && ev.Point == "web":
			webRefusals++
		case ev.Type == approval.TypeRefused:
			serviceRefusals++
		case ev.Type == audit.TypeActionDecided && ev.Action == "approval.decide" && strings.HasPrefix(ev.Details["via"], "web:"):
			decidedViaWeb++
		case ev.Type == approval.TypeGranted:
			granted = append(granted, ev.Actor+" "+ev.ApprovalID+" "+ev.Details["reach"])
		}
	}
	// Missing and wrong CSRF, no digest, no reach, the reach twice, an
	// oversized reason, a query, an id in capitals, a denial with a
	// reach, the replay after sign-out; the digest mismatch and the second
	// approval are the service's.
	if webRefusals != 10 || serviceRefusals != 2 || decidedViaWeb != 2 {
		t.Errorf("ledger: %d refusals by the page, %d by the service, %d approval.decide via the web; want 10, 2, 2", webRefusals, serviceRefusals, decidedViaWeb)
	}
	if want := "alice@example.org " + string(r.ID) + " once"; len(granted) != 1 || granted[0] != want {
		t.Errorf("granted = %q, want %q", granted, want)
	}
}

// TestApprovalPageRefusals: under separation of duties the owner may not
// approve her own task's step-up on the page (she may deny it); a person
// who is neither the owner nor an approver sees neither the request nor
// its arguments and cannot decide it, even with a valid session and CSRF
// token.
func TestApprovalPageRefusals(t *testing.T) {
	t.Run("separation of duties", func(t *testing.T) {
		e := newApprovalEnv(t, func(c *Config) { c.People.LocalPrincipal = "alice@example.org" })
		cs := e.session(t, e.token("alice@example.org")) // started by the agent: on behalf of its owner
		held := call(cs, "prod")
		r := e.pending(t, "prod")
		b := newBrowser(t)
		signInAs(t, e.s, b)
		_, page := b.do("GET", e.base+"/approvals/"+string(r.ID), nil)
		if !strings.Contains(page, "You may not approve this request") {
			t.Error("the page does not say beforehand that she may not approve")
		}
		f := fields(page)
		resp, body := b.do("POST", e.base+"/approvals/"+string(r.ID)+"/approve", with(f, "reach", "once"))
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "separation of duties") {
			t.Fatalf("approving her own task's step-up = %d %s, want 403 separation of duties", resp.StatusCode, body)
		}
		if got, _ := e.s.approvals.svc.Get(t.Context(), r.ID); got.Status != approval.StatusPending {
			t.Fatalf("after the refusal the request is %s", got.Status)
		}
		if resp, body := b.do("POST", e.base+"/approvals/"+string(r.ID)+"/deny", with(f, "reason", "no")); resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("deny = %d %s", resp.StatusCode, body)
		}
		if err := wait(t, held); err == nil || e.deploys.Load() != 0 {
			t.Fatalf("the denied call: %v, %d deploys", err, e.deploys.Load())
		}
		denied := 0
		for _, ev := range events(t, e.s) {
			if ev.Type == audit.TypeActionDecided && ev.Action == "approval.decide" && ev.Decision == "deny" && ev.Actor == "alice@example.org" && ev.ApprovalID == string(r.ID) {
				denied++
			}
		}
		if denied != 1 {
			t.Errorf("%d denied approval.decide decisions recorded, want 1", denied)
		}
	})
	t.Run("stale page", func(t *testing.T) {
		// A page loaded while the request was pending, posted after it
		// expired: refused, and the call failed closed meanwhile.
		e := newApprovalEnv(t, func(c *Config) {
			c.People.LocalPrincipal = "alice@example.org"
			c.Approvals.ExpireAfter = 2 * time.Second
		})
		cs := e.session(t, e.token("bob@example.org"))
		held := call(cs, "staging")
		r := e.pending(t, "staging")
		b := newBrowser(t)
		signInAs(t, e.s, b)
		_, page := b.do("GET", e.base+"/approvals/"+string(r.ID), nil)
		if err := wait(t, held); err == nil || !strings.Contains(err.Error(), "expired") {
			t.Fatalf("the call: %v, want expired", err)
		}
		resp, body := b.do("POST", e.base+"/approvals/"+string(r.ID)+"/approve", with(fields(page), "reach", "once"))
		if resp.StatusCode != http.StatusConflict || !strings.Contains(body, "nothing was granted") {
			t.Errorf("approving from a stale page = %d %s, want 409 and nothing granted", resp.StatusCode, body)
		}
		if _, page := b.do("GET", e.base+"/approvals/"+string(r.ID), nil); !strings.Contains(page, "expired") || strings.Contains(page, `action="/approvals/`) {
			t.Error("the expired request's page does not say so, or still has forms")
		}
		if e.deploys.Load() != 0 {
			t.Errorf("upstream ran %d calls, want 0", e.deploys.Load())
		}
	})
	t.Run("two posts at once", func(t *testing.T) {
		e := newApprovalEnv(t, func(c *Config) { c.People.LocalPrincipal = "alice@example.org" })
		cs := e.session(t, e.token("bob@example.org"))
		held := call(cs, "staging")
		r := e.pending(t, "staging")
		b := newBrowser(t)
		signInAs(t, e.s, b)
		_, page := b.do("GET", e.base+"/approvals/"+string(r.ID), nil)
		f := fields(page)
		codes := make(chan int, 3)
		for _, post := range []struct{ verb, reach string }{{"approve", "once"}, {"approve", "task"}, {"deny", ""}} {
			form := with(f)
			if post.reach != "" {
				form.Set("reach", post.reach)
			}
			go func() {
				resp, err := b.c.PostForm(e.base+"/approvals/"+string(r.ID)+"/"+post.verb, form)
				if err != nil {
					codes <- 0
					return
				}
				resp.Body.Close()
				codes <- resp.StatusCode
			}()
		}
		got := map[int]int{}
		for range 3 {
			got[<-codes]++
		}
		if got[http.StatusSeeOther] != 1 || got[http.StatusConflict] != 2 {
			t.Fatalf("three decisions at once answered %v, want one 303 and two 409", got)
		}
		final, _ := e.s.approvals.svc.Get(t.Context(), r.ID)
		err := wait(t, held)
		if final.Status == approval.StatusApproved && (err != nil || e.deploys.Load() != 1) || final.Status == approval.StatusDenied && (err == nil || e.deploys.Load() != 0) {
			t.Errorf("the request is %s but the call: %v, %d deploys", final.Status, err, e.deploys.Load())
		}
		decided := 0
		for _, ev := range events(t, e.s) {
			if (ev.Type == approval.TypeGranted || ev.Type == approval.TypeDenied) && ev.ApprovalID == string(r.ID) {
				decided++
			}
		}
		if decided != 1 {
			t.Errorf("%d decisions of %s recorded, want 1", decided, r.ID)
		}
	})
	t.Run("not the owner", func(t *testing.T) {
		e := newApprovalEnv(t, func(c *Config) { c.People.LocalPrincipal = "carol@example.org" })
		cs := e.session(t, e.token("bob@example.org"))
		held := call(cs, "staging")
		r := e.pending(t, "staging")
		b := newBrowser(t)
		signInAs(t, e.s, b)
		resp, page := b.do("GET", e.base+"/approvals/"+string(r.ID), nil)
		if resp.StatusCode != http.StatusForbidden || strings.Contains(page, "staging") || strings.Contains(page, r.ArgsDigest) {
			t.Errorf("carol's view of alice's agent's request = %d, want 403 without the arguments", resp.StatusCode)
		}
		if _, list := b.do("GET", e.base+"/approvals", nil); strings.Contains(list, string(r.ID)) {
			t.Error("/approvals lists a request carol may not decide")
		}
		_, me := b.do("GET", e.base+"/me", nil)
		csrf := hidden(me).Get("csrf")
		for _, verb := range []string{"approve", "deny"} {
			form := url.Values{"csrf": {csrf}, "digest": {r.ArgsDigest}}
			if verb == "approve" {
				form.Set("reach", "once")
			}
			if resp, body := b.do("POST", e.base+"/approvals/"+string(r.ID)+"/"+verb, form); resp.StatusCode != http.StatusForbidden {
				t.Errorf("carol %s = %d %s, want 403", verb, resp.StatusCode, body)
			}
		}
		if got, _ := e.s.approvals.svc.Get(t.Context(), r.ID); got.Status != approval.StatusPending {
			t.Fatalf("after carol's posts the request is %s", got.Status)
		}
		if code, body := e.api(t, "POST", "/admin/v1/approvals/"+string(r.ID)+"/deny", map[string]string{"reason": "cleanup"}, nil); code != 200 {
			t.Fatalf("deny = %d %s", code, body)
		}
		_ = wait(t, held)
		var views, decides int
		for _, ev := range events(t, e.s) {
			switch {
			case ev.Type == approval.TypeRefused && ev.Actor == "carol@example.org" && ev.Details["method"] == "GET":
				views++
			case ev.Type == audit.TypeActionDecided && ev.Action == "approval.decide" && ev.Actor == "carol@example.org" && ev.Decision == "deny":
				decides++
			}
		}
		if views != 1 || decides != 2 {
			t.Errorf("recorded: %d refused views, %d denied decisions by carol; want 1 and 2", views, decides)
		}
	})
}
