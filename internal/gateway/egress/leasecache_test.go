package egress_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/egress"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// plainInjectEnv is a proxy with a secrets broker and gh_token, delivered
// to a plain HTTP loopback upstream, and a keep-alive client of a task
// that may use it, whose requests carry its placeholder.
func plainInjectEnv(t *testing.T) (*env, *upstream, string, *http.Client) {
	t.Helper()
	up := newUpstream(t, false)
	e := newEnv(t, envOpts{allowPrivate: loopback, secrets: true, classifier: policy.ClassifierConfig{Risks: []policy.RiskRule{
		{Match: "secret.use:gh_token", Risk: policy.RiskRead}, {Match: "http.request:*", Risk: policy.RiskRead}}}})
	if _, _, err := e.broker.Put(context.Background(), "admin", secrets.PutRequest{Name: "gh_token", Value: []byte(ghValue),
		Deliver: []secrets.Target{{Host: up.addr()}}}); err != nil {
		t.Fatal(err)
	}
	tok := e.taskToken(t, "builder", identity.TierSupervised, "http.request:"+up.addr()+" secret.use:gh_token")
	pu := &url.URL{Scheme: "http", Host: e.proxy, User: url.UserPassword("agent", tok)}
	c := &http.Client{Transport: headerRT{&http.Transport{Proxy: http.ProxyURL(pu)}, "Authorization", "Bearer [secret:gh_token]"}}
	t.Cleanup(c.CloseIdleConnections)
	return e, up, tok, c
}

// send GETs the upstream through c and returns the status and the
// events the request recorded.
func send(t *testing.T, e *env, up *upstream, c *http.Client) (int, []audit.Event) {
	t.Helper()
	before := e.rec.len()
	resp, err := c.Get("http://" + up.addr() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	_ = body(resp)
	resp.Body.Close()
	return resp.StatusCode, e.waitOutcome(t, before)
}

// injectedLease returns the lease of the one secret.injected event of evs.
func injectedLease(t *testing.T, evs []audit.Event) string {
	t.Helper()
	inj := eventsOf(evs, egress.TypeSecretInjected)
	if len(inj) != 1 {
		t.Fatalf("%d secret.injected events, want 1: %+v", len(inj), evs)
	}
	return inj[0].Details["lease"]
}

// A request reuses the task's live lease; every change the broker makes
// to the secret or the lease is seen by the very next request.
func TestLeaseReuseSeesEveryChange(t *testing.T) {
	t.Parallel()
	e, up, tok, c := plainInjectEnv(t)
	ctx := context.Background()
	taskID := task.ID(e.claims(t, tok).TaskID)

	status, evs := send(t, e, up, c)
	if status != 200 {
		t.Fatalf("first request: status %d", status)
	}
	first := injectedLease(t, evs)
	status, evs = send(t, e, up, c)
	if got := injectedLease(t, evs); status != 200 || got != first {
		t.Fatalf("second request: status %d, lease %s; want 200 with the same lease %s", status, got, first)
	}
	if n := len(eventsOf(evs, secrets.TypeLeaseIssued)); n != 0 {
		t.Errorf("the second request issued %d leases, want the live one reused", n)
	}
	// Every request is still decided and recorded.
	oneDecision(t, evs, audit.DecisionAllow)

	// Rotated: the next request carries the new value.
	const rotated = "ghp_ROTATEDvalue-0123456789"
	if _, err := e.broker.Rotate(ctx, "admin", "gh_token", []byte(rotated)); err != nil {
		t.Fatal(err)
	}
	if status, _ = send(t, e, up, c); status != 200 || up.lastRequest().Header.Get("Authorization") != "Bearer "+rotated {
		t.Fatalf("after rotation: status %d, upstream saw %q; want the rotated value", status, up.lastRequest().Header.Get("Authorization"))
	}

	// The task's leases revoked (the task still active): the next request
	// leases anew, through a secret.use decision.
	if _, _, err := e.broker.RevokeTask(ctx, taskID, "test"); err != nil {
		t.Fatal(err)
	}
	status, evs = send(t, e, up, c)
	if got := injectedLease(t, evs); status != 200 || got == first {
		t.Fatalf("after the lease's revocation: status %d, lease %s; want 200 with a new lease", status, got)
	}
	if n := len(eventsOf(evs, secrets.TypeLeaseIssued)); n != 1 {
		t.Errorf("after the lease's revocation: %d leases issued, want 1", n)
	}

	// Removed: the next request is refused, nothing injected.
	if err := e.broker.Remove(ctx, "admin", "gh_token"); err != nil {
		t.Fatal(err)
	}
	status, evs = send(t, e, up, c)
	if status != http.StatusForbidden || len(eventsOf(evs, egress.TypePlaceholderRefused)) != 1 || len(eventsOf(evs, egress.TypeSecretInjected)) != 0 {
		t.Fatalf("after removal: status %d, events %+v; want 403 and a refused placeholder", status, evs)
	}
}

// A task that stops (as the lifecycle stops it: revocation state, then
// its leases) is refused on the very next request of a kept-alive
// connection that had just injected its secret, and its token as well.
func TestStoppedTaskRefusedOnNextRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		stop func(e *env, tok string)
	}{
		{"task revoked", func(e *env, tok string) {
			id := task.ID(e.claims(t, tok).TaskID)
			e.auth.Tokens.Revocations().RevokeTasks(id)
			e.broker.RevokeTaskLeases(context.Background(), []task.ID{id})
		}},
		{"task revoked, leases not yet", func(e *env, tok string) {
			e.auth.Tokens.Revocations().RevokeTasks(task.ID(e.claims(t, tok).TaskID))
		}},
		{"token revoked", func(e *env, tok string) {
			if err := e.auth.Tokens.Revoke(context.Background(), token.Caller{Admin: true}, tok); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, up, tok, c := plainInjectEnv(t)
			for range 2 {
				if status, _ := send(t, e, up, c); status != 200 {
					t.Fatalf("before: status %d", status)
				}
			}
			last := up.lastRequest()
			tc.stop(e, tok)
			before := e.rec.len()
			resp, err := c.Get("http://" + up.addr() + "/x")
			if err != nil {
				t.Fatal(err)
			}
			_ = body(resp)
			if resp.StatusCode != http.StatusProxyAuthRequired {
				t.Fatalf("after: status %d, want 407", resp.StatusCode)
			}
			evs := e.rec.since(before)
			oneDecision(t, evs, audit.DecisionDeny)
			if n := len(eventsOf(evs, egress.TypeSecretInjected)); n != 0 {
				t.Errorf("%d injections after the stop", n)
			}
			if up.lastRequest() != last {
				t.Error("the upstream got a request after the stop")
			}
		})
	}
}
