package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/token"
)

// Outcome limits.
const (
	// MaxOutcomeBody is the largest outcome request body accepted.
	MaxOutcomeBody = 16 << 10
	// maxOutcomeField bounds the free-text members of an outcome
	// (session, tool, detail).
	maxOutcomeField = 256
)

// outcomesPoint is the enforcement point name of reported outcomes.
const outcomesPoint = "hook"

// Outcome events (OutcomeRequest.Event).
const (
	OutcomeActionCompleted = "action.completed"
	OutcomeSessionStarted  = "session.started"
	OutcomeSessionEnded    = "session.ended"
)

// OutcomeRecorder is the pipeline as the outcomes endpoint uses it.
type OutcomeRecorder interface {
	Authenticate(ctx context.Context, cred access.Credential, act access.Action) (access.Subject, error)
	RecordOutcome(ctx context.Context, subj access.Subject, o access.Outcome) error
	RefuseCredential(ctx context.Context, act access.Action, cause error) error
}

// OutcomesConfig configures the outcomes handler.
type OutcomesConfig struct {
	Pipeline OutcomeRecorder
	// PublicURL is the server's public base URL (the DPoP htu's base).
	PublicURL string
	Logger    *slog.Logger
}

// Outcomes serves POST /access/v1/outcomes: an agent-side enforcement
// point (a coding-agent hook) reports, with the task token, what happened
// after a decision — an action's outcome, a session joining its task or
// ending — and it is recorded in the ledger before the 2xx.
type Outcomes struct {
	cfg OutcomesConfig
	log *slog.Logger
}

// NewOutcomes returns the outcomes handler.
func NewOutcomes(cfg OutcomesConfig) *Outcomes {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	return &Outcomes{cfg: cfg, log: log}
}

// Register mounts the endpoint on mux.
func (h *Outcomes) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /access/v1/outcomes", h.serve)
}

// OutcomeRequest is the body of POST /access/v1/outcomes. Its members
// are strict: an unknown one is a 400.
type OutcomeRequest struct {
	Subject *AZSubject `json:"subject"`
	// Event is action.completed, session.started or session.ended.
	Event string `json:"event"`
	// Action and Resource name the action that ran (action.completed).
	Action   *AZAction   `json:"action,omitempty"`
	Resource *AZResource `json:"resource,omitempty"`
	// Status is ok, error or interrupted (action.completed).
	Status string `json:"status,omitempty"`
	// Source names the reporting agent adapter ("claude-code"); Session
	// is the agent's session ID; Tool the agent's tool name; Detail how a
	// session started or why it ended.
	Source  string `json:"source"`
	Session string `json:"session,omitempty"`
	Tool    string `json:"tool,omitempty"`
	Detail  string `json:"detail,omitempty"`
}

// OutcomeResponse answers a recorded outcome.
type OutcomeResponse struct {
	Recorded bool   `json:"recorded"`
	Task     string `json:"task"`
}

func (h *Outcomes) serve(w http.ResponseWriter, r *http.Request) {
	reqID, err := requestID(w, r)
	if err != nil {
		h.fail(w, r, token.Presentation{}, err)
		return
	}
	act := access.Action{Point: outcomesPoint, RequestID: reqID}
	pres, cred, err := taskCredential(r, h.cfg.Pipeline, act, h.cfg.PublicURL, "<task token>")
	if err != nil {
		h.fail(w, r, pres, err)
		return
	}
	var req OutcomeRequest
	if err := decodeBody(w, r, MaxOutcomeBody, &req); err != nil {
		h.fail(w, r, pres, err)
		return
	}
	o, err := req.outcome()
	if err != nil {
		h.fail(w, r, pres, err)
		return
	}
	o.RequestID, o.Point = reqID, outcomesPoint
	cred.Agent = req.Subject.ID
	subj, err := h.cfg.Pipeline.Authenticate(r.Context(), cred, act)
	if err != nil {
		h.fail(w, r, pres, err)
		return
	}
	if err := h.cfg.Pipeline.RecordOutcome(r.Context(), subj, o); err != nil {
		h.fail(w, r, pres, err)
		return
	}
	writeJSON(w, http.StatusOK, OutcomeResponse{Recorded: true, Task: string(subj.Task)})
}

// outcome checks the request and maps it onto the pipeline's Outcome.
func (req *OutcomeRequest) outcome() (access.Outcome, error) {
	bad := func(format string, args ...any) (access.Outcome, error) {
		return access.Outcome{}, fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, args...))
	}
	if req.Subject == nil || req.Subject.Type != "agent" || req.Subject.ID == "" {
		return bad("subject with type \"agent\" and id is required")
	}
	if !validField(req.Source, 64) || req.Source == "" {
		return bad("source must be 1 to 64 visible ASCII characters")
	}
	for name, v := range map[string]string{"session": req.Session, "tool": req.Tool, "detail": req.Detail} {
		if v != "" && !validField(v, maxOutcomeField) {
			return bad("%s must be at most %d visible ASCII characters", name, maxOutcomeField)
		}
	}
	o := access.Outcome{Details: map[string]string{"source": req.Source}}
	for k, v := range map[string]string{"session": req.Session, "tool": req.Tool, "detail": req.Detail} {
		if v != "" {
			o.Details[k] = v
		}
	}
	switch req.Event {
	case OutcomeActionCompleted:
		if req.Action == nil || req.Resource == nil || req.Action.Name == "" || req.Resource.ID == "" {
			return bad("action.completed needs action and resource")
		}
		want := policy.ResourceType(req.Action.Name)
		if got, ok := resourceTypes[req.Resource.Type]; !ok || got != want {
			return bad("resource.type %q does not fit action %q", req.Resource.Type, req.Action.Name)
		}
		o.Type, o.Kind, o.Resource, o.Status = audit.TypeActionCompleted, req.Action.Name, req.Resource.ID, req.Status
	case OutcomeSessionStarted, OutcomeSessionEnded:
		if req.Action != nil || req.Resource != nil || req.Status != "" {
			return bad("%s names no action, resource or status", req.Event)
		}
		o.Type = audit.TypeAgentSessionStarted
		if req.Event == OutcomeSessionEnded {
			o.Type = audit.TypeAgentSessionEnded
		}
	default:
		return bad("event must be %s, %s or %s", OutcomeActionCompleted, OutcomeSessionStarted, OutcomeSessionEnded)
	}
	return o, nil
}

// validField reports whether s is at most max visible ASCII characters
// (spaces allowed inside).
func validField(s string, max int) bool {
	if len(s) > max {
		return false
	}
	for i := range len(s) {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// readLimited reads the body, at most limit bytes.
func readLimited(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
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

// fail writes err as a status and a text message, as the AuthZEN
// endpoints do.
func (h *Outcomes) fail(w http.ResponseWriter, r *http.Request, pres token.Presentation, err error) {
	(&AuthZEN{log: h.log}).writeAZError(w, r, pres, err)
}
