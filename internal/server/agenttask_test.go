package server

import (
	"net/http"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
)

// agentTask registers an agent over s's admin socket (owner
// alice@example.com, escalation oncall@example.com unless reg says
// otherwise) and starts a task for it over OAuth as an agent does — a
// client_credentials grant with private_key_jwt, then a token exchange —
// on behalf of alice@example.com unless task says otherwise. It returns the
// agent and the task token.
func agentTask(t *testing.T, s *Server, reg harness.Registration, task harness.Task) (*harness.Agent, string) {
	t.Helper()
	if reg.Owner == "" {
		reg.Owner = "alice@example.com"
	}
	if reg.Escalation == "" {
		reg.Escalation = "oncall@example.com"
	}
	if task.OnBehalfOf == "" {
		task.OnBehalfOf = "alice@example.com"
	}
	a, err := harness.RegisterAgent(t.Context(), harness.AdminClient(s.SocketPath()), reg)
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	tokenURL, err := harness.TokenEndpoint(t.Context(), hc, s.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	at, err := a.Token(t.Context(), hc, tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := harness.StartTask(t.Context(), hc, tokenURL, at, task)
	if err != nil {
		t.Fatal(err)
	}
	return a, tok
}
