package server

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
)

// TestSecretReveal: an agent gets a secret's value itself only where a
// policy's secret.use permit carries the reveal obligation — not under the
// shipped defaults, not for a secret outside its task, not without a task
// token — and every answer is in the ledger, the value never.
func TestSecretReveal(t *testing.T) {
	cfg := testConfig(t)
	class := filepath.Join(t.TempDir(), "classification.yaml")
	if err := os.WriteFile(class, []byte("risks:\n  - {match: \"secret.use:*\", risk: read}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Policy.ClassificationFile = class
	s, _ := startServer(t, cfg)
	sock := socketClient(s.SocketPath())
	const value = "npm_TOKEN-0d1f2e3c4b5a"
	for _, name := range []string{"npm_token", "other"} {
		if code, body := sockDo(t, sock, "PUT", "/admin/v1/secrets/"+name, "application/json", `{"value":"`+value+`"}`); code != http.StatusCreated {
			t.Fatalf("put %s: %d %s", name, code, body)
		}
	}
	a, tok := agentTask(t, s, harness.Registration{Name: "ci", Tier: string(identity.TierSupervised), Entitle: []string{"secret.use:*"}},
		harness.Task{Scope: "secret.use:npm_token", Purpose: "publish"})
	var answers []string
	reveal := func(auth, secret string, want int) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodPost, s.PublicURL()+"/access/v1/secrets/reveal",
			strings.NewReader(`{"subject":{"type":"agent","id":"`+a.ID+`"},"secret":"`+secret+`"}`))
		req.Header.Set("Content-Type", "application/json")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		code, body := doRequest(t, req)
		if code != want {
			t.Fatalf("reveal %s = %d %s, want %d", secret, code, body, want)
		}
		answers = append(answers, body)
		return body
	}
	if body := reveal(tok, "npm_token", http.StatusForbidden); !strings.Contains(body, "no policy lets the agent see") {
		t.Fatalf("reveal under the defaults: %s", body)
	}
	reveal("", "npm_token", http.StatusUnauthorized)
	reveal(tok, "other", http.StatusForbidden) // outside the task's scope

	policy := `@id("ci-reads-the-npm-token")
@obligation("reveal")
permit (principal == Agent::"` + a.ID + `", action == Action::"secret.use", resource == Secret::"npm_token");`
	if code, body := sockDo(t, sock, "PUT", "/admin/v1/policies/reveal-npm", "text/plain", policy); code != http.StatusCreated && code != http.StatusOK {
		t.Fatalf("PUT the reveal policy: %d %s", code, body)
	}
	got := reveal(tok, "npm_token", http.StatusOK)
	if !strings.Contains(got, `"value":"`+value+`"`) {
		t.Fatalf("reveal with the policy: %s", got)
	}
	reveal(tok, "other", http.StatusForbidden) // still outside the task

	_, ledger := sockDo(t, sock, "GET", "/admin/v1/audit/export", "", "")
	for _, want := range []string{`"secret.reveal_refused"`, `"secret.revealed"`, `"value_hmac"`} {
		if !strings.Contains(ledger, want) {
			t.Errorf("the ledger lacks %s", want)
		}
	}
	if strings.Contains(ledger, value) {
		t.Error("the ledger holds the value")
	}
	for i, b := range answers[:3] {
		if strings.Contains(b, value) {
			t.Errorf("refusal %d shows the value: %s", i, b)
		}
	}
}

func doRequest(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
