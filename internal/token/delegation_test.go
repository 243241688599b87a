package token

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/task"
)

// Every delegation is asked of the decider, with the parent task, its
// agent, the presented token's (possibly narrowed) scope and the delegate;
// a refusal creates nothing.
func TestDelegationIsAskedOfTheDecider(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	parent := f.mustToken(startReq(f.agentToken(agentA), func(r *TokenRequest) { r.Scope = "file.read:/repo/** task.delegate:" + agentB.String() })).AccessToken
	narrowed := f.mustToken(exchange(parent, func(r *TokenRequest) { r.Scope = "file.read:/repo/docs/**" })).AccessToken
	pc := f.claimsOf(parent)

	f.mustToken(delegateReq(parent, f.agentToken(agentB), func(r *TokenRequest) { r.Scope = "file.read:/repo/**" }))
	asked := f.deleg.requests()
	want := DelegationRequest{Task: task.ID(pc.TaskID), Agent: agentA, TokenScope: pc.Scope, Delegate: agentB}
	if len(asked) != 1 || asked[0] != want {
		t.Fatalf("decider asked %+v, want %+v", asked, want)
	}

	tasksBefore := len(f.st.tasks)
	f.rec.take()
	f.deleg.set(&DelegationVerdict{Reason: "an agent may not delegate to an agent of a higher tier"}, nil)
	_, err := f.srv.Token(ctx, delegateReq(narrowed, f.agentToken(agentB), nil))
	if oauthCode(err) != CodeInvalidGrant || !strings.Contains(err.Error(), "higher tier") {
		t.Errorf("a refused delegation = %v, want invalid_grant with the reason", err)
	}
	if got := f.deleg.requests(); got[len(got)-1].TokenScope != "file.read:/repo/docs/**" {
		t.Errorf("decider saw token scope %q, want the narrowed token's", got[len(got)-1].TokenScope)
	}
	if len(f.st.tasks) != tasksBefore {
		t.Error("a refused delegation created a task")
	}
	if evs := eventTypes(f.rec.take()); slices.Contains(evs, audit.TypeTaskDelegated) {
		t.Errorf("a refused delegation recorded %v", evs)
	}

	f.deleg.set(nil, errors.New("ledger down"))
	if _, err := f.srv.Token(ctx, delegateReq(parent, f.agentToken(agentB), nil)); oauthCode(err) != CodeTemporarilyUnavailable {
		t.Errorf("a delegation that could not be decided = %v, want temporarily_unavailable", err)
	}
}

// A server nobody gave a decider to delegates nothing.
func TestNoDeciderNoDelegation(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	srv, err := NewServer(context.Background(), Config{Issuer: testIssuer, TrustDomain: testTD, Identities: f.st, Tasks: f.st, Entitlements: f.st, Tokens: f.st, Audit: f.rec, Sealer: sealtest.Keyring(), Now: f.clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	parent := f.mustToken(startReq(f.agentToken(agentA), nil)).AccessToken
	if _, err := srv.Token(context.Background(), delegateReq(parent, f.agentToken(agentB), nil)); oauthCode(err) != CodeTemporarilyUnavailable {
		t.Errorf("delegating without a decider = %v, want temporarily_unavailable", err)
	}
}
