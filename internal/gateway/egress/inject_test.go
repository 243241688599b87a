package egress_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/egress"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
)

// ghValue is the secret the agent never holds.
const ghValue = "ghp_SECRETvalue/with+chars&42"

// injectEnv is interceptEnv with a secrets broker and gh_token, delivered
// to example.com on the echo server's port. The classification is the
// operator's: requests and this secret's use read (the default policies
// then let a supervised agent's task lease it; an autonomous agent's
// secret use always waits for step-up approval).
func injectEnv(t *testing.T, up *echo) (*env, string, string) {
	t.Helper()
	e := interceptEnv(t, up, envOpts{secrets: true, classifier: policy.ClassifierConfig{Risks: []policy.RiskRule{
		{Match: "secret.use:gh_token", Risk: policy.RiskRead}, {Match: "http.request:*", Risk: policy.RiskRead},
	}}})
	host := "example.com:" + up.port()
	if _, _, err := e.broker.Put(context.Background(), "admin", secrets.PutRequest{Name: "gh_token", Value: []byte(ghValue),
		Deliver: []secrets.Target{{Host: host}}}); err != nil {
		t.Fatal(err)
	}
	tok := e.taskToken(t, "builder", identity.TierSupervised,
		"http.request:"+host+" http.request:127.0.0.1:"+up.port()+" secret.use:gh_token")
	return e, host, tok
}

// noValue fails if the secret's value, in any form the scrubber knows, is
// in b.
func noValue(t *testing.T, what string, b []byte) {
	t.Helper()
	enc, _ := json.Marshal(ghValue)
	for _, f := range [][]byte{[]byte(ghValue), enc[1 : len(enc)-1], []byte("SECRETvalue")} {
		if bytes.Contains(b, f) {
			t.Errorf("%s holds the secret's value: %q", what, b)
		}
	}
}

func TestSecretInjectedOnlyForItsHost(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e, host, tok := injectEnv(t, up)
	c := e.tlsClient(tok, e.caPool(t))
	var seen bytes.Buffer

	before := e.rec.len()
	req, _ := http.NewRequest("GET", "https://"+host+"/user", nil)
	req.Header.Set("Authorization", "Bearer [secret:gh_token]")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := body(resp)
	fmt.Fprintf(&seen, "%v %v %s", resp.Header, resp.Trailer, got)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d %q", resp.StatusCode, got)
	}
	// The bound host got the value...
	if r := up.requests(); len(r) != 1 || r[0].Header.Get("Authorization") != "Bearer "+ghValue {
		t.Fatalf("upstream saw Authorization %q, want the injected value", r[0].Header.Get("Authorization"))
	}
	// ...the agent sees the placeholder where the upstream echoed it: in
	// a header, in a body split across writes, JSON-encoded, in a trailer.
	want := "path=/user auth=Bearer [secret:gh_token] json=\"Bearer [secret:gh_token]\""
	if got != want || resp.Header.Get("X-Echo") != "Bearer [secret:gh_token]" || resp.Trailer.Get("X-Sum") != "Bearer [secret:gh_token]" {
		t.Errorf("client got %q, X-Echo %q, trailer %q; want the placeholder everywhere", got, resp.Header.Get("X-Echo"), resp.Trailer.Get("X-Sum"))
	}
	evs := e.waitOutcomes(t, before, 2)
	inj := eventsOf(evs, egress.TypeSecretInjected)
	if len(inj) != 1 || inj[0].Resource != "secret:gh_token" || inj[0].Details["host"] != host ||
		inj[0].Details["value_hmac"] != e.auth.Audit.Redactor().HMAC([]byte(ghValue)) || inj[0].Details["lease"] == "" {
		t.Fatalf("injection events = %+v, want one for gh_token at %s with the value's HMAC", inj, host)
	}
	if len(eventsOf(evs, secrets.TypeLeaseIssued)) != 1 {
		t.Errorf("want one lease issued for the task")
	}

	// The same server under another name: the placeholder is refused,
	// never replaced, and nothing is sent.
	before = e.rec.len()
	other := "127.0.0.1:" + up.port()
	req, _ = http.NewRequest("GET", "https://"+other+"/user", nil)
	req.Header.Set("Authorization", "Bearer [secret:gh_token]")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b := body(resp)
	fmt.Fprintf(&seen, "%v %s", resp.Header, b)
	if resp.StatusCode != 403 || !strings.Contains(b, "not delivered to "+other) {
		t.Fatalf("placeholder to another host: status %d %q, want 403", resp.StatusCode, b)
	}
	if n := len(up.requests()); n != 1 {
		t.Fatalf("upstream served %d requests, want still 1", n)
	}
	evs = e.waitOutcomes(t, before, 2)
	ref := eventsOf(evs, egress.TypePlaceholderRefused)
	if len(ref) != 1 || ref[0].Resource != "secret:gh_token" || ref[0].Details["host"] != other || ref[0].Decision != audit.DecisionDeny {
		t.Fatalf("refusal events = %+v, want one for gh_token at %s", ref, other)
	}

	// A later response of the task, from a request without a
	// placeholder, that echoes the value is scrubbed too.
	req, _ = http.NewRequest("GET", "https://"+host+"/again", nil)
	req.Header.Set("Authorization", "Bearer "+ghValue) // as if the agent had learnt it
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(&seen, "%v %s", resp.Header, body(resp))

	noValue(t, "what the client received", seen.Bytes())
	all, _ := json.Marshal(e.rec.since(0))
	noValue(t, "the ledger's events", all)
	ledgerFiles(t, e)
}

// ledgerFiles searches the store's files (the ledger and the sealed
// secret) for the value.
func ledgerFiles(t *testing.T, e *env) {
	t.Helper()
	matches, _ := filepath.Glob(e.auth.Path + "*")
	if len(matches) == 0 {
		t.Fatal("no store files")
	}
	for _, f := range matches {
		b, _ := os.ReadFile(f)
		noValue(t, f, b)
	}
}

func TestSecretInjectedOverPlainHTTP(t *testing.T) {
	t.Parallel()
	up := newEcho(t, false)
	e, host, tok := injectEnv(t, up)
	req, _ := http.NewRequest("GET", "http://"+host+"/plain", nil)
	req.Header.Set("Authorization", "token [secret:gh_token]")
	resp, err := e.client(tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got := body(resp)
	if resp.StatusCode != 200 || up.requests()[0].Header.Get("Authorization") != "token "+ghValue {
		t.Fatalf("status %d %q; upstream saw %q", resp.StatusCode, got, up.requests()[0].Header.Get("Authorization"))
	}
	noValue(t, "the response", []byte(fmt.Sprint(resp.Header, got)))
}

func TestPlaceholdersRefused(t *testing.T) {
	t.Parallel()
	up := newEcho(t, true)
	e, host, tok := injectEnv(t, up)
	c := e.tlsClient(tok, e.caPool(t))
	for _, tc := range []struct {
		name   string
		header [2]string
		extra  [2]string
		path   string
		want   int
	}{
		{"upper case", [2]string{"Authorization", "Bearer [Secret:gh_token]"}, [2]string{}, "/", 400},
		{"unclosed", [2]string{"Authorization", "Bearer [secret:gh_token"}, [2]string{}, "/", 400},
		{"bad name", [2]string{"X-Key", "[secret:GH]"}, [2]string{}, "/", 400},
		{"unknown secret", [2]string{"X-Key", "[secret:nope]"}, [2]string{}, "/", 403},
		{"with a range", [2]string{"Authorization", "Bearer [secret:gh_token]"}, [2]string{"Range", "bytes=0-9"}, "/", 400},
		{"compressed answer", [2]string{"Authorization", "Bearer [secret:gh_token]"}, [2]string{}, "/gzip", 502},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := len(up.requests())
			req, _ := http.NewRequest("GET", "https://"+host+tc.path, nil)
			req.Header.Set(tc.header[0], tc.header[1])
			if tc.extra[0] != "" {
				req.Header.Set(tc.extra[0], tc.extra[1])
			}
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b := body(resp)
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, b, tc.want)
			}
			noValue(t, "the answer", []byte(fmt.Sprint(resp.Header, b)))
			if tc.want != 502 && len(up.requests()) != n {
				t.Fatal("a refused request reached the upstream")
			}
		})
	}
}
