package token

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// TestEndTask: an agent ends its own task with one of its task tokens;
// every token of the task and of the tasks delegated from it is refused
// at once, the stops are recorded, and every way to end someone else's
// task, or to end a task with a token that proves nothing, is refused.
func TestEndTask(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	ctx := context.Background()
	tokA, tokB := f.agentToken(agentA), f.agentToken(agentB)
	parent := f.mustToken(startReq(tokA, nil)).AccessToken
	child := f.mustToken(delegateReq(parent, tokB, nil)).AccessToken
	renewed := f.mustToken(exchange(parent, nil)).AccessToken
	parentID := task.ID(f.claimsOf(parent).TaskID)

	for _, tc := range []struct {
		name   string
		caller Caller
		token  string
		reason string
		code   string
	}{
		{"no caller", Caller{}, parent, "", CodeInvalidClient},
		{"another agent's task", Caller{Agent: agentB}, parent, "", CodeUnauthorizedClient},
		{"the delegate ends its parent with the parent's token", Caller{Agent: agentB}, renewed, "", CodeUnauthorizedClient},
		{"an agent token", Caller{Agent: agentA}, tokA, "", CodeInvalidRequest},
		{"garbage", Caller{Agent: agentA}, "garbage", "", CodeInvalidRequest},
		{"a forged token", Caller{Agent: agentA}, forge(parent), "", CodeInvalidRequest},
		{"a control character in the reason", Caller{Agent: agentA}, parent, "done\nfake line", CodeInvalidRequest},
		{"an oversize reason", Caller{Agent: agentA}, parent, strings.Repeat("x", MaxEndReasonLen+1), CodeInvalidRequest},
	} {
		if _, err := f.srv.EndTask(ctx, tc.caller, tc.token, tc.reason); oauthCode(err) != tc.code {
			t.Errorf("%s: EndTask = %v, want %s", tc.name, err, tc.code)
		}
	}
	if got, _ := f.st.GetTask(ctx, parentID); got.Status != task.StatusActive {
		t.Fatalf("a refused EndTask changed the task: %s", got.Status)
	}
	f.rec.take()

	// The older of two tokens of the task ends it, so do the newer and the
	// delegated one's: one is enough.
	ended, err := f.srv.EndTask(ctx, Caller{Agent: agentA}, parent, "mandate run: the command exited with status 3")
	if err != nil {
		t.Fatalf("EndTask(own task) = %v", err)
	}
	childID := task.ID(f.claimsOf(child).TaskID)
	if ended.TaskID != string(parentID) || ended.Status != task.StatusEnded || !slices.Equal(ended.Stopped, []task.ID{parentID, childID}) {
		t.Errorf("EndTask = %+v, want the task and its child ended", ended)
	}
	evs := f.rec.take()
	if got := eventTypes(evs); !slices.Equal(got, []audit.Type{audit.TypeTaskEnded, audit.TypeTaskEnded}) {
		t.Fatalf("events = %v, want two task.ended", got)
	}
	if ev := evs[0]; ev.Actor != agentA.String() || ev.Task != string(parentID) || ev.Reason != "mandate run: the command exited with status 3" || ev.OnBehalfOf != "alice@example.org" {
		t.Errorf("task.ended = %+v", ev)
	}
	if ev := evs[1]; ev.Task != string(childID) || ev.Details["cascade_from"] != string(parentID) {
		t.Errorf("cascaded task.ended = %+v", ev)
	}
	if got, _ := f.st.GetTask(ctx, parentID); got.Status != task.StatusEnded || got.StatusReason != "mandate run: the command exited with status 3" {
		t.Errorf("stored task = %s %q", got.Status, got.StatusReason)
	}

	for name, tok := range map[string]string{"the token used": parent, "the renewed one": renewed, "the child's": child} {
		if in := f.srv.Introspect(ctx, Caller{Admin: true}, tok); in.Active {
			t.Errorf("%s is still active after the task ended", name)
		}
	}
	if _, err := f.srv.Token(ctx, exchange(renewed, nil)); oauthCode(err) != CodeInvalidGrant {
		t.Errorf("renewing a token of an ended task = %v, want invalid_grant", err)
	}
	f.rec.take()

	// Again (a retry after a lost answer): not an error, the status as it is.
	again, err := f.srv.EndTask(ctx, Caller{Agent: agentA}, renewed, "")
	if err != nil || again.Status != task.StatusEnded || len(again.Stopped) != 0 {
		t.Errorf("EndTask of an ended task = %+v, %v; want its status and nothing stopped", again, err)
	}
	if evs := f.rec.take(); len(evs) != 0 {
		t.Errorf("ending an ended task recorded %v", eventTypes(evs))
	}
}

// TestEndTaskExpiredToken: a token past its expiry cannot end a task (it
// proves nothing any more) — and the caller hears so.
func TestEndTaskExpiredToken(t *testing.T) {
	t.Parallel()
	f := newSFix(t)
	tok := f.mustToken(startReq(f.agentToken(agentA), nil)).AccessToken
	f.clock.Advance(time.Hour)
	if _, err := f.srv.EndTask(context.Background(), Caller{Agent: agentA}, tok, ""); oauthCode(err) != CodeInvalidRequest {
		t.Errorf("EndTask with an expired token = %v, want invalid_request", err)
	}
}

// forge changes one character of a JWT's signature.
func forge(tok string) string {
	// A character inside the signature: the last one carries padding
	// bits too, which a decoder may ignore ('A' and 'B' can decode alike).
	b := []byte(tok)
	i := len(b) - 10
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}
