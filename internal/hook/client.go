package hook

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
	"github.com/mandatehq/mandate/internal/token"
)

// Client limits.
const (
	// MaxTokenFile is the largest task token file read.
	MaxTokenFile = 64 << 10
	// maxAnswer bounds a server answer read.
	maxAnswer = 1 << 20
	// maxShownError bounds the server's error text shown on stderr.
	maxShownError = 512
)

// Client asks a mandate server, over its AuthZEN API, about the actions
// of a tool use, and reports outcomes, with the task token.
type Client struct {
	// Server is the server's public URL (a DPoP proof is bound to it).
	Server string
	// Token is the task token; DPoPKey, if set, the key it is bound to.
	Token   string
	DPoPKey crypto.Signer
	// Transport carries the requests (http.DefaultTransport if nil).
	Transport http.RoundTripper
}

// LoadToken reads the task token: from the file named by
// MANDATE_TASK_TOKEN_FILE (read on every call, so that a renewed token
// is used), else MANDATE_TASK_TOKEN.
func LoadToken(getenv func(string) string) (string, error) {
	if path := getenv("MANDATE_TASK_TOKEN_FILE"); path != "" {
		f, err := openTokenFile(path)
		if err != nil {
			return "", fmt.Errorf("task token file: %w", err)
		}
		defer f.Close()
		b, err := io.ReadAll(io.LimitReader(f, MaxTokenFile+1))
		if err != nil {
			return "", fmt.Errorf("task token file: %w", err)
		}
		if len(b) > MaxTokenFile {
			return "", fmt.Errorf("task token file %s is larger than %d bytes", path, MaxTokenFile)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
			return "", fmt.Errorf("task token file %s does not hold one token", path)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(getenv("MANDATE_TASK_TOKEN")); tok != "" {
		return tok, nil
	}
	return "", errors.New("no task token: set MANDATE_TASK_TOKEN_FILE or MANDATE_TASK_TOKEN (mandate run does)")
}

// openTokenFile opens the token file, retrying briefly while it is being
// replaced: on Windows an open that meets mandate run's rename of the
// renewed token over the file fails with a sharing violation.
func openTokenFile(path string) (*os.File, error) {
	for i := 0; ; i++ {
		f, err := os.Open(path)
		if err == nil || !sharingViolation(err) || i == 20 {
			return f, err
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
}

// TokenAgent returns the agent a task token names (its client_id). The
// token is not verified here — the server does that on every request —
// this only names the AuthZEN subject.
func TokenAgent(tok string) (string, error) {
	t, err := jwt.ParseSigned(tok, token.SignatureAlgorithms)
	if err != nil {
		return "", fmt.Errorf("the task token is not a JWT: %v", err)
	}
	var c struct {
		ClientID string `json:"client_id"`
	}
	if err := t.UnsafeClaimsWithoutVerification(&c); err != nil || c.ClientID == "" {
		return "", errors.New("the task token names no agent (client_id)")
	}
	return c.ClientID, nil
}

// Verdict is the server's decision on one action.
type Verdict struct {
	// Effect is allow, deny or approval_required.
	Effect string
	Reason string
	// ApprovalID is the approval request an approval_required opened
	// (the requestable denial's evaluation_id).
	ApprovalID string
}

// Decide asks about acts (at most httpapi.MaxEvaluations) in one batch
// with deny_on_first_deny semantics and returns the verdicts in order:
// fewer than len(acts) when it stopped at a deny. reqID, if valid, is
// sent as X-Request-ID.
func (c *Client) Decide(ctx context.Context, agent string, acts []Action, reqID string) ([]Verdict, error) {
	if len(acts) == 0 || len(acts) > httpapi.MaxEvaluations {
		return nil, fmt.Errorf("%d actions in one tool use: at most %d are decided", len(acts), httpapi.MaxEvaluations)
	}
	req := httpapi.AZEvaluations{
		AZEvaluation: httpapi.AZEvaluation{Subject: &httpapi.AZSubject{Type: "agent", ID: agent}},
		Options:      httpapi.AZOptions{EvaluationsSemantic: httpapi.SemanticDenyOnFirstDeny},
	}
	for _, a := range acts {
		ev := httpapi.AZEvaluation{
			Action:   &httpapi.AZAction{Name: a.Kind},
			Resource: &httpapi.AZResource{Type: azType(a.Kind), ID: a.Resource, Properties: httpapi.AZResourceProperty{Server: a.Server}},
		}
		if a.Command != "" || a.Destination != (policy.Destination{}) {
			ev.Context = &httpapi.AZContext{Command: a.Command, Destination: a.Destination}
		}
		req.Evaluations = append(req.Evaluations, ev)
	}
	var out struct {
		Evaluations []httpapi.AZResponse `json:"evaluations"`
	}
	if err := c.post(ctx, "/access/v1/evaluations", reqID, req, &out); err != nil {
		return nil, err
	}
	if len(out.Evaluations) == 0 || len(out.Evaluations) > len(acts) {
		return nil, fmt.Errorf("the server answered %d decisions for %d actions", len(out.Evaluations), len(acts))
	}
	vs := make([]Verdict, len(out.Evaluations))
	for i, r := range out.Evaluations {
		v, err := verdictOf(r)
		if err != nil {
			return nil, err
		}
		vs[i] = v
	}
	if len(vs) < len(acts) && vs[len(vs)-1].Effect != string(policy.Deny) {
		return nil, fmt.Errorf("the server stopped after %d of %d decisions without a deny", len(vs), len(acts))
	}
	return vs, nil
}

// verdictOf reads one AuthZEN decision; an answer that does not hold
// together is an error.
func verdictOf(r httpapi.AZResponse) (Verdict, error) {
	if r.Context == nil {
		return Verdict{}, errors.New("the server's decision has no context")
	}
	if e := r.Context.Error; e != nil {
		if r.Decision {
			return Verdict{}, errors.New("the server allowed an evaluation it reported as an error")
		}
		return Verdict{Effect: string(policy.Deny), Reason: e.Message}, nil
	}
	switch eff := r.Context.Decision; {
	case eff == string(policy.Allow) && r.Decision:
	case (eff == string(policy.Deny) || eff == string(policy.ApprovalRequired)) && !r.Decision:
	default:
		return Verdict{}, fmt.Errorf("the server's decision %v/%s does not hold together", r.Decision, resource.Quote(eff))
	}
	return Verdict{Effect: r.Context.Decision, Reason: r.Context.Reason, ApprovalID: r.Context.EvaluationID}, nil
}

// azType is the AuthZEN resource type of an action kind.
func azType(kind string) string { return strings.ToLower(policy.ResourceType(kind)) }

// Report records an outcome (httpapi.OutcomeRequest) in the ledger.
func (c *Client) Report(ctx context.Context, o httpapi.OutcomeRequest, reqID string) error {
	var out httpapi.OutcomeResponse
	if err := c.post(ctx, "/access/v1/outcomes", reqID, o, &out); err != nil {
		return err
	}
	if !out.Recorded {
		return errors.New("the server did not record the outcome")
	}
	return nil
}

// post sends body as JSON to the server's path with the task's
// credential and decodes a 200 answer into out.
func (c *Client) post(ctx context.Context, path, reqID string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	base := strings.TrimSuffix(c.Server, "/")
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+path, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("server URL: %v", err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if validRequestID(reqID) {
		hr.Header.Set("X-Request-ID", reqID)
	}
	hc := &http.Client{Transport: &mcpbridge.Transport{Base: c.Transport, Token: c.Token, DPoPKey: c.DPoPKey}}
	resp, err := hc.Do(hr)
	if err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("the server did not answer in time: %w", ctx.Err())
		}
		return fmt.Errorf("the server cannot be reached: %v", err)
	}
	defer resp.Body.Close()
	ans, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("reading the server's answer: %v", err)
	}
	if len(ans) > maxAnswer {
		return fmt.Errorf("the server's answer is larger than %d bytes", maxAnswer)
	}
	if resp.StatusCode != http.StatusOK {
		msg := strings.TrimSpace(string(ans))
		if len(msg) > maxShownError {
			msg = msg[:maxShownError]
		}
		return fmt.Errorf("the server answered %s: %s", resp.Status, resource.Quote(msg))
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("the server answered %s, not JSON", resource.Quote(ct))
	}
	if err := decodeOne(ans, out); err != nil {
		return fmt.Errorf("the server's answer does not decode: %v", err)
	}
	return nil
}

// validRequestID mirrors what the server accepts as X-Request-ID.
func validRequestID(id string) bool {
	if id == "" || len(id) > httpapi.MaxRequestIDLen {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}
