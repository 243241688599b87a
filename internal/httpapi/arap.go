package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/token"
)

// The OpenID AuthZEN Access Request and Approval Profile (ARAP, Draft 1)
// and its Callback Notifications profile (docs/approvals.md#arap):
//
//   - an approval_required evaluation is a requestable denial: decision
//     false, context.evaluation_id (the approval request's id: mandate is
//     PDP and Access Request Service on shared state, the by-reference
//     binding) and context.access_request {endpoint, expires_at,
//     template};
//   - POST /access/v1/requests submits an access request for it and
//     returns the task handle (the request: id, status, status_endpoint,
//     expires_at), 202 while pending, 201 once decided;
//   - GET /access/v1/requests/{id} is the task status; an approved task's
//     result is {mode: reevaluate, approval: {id, approved_at,
//     approved_until}};
//   - re-evaluation is a new evaluation of the same subject, action,
//     resource and context.arguments: the pipeline finds the approval by
//     that binding itself (context.approval is accepted and never
//     trusted: it is not an input).
//
// Submissions come from enforcement points (their point token) or from
// the agent itself (its task token, for its own task); neither can
// approve anything: deciding is the admin API's, by a person.

// ARAP paths, capability and error types.
const (
	arapRequests = "/access/v1/requests"
	// CapabilityAccessRequest is ARAP's PDP metadata capability.
	CapabilityAccessRequest = "urn:openid:authzen:capability:access-request"
	arapErrorPrefix         = "urn:openid:authzen:access-request:error:"
	// MaxARAPBody bounds an access request submission.
	MaxARAPBody = MaxAuthZENBody
)

// ARAPRequestable is context.access_request of a requestable denial.
type ARAPRequestable struct {
	Endpoint  string `json:"endpoint"`
	Template  string `json:"template,omitempty"`
	ExpiresAt string `json:"expires_at"`
}

// requestable makes an approval_required response a requestable denial.
func (h *AuthZEN) requestable(ctx context.Context, resp *AZResponse, d access.Decision) {
	if h.cfg.Approvals == nil || d.Effect != policy.ApprovalRequired || d.ApprovalID == "" {
		return
	}
	r, err := h.cfg.Approvals.Get(ctx, approval.ID(d.ApprovalID))
	if err != nil || r.Status.Terminal() {
		return // not requestable: the PEP must treat it as a plain denial
	}
	resp.Context.EvaluationID = d.ApprovalID
	resp.Context.EvaluatedAt = time.Now().UTC().Format(time.RFC3339)
	resp.Context.AccessRequest = &ARAPRequestable{
		Endpoint: h.cfg.PublicURL + arapRequests, Template: strings.Join(r.Approvals, ","),
		ExpiresAt: r.ExpiresAt.Format(time.RFC3339),
	}
}

// ARAPSubmission is an access request submission. Its top-level members
// and denial are strict; context, requested_access and client are open
// objects (mandate reads context.arguments).
type ARAPSubmission struct {
	Subject         *AZSubject      `json:"subject"`
	Resource        *AZResource     `json:"resource"`
	Action          *AZAction       `json:"action"`
	Context         *AZContext      `json:"context,omitempty"`
	Denial          *ARAPDenial     `json:"denial"`
	RequestedAccess json.RawMessage `json:"requested_access,omitempty"`
	Client          json.RawMessage `json:"client,omitempty"`
	Callback        *ARAPCallback   `json:"callback,omitempty"`
}

// ARAPDenial binds a submission to the denied evaluation.
type ARAPDenial struct {
	EvaluationID string `json:"evaluation_id"`
	EvaluatedAt  string `json:"evaluated_at,omitempty"`
	ExpiresAt    string `json:"expires_at"`
	Reason       string `json:"reason,omitempty"`
	BindingToken string `json:"binding_token,omitempty"`
	Template     string `json:"template,omitempty"`
}

// ARAPCallback is the Callback Notifications profile's submission member.
type ARAPCallback struct {
	Endpoint string   `json:"endpoint"`
	State    string   `json:"state,omitempty"`
	Events   []string `json:"events,omitempty"`
}

// ARAPTask is a task handle.
type ARAPTask struct {
	ID             string `json:"id"`
	Status         string `json:"status"`
	StatusEndpoint string `json:"status_endpoint"`
	ExpiresAt      string `json:"expires_at,omitempty"`
}

// ARAPResult is a completed task's result.
type ARAPResult struct {
	Mode     string        `json:"mode"`
	Approval *ARAPApproval `json:"approval,omitempty"`
}

// ARAPApproval identifies the approval that completed a task.
type ARAPApproval struct {
	ID            string `json:"id"`
	ApprovedAt    string `json:"approved_at,omitempty"`
	ApprovedUntil string `json:"approved_until"`
}

// ARAPResponse is the submission and status response.
type ARAPResponse struct {
	Task   ARAPTask    `json:"task"`
	Result *ARAPResult `json:"result,omitempty"`
}

// arapError is an ARAP error: its code is the URN's last part.
type arapError struct {
	status int
	code   string
	detail string
}

func (e *arapError) Error() string { return e.code + ": " + e.detail }

func arapErr(status int, code, format string, args ...any) error {
	return &arapError{status: status, code: code, detail: fmt.Sprintf(format, args...)}
}

func (h *AuthZEN) registerARAP(mux *http.ServeMux) {
	mux.HandleFunc("POST "+arapRequests, h.submit)
	mux.HandleFunc("GET "+arapRequests+"/{id}", h.status)
}

// ParseARAPSubmission strictly decodes a submission and checks its shape.
func ParseARAPSubmission(body []byte) (*ARAPSubmission, error) {
	var sub ARAPSubmission
	if err := DecodeAuthZEN(body, &sub); err != nil {
		return nil, err
	}
	switch {
	case sub.Denial == nil || sub.Denial.EvaluationID == "" || sub.Denial.ExpiresAt == "":
		return nil, arapErr(http.StatusBadRequest, "invalid_denial_binding", "denial.evaluation_id and denial.expires_at are required (mandate binds by reference)")
	case sub.Subject == nil || sub.Action == nil || sub.Resource == nil:
		return nil, arapErr(http.StatusBadRequest, "invalid_request", "subject, action and resource are required")
	}
	if _, err := time.Parse(time.RFC3339, sub.Denial.ExpiresAt); err != nil {
		return nil, arapErr(http.StatusBadRequest, "invalid_denial_binding", "denial.expires_at is not an RFC 3339 time")
	}
	if _, err := approval.ParseID(sub.Denial.EvaluationID); err != nil {
		return nil, arapErr(http.StatusBadRequest, "invalid_denial_binding", "denial.evaluation_id is not one of this PDP's")
	}
	if cb := sub.Callback; cb != nil {
		u, err := url.Parse(cb.Endpoint)
		if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" || u.User != nil || len(cb.State) > 1024 {
			return nil, arapErr(http.StatusBadRequest, "invalid_request", "callback.endpoint must be an absolute http(s) URL; callback.state at most 1024 bytes")
		}
	}
	return &sub, nil
}

// arapCaller authenticates an ARAP request: an enforcement point, or an
// agent's task token (for its own task only).
func (h *AuthZEN) arapCaller(r *http.Request) (caller, error) {
	c, err := h.authenticate(r)
	if err != nil || c.point != "" {
		return c, err
	}
	subj, err := h.cfg.Pipeline.Authenticate(r.Context(), c.cred, access.Action{Point: authzenPoint})
	if err != nil {
		return c, err
	}
	c.subject = &subj
	return c, nil
}

// mayView reports whether c may see request r: a point may, an agent only
// its own task's.
func mayView(c caller, r *approval.Request) bool {
	return c.point != "" || c.subject != nil && c.subject.Task == r.Task && c.subject.Agent == r.Agent
}

func (h *AuthZEN) submit(w http.ResponseWriter, r *http.Request) {
	c, err := h.arapCaller(r)
	if err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	body, err := readBody(w, r, MaxARAPBody)
	if err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	sub, err := ParseARAPSubmission(body)
	if err != nil {
		h.writeARAPError(w, r, c.pres, err)
		return
	}
	req, err := h.bind(r.Context(), c, sub)
	if err != nil {
		h.writeARAPError(w, r, c.pres, err)
		return
	}
	if sub.Callback != nil && !req.Status.Terminal() {
		u, _ := url.Parse(sub.Callback.Endpoint)
		if !slices.Contains(h.cfg.CallbackHosts, u.Host) {
			h.writeARAPError(w, r, c.pres, arapErr(http.StatusBadRequest, "invalid_request", "callback.endpoint's host %s is not one this server sends callbacks to (approvals.callback_hosts)", u.Host))
			return
		}
		if req, err = h.cfg.Approvals.SetCallback(r.Context(), req.ID, &approval.Callback{Endpoint: sub.Callback.Endpoint, State: sub.Callback.State}); err != nil {
			h.writeARAPError(w, r, c.pres, err)
			return
		}
	}
	resp := h.taskResponse(req)
	w.Header().Set("Location", resp.Task.StatusEndpoint)
	status := http.StatusAccepted
	if req.Status.Terminal() {
		status = http.StatusCreated
	}
	writeJSON(w, status, resp)
}

// bind resolves the submission's denial to its request and checks that
// the submission is that request's: same agent, task, action, resource
// and arguments, and still fresh.
func (h *AuthZEN) bind(ctx context.Context, c caller, sub *ARAPSubmission) (*approval.Request, error) {
	req, err := h.cfg.Approvals.Get(ctx, approval.ID(sub.Denial.EvaluationID))
	if err != nil || !mayView(c, req) {
		if err != nil && !errors.Is(err, approval.ErrNotFound) {
			return nil, err
		}
		return nil, arapErr(http.StatusBadRequest, "invalid_denial_binding", "no denied evaluation %s for this caller", sub.Denial.EvaluationID)
	}
	var args json.RawMessage
	if sub.Context != nil {
		args = sub.Context.Arguments
	}
	digest, err := h.cfg.Approvals.Digest(args)
	taskID := string(req.Task)
	if c.point != "" {
		taskID = sub.Subject.Properties.Task
	}
	exp, _ := time.Parse(time.RFC3339, sub.Denial.ExpiresAt)
	switch {
	case err != nil || digest != req.ArgsDigest, sub.Subject.Type != "agent", sub.Subject.ID != req.Agent, taskID != string(req.Task),
		sub.Action.Name != req.Action, sub.Resource.ID != req.Resource, !exp.Equal(req.ExpiresAt.Truncate(time.Second)):
		return nil, arapErr(http.StatusBadRequest, "invalid_denial_binding", "the submission is not the denied evaluation %s (subject, task, action, resource, context.arguments and expires_at must be the same)", req.ID)
	case req.Status == approval.StatusExpired || !time.Now().Before(req.ExpiresAt) && req.Status == approval.StatusPending:
		return nil, arapErr(http.StatusBadRequest, "expired_denial", "the requestable denial expired at %s", req.ExpiresAt.Format(time.RFC3339))
	}
	return req, nil
}

func (h *AuthZEN) status(w http.ResponseWriter, r *http.Request) {
	c, err := h.arapCaller(r)
	if err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	id, err := approval.ParseID(r.PathValue("id"))
	if err != nil {
		h.writeARAPError(w, r, c.pres, arapErr(http.StatusNotFound, "unknown_task", "no such task"))
		return
	}
	req, err := h.cfg.Approvals.Get(r.Context(), id)
	if err != nil || !mayView(c, req) {
		if err != nil && !errors.Is(err, approval.ErrNotFound) {
			h.writeAZError(w, r, c.pres, err)
			return
		}
		// Another task's handle is as unknown as a made-up one.
		h.writeARAPError(w, r, c.pres, arapErr(http.StatusNotFound, "unknown_task", "no such task"))
		return
	}
	writeJSON(w, http.StatusOK, h.taskResponse(req))
}

// taskResponse is the ARAP view of a request: pending, approved, denied,
// expired and cancelled are ARAP's statuses too.
func (h *AuthZEN) taskResponse(req *approval.Request) ARAPResponse {
	resp := ARAPResponse{Task: ARAPTask{
		ID: string(req.ID), Status: string(req.Status), StatusEndpoint: h.cfg.PublicURL + arapRequests + "/" + string(req.ID),
		ExpiresAt: req.ExpiresAt.Format(time.RFC3339),
	}}
	if req.Status == approval.StatusApproved {
		resp.Result = &ARAPResult{Mode: "reevaluate", Approval: &ARAPApproval{
			ID: string(req.ID), ApprovedAt: req.DecidedAt.Format(time.RFC3339), ApprovedUntil: req.ApprovedUntil.Format(time.RFC3339),
		}}
	}
	return resp
}

// writeARAPError writes an ARAP error as problem+json whose type is the
// profile's error URN; other errors go the AuthZEN way.
func (h *AuthZEN) writeARAPError(w http.ResponseWriter, r *http.Request, pres token.Presentation, err error) {
	var ae *arapError
	if !errors.As(err, &ae) {
		switch {
		case errors.Is(err, approval.ErrDecided):
			ae = &arapError{status: http.StatusConflict, code: "invalid_request", detail: err.Error()}
		case errors.Is(err, errBadRequest), errors.Is(err, errTooLarge):
			status, detail := errorStatus(err)
			ae = &arapError{status: status, code: "invalid_request", detail: detail}
		default:
			h.writeAZError(w, r, pres, err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(ae.status)
	_ = json.NewEncoder(w).Encode(Problem{Type: arapErrorPrefix + ae.code, Title: http.StatusText(ae.status), Status: ae.status, Detail: ae.detail})
}

// readBody reads a JSON body of at most limit bytes.
func readBody(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return nil, fmt.Errorf("%w: Content-Type must be application/json", errBadRequest)
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, fmt.Errorf("%w: limit is %d bytes", errTooLarge, limit)
		}
		return nil, fmt.Errorf("%w: reading the body: %v", errBadRequest, err)
	}
	return b, nil
}
