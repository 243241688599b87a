package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// AuthZEN limits.
const (
	// MaxAuthZENBody is the largest AuthZEN request body accepted.
	MaxAuthZENBody = 256 << 10
	// MaxEvaluations bounds the evaluations of one batch request.
	MaxEvaluations = 64
	// maxJSONDepth bounds the nesting of an AuthZEN request.
	maxJSONDepth = 16
	// MaxRequestIDLen bounds X-Request-ID; the ledger keeps request IDs
	// of up to audit.MaxRequestIDLen bytes, the same.
	MaxRequestIDLen = audit.MaxRequestIDLen
)

// AuthZEN evaluation semantics (options.evaluations_semantic).
const (
	SemanticExecuteAll          = "execute_all"
	SemanticDenyOnFirstDeny     = "deny_on_first_deny"
	SemanticPermitOnFirstPermit = "permit_on_first_permit"
)

// authzenPoint is the enforcement point name of AuthZEN decisions.
const authzenPoint = "authzen"

// errForbidden marks an authenticated caller asking for what it may not.
var errForbidden = errors.New("forbidden")

// Decider is the decision pipeline (access.Pipeline).
type Decider interface {
	Authenticate(ctx context.Context, cred access.Credential, act access.Action) (access.Subject, error)
	DecideAs(ctx context.Context, subj access.Subject, act access.Action) (access.Decision, error)
	DecideFor(ctx context.Context, taskID task.ID, agent string, act access.Action) (access.Decision, error)
	RefuseCredential(ctx context.Context, act access.Action, cause error) error
}

// AuthZENConfig configures the AuthZEN handler.
type AuthZENConfig struct {
	Pipeline Decider
	// PublicURL is the server's public base URL: the PDP identifier and
	// the base of the endpoints (and of the DPoP htu).
	PublicURL string
	// PointAuth reports whether r carries an enforcement-point credential
	// and names the point. Nil means no enforcement points: only task
	// tokens are accepted.
	PointAuth func(r *http.Request) (point string, ok bool)
	// Approvals, if set, serves the Access Request and Approval Profile
	// (arap.go): approval_required decisions are requestable denials.
	Approvals *approval.Service
	// CallbackHosts are the host:port values ARAP callbacks may go to.
	CallbackHosts []string
	Logger        *slog.Logger
}

// AuthZEN serves the OpenID AuthZEN Authorization API 1.0 (docs/authzen.md):
// POST /access/v1/evaluation, POST /access/v1/evaluations and
// GET /.well-known/authzen-configuration.
type AuthZEN struct {
	cfg AuthZENConfig
	log *slog.Logger
}

// NewAuthZEN returns the AuthZEN handler.
func NewAuthZEN(cfg AuthZENConfig) *AuthZEN {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	return &AuthZEN{cfg: cfg, log: log}
}

// Register mounts the endpoints on mux.
func (h *AuthZEN) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET /.well-known/authzen-configuration", h.metadata)
	mux.HandleFunc("POST /access/v1/evaluation", h.evaluation)
	mux.HandleFunc("POST /access/v1/evaluations", h.evaluations)
	if h.cfg.Approvals != nil {
		h.registerARAP(mux)
	}
}

// AuthZENMetadata is the PDP metadata document.
type AuthZENMetadata struct {
	PolicyDecisionPoint       string `json:"policy_decision_point"`
	AccessEvaluationEndpoint  string `json:"access_evaluation_endpoint"`
	AccessEvaluationsEndpoint string `json:"access_evaluations_endpoint"`
	// ARAP (arap.go), when approvals are served.
	AccessRequestEndpoint string   `json:"access_request_endpoint,omitempty"`
	Capabilities          []string `json:"capabilities,omitempty"`
}

func (h *AuthZEN) metadata(w http.ResponseWriter, r *http.Request) {
	md := AuthZENMetadata{
		PolicyDecisionPoint:       h.cfg.PublicURL,
		AccessEvaluationEndpoint:  h.cfg.PublicURL + "/access/v1/evaluation",
		AccessEvaluationsEndpoint: h.cfg.PublicURL + "/access/v1/evaluations",
	}
	if h.cfg.Approvals != nil {
		md.AccessRequestEndpoint, md.Capabilities = h.cfg.PublicURL+arapRequests, []string{CapabilityAccessRequest}
	}
	writeJSON(w, http.StatusOK, md)
}

// AuthZEN information model. Properties and context are open objects in
// the standard; mandate reads the members it documents and ignores others.

// AZSubject is an AuthZEN subject: {"type": "agent", "id": <SPIFFE ID>}.
type AZSubject struct {
	Type       string            `json:"type"`
	ID         string            `json:"id"`
	Properties AZSubjectProperty `json:"properties,omitzero"`
}

// AZSubjectProperty: the task the agent acts under (required from an
// enforcement point; a task token names its own task).
type AZSubjectProperty struct {
	Task string `json:"task,omitempty"`
}

// AZAction is an AuthZEN action: {"name": <action kind>}.
type AZAction struct {
	Name       string           `json:"name"`
	Properties AZActionProperty `json:"properties,omitzero"`
}

// AZActionProperty: approvals verified for this action.
type AZActionProperty struct {
	Approvals []string `json:"approvals,omitempty"`
}

// AZResource is an AuthZEN resource: {"type": "tool"|"file"|"host"|
// "secret"|"agent", "id": ...}.
type AZResource struct {
	Type       string             `json:"type"`
	ID         string             `json:"id"`
	Properties AZResourceProperty `json:"properties,omitzero"`
}

// AZResourceProperty are resource attributes.
type AZResourceProperty struct {
	Server      string                  `json:"server,omitempty"`
	Sensitivity string                  `json:"sensitivity,omitempty"`
	Labels      []string                `json:"labels,omitempty"`
	Annotations *policy.ToolAnnotations `json:"annotations,omitempty"`
}

// AZContext is the AuthZEN context.
type AZContext struct {
	Destination policy.Destination `json:"destination,omitzero"`
	Command     string             `json:"command,omitempty"`
	// Arguments are the action's arguments (a JSON object): an approval
	// is bound to their digest.
	Arguments json.RawMessage `json:"arguments,omitempty"`
}

// AZEvaluation is one evaluation request.
type AZEvaluation struct {
	Subject  *AZSubject  `json:"subject,omitempty"`
	Action   *AZAction   `json:"action,omitempty"`
	Resource *AZResource `json:"resource,omitempty"`
	Context  *AZContext  `json:"context,omitempty"`
}

// AZEvaluations is a batch request: defaults, evaluations, options.
type AZEvaluations struct {
	AZEvaluation
	Evaluations []AZEvaluation `json:"evaluations,omitempty"`
	Options     AZOptions      `json:"options,omitzero"`
}

// AZOptions are the batch options; unknown options are ignored.
type AZOptions struct {
	EvaluationsSemantic string `json:"evaluations_semantic,omitempty"`
}

// Context, properties and options are open objects in the standard:
// their unknown members are ignored (lenient decoding), while the
// request's own members stay strict.

// UnmarshalJSON decodes leniently.
func (o *AZOptions) UnmarshalJSON(b []byte) error {
	type plain AZOptions
	return json.Unmarshal(b, (*plain)(o))
}

// UnmarshalJSON decodes leniently.
func (c *AZContext) UnmarshalJSON(b []byte) error {
	type plain AZContext
	return json.Unmarshal(b, (*plain)(c))
}

// UnmarshalJSON decodes leniently.
func (p *AZSubjectProperty) UnmarshalJSON(b []byte) error {
	type plain AZSubjectProperty
	return json.Unmarshal(b, (*plain)(p))
}

// UnmarshalJSON decodes leniently.
func (p *AZActionProperty) UnmarshalJSON(b []byte) error {
	type plain AZActionProperty
	return json.Unmarshal(b, (*plain)(p))
}

// UnmarshalJSON decodes leniently.
func (p *AZResourceProperty) UnmarshalJSON(b []byte) error {
	type plain AZResourceProperty
	return json.Unmarshal(b, (*plain)(p))
}

// AZResponse is one decision.
type AZResponse struct {
	Decision bool       `json:"decision"`
	Context  *AZRespCtx `json:"context,omitempty"`
}

// AZRespCtx explains a decision.
type AZRespCtx struct {
	// Decision is mandate's three-valued decision.
	Decision    string          `json:"decision,omitempty"`
	Reason      string          `json:"reason,omitempty"`
	Reasons     []policy.Reason `json:"reasons,omitempty"`
	Obligations []string        `json:"obligations,omitempty"`
	// Approvals would lift an approval_required.
	Approvals []string `json:"approvals,omitempty"`
	Error     *AZError `json:"error,omitempty"`
	// EvaluationID and AccessRequest make an approval_required a
	// requestable denial (ARAP, arap.go).
	EvaluationID  string           `json:"evaluation_id,omitempty"`
	EvaluatedAt   string           `json:"evaluated_at,omitempty"`
	AccessRequest *ARAPRequestable `json:"access_request,omitempty"`
}

// AZError is a per-evaluation error.
type AZError struct {
	Status  int    `json:"status"`
	Message string `json:"message"`
}

// resourceTypes maps AuthZEN resource types to Cedar entity types.
var resourceTypes = map[string]string{
	"tool": policy.TypeTool, "file": policy.TypeFile, "host": policy.TypeHost,
	"secret": policy.TypeSecret, "agent": policy.TypeAgent,
}

// caller is who is asking: an enforcement point, or an agent with its
// task token (verified once per HTTP request: a DPoP proof is single-use).
type caller struct {
	// pres is how the request presented its token, for the challenge.
	pres    token.Presentation
	point   string
	cred    access.Credential
	subject *access.Subject
}

func (h *AuthZEN) authenticate(r *http.Request) (caller, error) {
	if h.cfg.PointAuth != nil {
		if point, ok := h.cfg.PointAuth(r); ok {
			return caller{point: point}, nil
		}
	}
	pres, cred, err := taskCredential(r, h.cfg.Pipeline, access.Action{Point: authzenPoint}, h.cfg.PublicURL, "<task token or enforcement point token>")
	return caller{pres: pres, cred: cred}, err
}

// decodeAuthZEN strictly decodes the body (unknown top-level members,
// trailing data, over-deep nesting and oversized bodies are errors).
func decodeAuthZEN(w http.ResponseWriter, r *http.Request, dst any) error {
	return decodeBody(w, r, MaxAuthZENBody, dst)
}

// DecodeAuthZEN strictly decodes an AuthZEN request body into dst. A body
// that is not valid UTF-8, or escapes a lone surrogate, is refused (see
// checkJSONText).
func DecodeAuthZEN(body []byte, dst any) error {
	if len(body) > MaxAuthZENBody {
		return fmt.Errorf("%w: limit is %d bytes", errTooLarge, MaxAuthZENBody)
	}
	if err := checkJSONText(body); err != nil {
		return err
	}
	if d := jsonDepth(body); d > maxJSONDepth {
		return fmt.Errorf("%w: JSON nested deeper than %d levels", errBadRequest, maxJSONDepth)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: request body is empty", errBadRequest)
		}
		return fmt.Errorf("%w: %v", errBadRequest, jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the JSON value", errBadRequest)
	}
	return nil
}

// jsonDepth returns the maximum nesting of brackets in b outside strings.
func jsonDepth(b []byte) int {
	depth, peak, inStr, esc := 0, 0, false, false
	for _, c := range b {
		switch {
		case esc:
			esc = false
		case inStr && c == '\\':
			esc = true
		case c == '"':
			inStr = !inStr
		case inStr:
		case c == '{' || c == '[':
			depth++
			peak = max(peak, depth)
		case c == '}' || c == ']':
			depth--
		}
	}
	return peak
}

// requestID reads X-Request-ID and echoes it in the response, as the
// standard requires. A request ID is 1 to MaxRequestIDLen visible ASCII
// characters (0x21 to 0x7E); one that is not, or more than one, is
// refused (400) before anything is decided or recorded: the ledger keeps
// a request ID exactly as it was sent, or not at all. An empty header is
// no request ID.
func requestID(w http.ResponseWriter, r *http.Request) (string, error) {
	vs := r.Header.Values("X-Request-ID")
	switch {
	case len(vs) == 0 || len(vs) == 1 && vs[0] == "":
		return "", nil
	case len(vs) > 1:
		return "", fmt.Errorf("%w: X-Request-ID is repeated", errBadRequest)
	}
	id := vs[0]
	if !validRequestID(id) {
		return "", fmt.Errorf("%w: X-Request-ID must be 1 to %d visible ASCII characters", errBadRequest, MaxRequestIDLen)
	}
	w.Header().Set("X-Request-ID", id)
	return id, nil
}

// validRequestID reports whether id is 1 to MaxRequestIDLen visible
// ASCII characters.
func validRequestID(id string) bool {
	if id == "" || len(id) > MaxRequestIDLen {
		return false
	}
	for i := range len(id) {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// writeAZError writes an error as the standard says: the status and an
// error message string.
func (h *AuthZEN) writeAZError(w http.ResponseWriter, r *http.Request, pres token.Presentation, err error) {
	status, detail := errorStatus(err)
	if status >= 500 {
		h.log.Error("authzen request failed", "path", r.URL.Path, "err", err)
	}
	if status == http.StatusUnauthorized {
		// The challenge names the scheme the refusal concerns: a
		// DPoP-bound token sent as Bearer gets DPoP error="invalid_token"
		// (RFC 9449 §7.1).
		for _, c := range token.Challenges(pres, err, `realm="mandate"`) {
			w.Header().Add("WWW-Authenticate", c)
		}
	}
	setRetryAfter(w, status)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, detail+"\n")
}

func (h *AuthZEN) evaluation(w http.ResponseWriter, r *http.Request) {
	reqID, err := requestID(w, r)
	if err != nil {
		h.writeAZError(w, r, token.Presentation{}, err)
		return
	}
	c, err := h.authenticate(r)
	if err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	var ev AZEvaluation
	if err := decodeAuthZEN(w, r, &ev); err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	resp, err := h.evaluate(r.Context(), &c, ev, reqID)
	if err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (h *AuthZEN) evaluations(w http.ResponseWriter, r *http.Request) {
	reqID, err := requestID(w, r)
	if err != nil {
		h.writeAZError(w, r, token.Presentation{}, err)
		return
	}
	c, err := h.authenticate(r)
	if err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	var req AZEvaluations
	if err := decodeAuthZEN(w, r, &req); err != nil {
		h.writeAZError(w, r, c.pres, err)
		return
	}
	semantic := req.Options.EvaluationsSemantic
	switch semantic {
	case "":
		semantic = SemanticExecuteAll
	case SemanticExecuteAll, SemanticDenyOnFirstDeny, SemanticPermitOnFirstPermit:
	default:
		h.writeAZError(w, r, c.pres, fmt.Errorf("%w: options.evaluations_semantic must be execute_all, deny_on_first_deny or permit_on_first_permit", errBadRequest))
		return
	}
	if len(req.Evaluations) == 0 {
		// Without an evaluations array the request is a single evaluation.
		resp, err := h.evaluate(r.Context(), &c, req.AZEvaluation, reqID)
		if err != nil {
			h.writeAZError(w, r, c.pres, err)
			return
		}
		writeJSON(w, http.StatusOK, resp)
		return
	}
	if len(req.Evaluations) > MaxEvaluations {
		h.writeAZError(w, r, c.pres, fmt.Errorf("%w: at most %d evaluations per request", errBadRequest, MaxEvaluations))
		return
	}
	out := struct {
		Evaluations []AZResponse `json:"evaluations"`
	}{Evaluations: make([]AZResponse, 0, len(req.Evaluations))}
	for _, item := range req.Evaluations {
		ev := merge(req.AZEvaluation, item)
		resp, err := h.evaluate(r.Context(), &c, ev, reqID)
		if err != nil {
			status, detail := errorStatus(err)
			if status == http.StatusUnauthorized || status >= 500 {
				// Errors of the whole request, not of this evaluation.
				h.writeAZError(w, r, c.pres, err)
				return
			}
			resp = AZResponse{Context: &AZRespCtx{Error: &AZError{Status: status, Message: detail}}}
		}
		out.Evaluations = append(out.Evaluations, resp)
		if semantic == SemanticDenyOnFirstDeny && !resp.Decision || semantic == SemanticPermitOnFirstPermit && resp.Decision {
			break
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// merge applies the batch defaults to one evaluation: a member set on the
// evaluation replaces the default.
func merge(def, ev AZEvaluation) AZEvaluation {
	if ev.Subject == nil {
		ev.Subject = def.Subject
	}
	if ev.Action == nil {
		ev.Action = def.Action
	}
	if ev.Resource == nil {
		ev.Resource = def.Resource
	}
	if ev.Context == nil {
		ev.Context = def.Context
	}
	return ev
}

// ToAction maps an AuthZEN evaluation onto a mandate action (see
// docs/authzen.md). Errors wrap errBadRequest.
func ToAction(ev AZEvaluation) (access.Action, error) {
	bad := func(format string, args ...any) (access.Action, error) {
		return access.Action{}, fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
	}
	switch {
	case ev.Subject == nil || ev.Subject.Type == "" || ev.Subject.ID == "":
		return bad("subject with type and id is required")
	case ev.Subject.Type != "agent":
		return bad("subject.type must be \"agent\"")
	case ev.Action == nil || ev.Action.Name == "":
		return bad("action with a name is required")
	case ev.Resource == nil || ev.Resource.Type == "" || ev.Resource.ID == "":
		return bad("resource with type and id is required")
	}
	want := policy.ResourceType(ev.Action.Name)
	if want == "" {
		return bad("unknown action %q (want one of %s)", ev.Action.Name, strings.Join(policy.Actions, ", "))
	}
	if got, ok := resourceTypes[ev.Resource.Type]; !ok || got != want {
		return bad("resource.type %q does not fit action %s (want %q)", ev.Resource.Type, ev.Action.Name, strings.ToLower(want))
	}
	p := ev.Resource.Properties
	act := access.Action{
		Kind: ev.Action.Name, Resource: ev.Resource.ID, Server: p.Server,
		Sensitivity: p.Sensitivity, Labels: p.Labels, Annotations: p.Annotations,
		Approvals: ev.Action.Properties.Approvals,
	}
	if ev.Context != nil {
		act.Destination, act.Command, act.Arguments = ev.Context.Destination, ev.Context.Command, ev.Context.Arguments
	}
	return act, nil
}

// evaluate decides one evaluation. Request errors wrap errBadRequest;
// a caller that could not be authenticated gets access.ErrUnauthenticated.
func (h *AuthZEN) evaluate(ctx context.Context, c *caller, ev AZEvaluation, reqID string) (AZResponse, error) {
	act, err := ToAction(ev)
	if err != nil {
		return AZResponse{}, err
	}
	act.RequestID = reqID
	var d access.Decision
	if c.point != "" {
		if ev.Subject.Properties.Task == "" {
			return AZResponse{}, fmt.Errorf("%w: subject.properties.task is required from an enforcement point", errBadRequest)
		}
		tid, err := task.ParseID(ev.Subject.Properties.Task)
		if err != nil {
			return AZResponse{}, fmt.Errorf("%w: subject.properties.task: %v", errBadRequest, err)
		}
		act.Point, act.Caller, act.Trusted = authzenPoint, c.point, true
		d, err = h.cfg.Pipeline.DecideFor(ctx, tid, ev.Subject.ID, act)
		if errors.Is(err, audit.ErrUnavailable) {
			return AZResponse{}, audit.ErrUnavailable
		}
		if err != nil && !errors.Is(err, access.ErrUnauthenticated) && !errors.Is(err, access.ErrInvalidAction) {
			return AZResponse{}, err
		}
		if errors.Is(err, access.ErrInvalidAction) {
			return AZResponse{}, fmt.Errorf("%w: %v", errBadRequest, err)
		}
	} else {
		act.Point = authzenPoint
		if c.subject == nil {
			cred := c.cred
			cred.Agent = ev.Subject.ID
			subj, err := h.cfg.Pipeline.Authenticate(ctx, cred, act)
			if err != nil {
				return AZResponse{}, err
			}
			c.subject = &subj
		}
		if c.subject.Agent != ev.Subject.ID {
			return AZResponse{}, fmt.Errorf("%w: a task token may only ask about its own agent", access.ErrUnauthenticated)
		}
		d, err = h.cfg.Pipeline.DecideAs(ctx, *c.subject, act)
		if err != nil {
			if errors.Is(err, audit.ErrUnavailable) {
				return AZResponse{}, audit.ErrUnavailable
			}
			if errors.Is(err, access.ErrInvalidAction) {
				return AZResponse{}, fmt.Errorf("%w: %v", errBadRequest, err)
			}
			return AZResponse{}, err
		}
	}
	resp := toResponse(d)
	h.requestable(ctx, &resp, d)
	return resp, nil
}

func toResponse(d access.Decision) AZResponse {
	resp := AZResponse{Decision: d.Effect == policy.Allow, Context: &AZRespCtx{
		Decision: string(d.Effect), Reasons: d.Reasons, Obligations: d.Obligations, Approvals: d.Approvals,
	}}
	var msgs []string
	for _, r := range d.Reasons {
		if r.Message != "" {
			msgs = append(msgs, r.Message)
		}
	}
	msgs = append(msgs, d.Errors...)
	if len(msgs) == 0 && d.Effect == policy.Deny {
		msgs = append(msgs, "no policy permits this action")
	}
	resp.Context.Reason = strings.Join(msgs, "; ")
	return resp
}
