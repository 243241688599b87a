package hook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
)

// What a hook does with a tool use that needs a person's approval
// (Config.OnApproval).
const (
	// OnApprovalHold waits, within the hook's deadline, for the approval
	// request the decision opened to be decided (by the agent's owner or
	// an approver: mandate approval approve, the approval page), then
	// decides the tool use again: mandate stays the decider. Not decided
	// in time, denied or expired: the call is blocked, with the reason.
	OnApprovalHold = "hold"
	// OnApprovalAsk answers ask: the coding agent's own prompt decides,
	// and mandate records only its own decision (approval_required).
	OnApprovalAsk = "ask"
)

// pollEvery is how often a held tool use asks whether its approval was
// decided; answerMargin is the time kept, before the deadline, to answer.
const (
	pollEvery    = 500 * time.Millisecond
	answerMargin = 500 * time.Millisecond
)

// hold waits for the approvals the verdicts vs wait on and decides acts
// again once every one is approved; it returns the verdicts to answer
// with. A request denied, expired or cancelled, or not decided before the
// deadline, is a deny verdict saying so.
func (c *Client) hold(ctx context.Context, agent string, acts []Action, vs []Verdict, reqID string) ([]Verdict, error) {
	wait := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		wait, cancel = context.WithDeadline(ctx, dl.Add(-answerMargin))
		defer cancel()
	}
	held := false
	for i, v := range vs {
		if v.Effect != string(policy.ApprovalRequired) {
			continue
		}
		if v.ApprovalID == "" {
			vs[i] = Verdict{Effect: string(policy.Deny), Reason: v.Reason + " (no approval request could be opened for it)"}
			continue
		}
		status, err := c.awaitApproval(wait, v.ApprovalID)
		switch {
		case err != nil && wait.Err() != nil && ctx.Err() == nil:
			vs[i] = Verdict{Effect: string(policy.Deny), Reason: fmt.Sprintf("%s; approval %s was not decided in time: once it is approved (mandate approval approve %s), make the call again", v.Reason, v.ApprovalID, v.ApprovalID)}
		case err != nil:
			return nil, err
		case status != "approved":
			vs[i] = Verdict{Effect: string(policy.Deny), Reason: fmt.Sprintf("approval %s is %s", v.ApprovalID, status)}
		default:
			held = true
		}
	}
	for _, v := range vs {
		if v.Effect == string(policy.Deny) || !held {
			return vs, nil
		}
	}
	// Every approval is in: the server decides again, and its answer stands.
	again, err := c.Decide(ctx, agent, acts, reqID)
	if err != nil {
		return nil, err
	}
	for i, v := range again {
		if v.Effect == string(policy.ApprovalRequired) {
			again[i] = Verdict{Effect: string(policy.Deny), Reason: v.Reason + " (still needs approval after the approval: it was spent, or the policy changed)"}
		}
	}
	return again, nil
}

// awaitApproval polls the ARAP task status of approval id until it is no
// longer pending, and returns its status.
func (c *Client) awaitApproval(ctx context.Context, id string) (string, error) {
	t := time.NewTicker(pollEvery)
	defer t.Stop()
	for {
		var task httpapi.ARAPResponse
		if err := c.get(ctx, "/access/v1/requests/"+id, &task); err != nil {
			return "", err
		}
		if task.Task.ID != id {
			return "", fmt.Errorf("the server answered the status of %q for approval %q", task.Task.ID, id)
		}
		if task.Task.Status != "pending" {
			return task.Task.Status, nil
		}
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

// get fetches the server's path with the task's credential and decodes a
// 200 JSON answer into out.
func (c *Client) get(ctx context.Context, path string, out any) error {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(c.Server, "/")+path, nil)
	if err != nil {
		return fmt.Errorf("server URL: %v", err)
	}
	hc := &http.Client{Transport: &mcpbridge.Transport{Base: c.Transport, Token: c.Token, DPoPKey: c.DPoPKey}}
	resp, err := hc.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("the server cannot be reached: %v", err)
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil || len(ans) > maxAnswer {
		return errors.New("the server's answer is unreadable or too large")
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the server answered %s for the approval's status", resp.Status)
	}
	if err := json.Unmarshal(ans, out); err != nil {
		return fmt.Errorf("the server's answer does not decode: %v", err)
	}
	return nil
}
