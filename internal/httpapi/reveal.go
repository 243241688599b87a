package httpapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// MaxRevealBody is the largest reveal request body accepted.
const MaxRevealBody = 4 << 10

// RevealAuthenticator is the pipeline as the reveal endpoint uses it: it
// authenticates the agent (the broker then decides, through it too).
type RevealAuthenticator interface {
	Authenticate(ctx context.Context, cred access.Credential, act access.Action) (access.Subject, error)
	RefuseCredential(ctx context.Context, act access.Action, cause error) error
}

// SecretRevealer is the secrets broker as the reveal endpoint uses it.
type SecretRevealer interface {
	Reveal(ctx context.Context, taskID task.ID, secret string) (secrets.Value, *secrets.Lease, error)
}

// RevealConfig configures the reveal handler.
type RevealConfig struct {
	Pipeline RevealAuthenticator
	Broker   SecretRevealer
	// PublicURL is the server's public base URL (the DPoP htu's base).
	PublicURL string
	Logger    *slog.Logger
}

// Reveal serves POST /access/v1/secrets/reveal (docs/secrets.md, *Reveal*):
// an agent asks, with its task token, for the value of a secret itself.
// It gets it only where a policy's secret.use permit carries the reveal
// obligation; every answer is recorded. Values are delivered, not
// revealed, everywhere else.
type Reveal struct {
	cfg RevealConfig
	log *slog.Logger
}

// NewReveal returns the reveal handler.
func NewReveal(cfg RevealConfig) *Reveal {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg.PublicURL = strings.TrimSuffix(cfg.PublicURL, "/")
	return &Reveal{cfg: cfg, log: log}
}

// Register mounts the endpoint on mux.
func (h *Reveal) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /access/v1/secrets/reveal", h.serve)
}

// RevealRequest is the body of POST /access/v1/secrets/reveal; unknown
// members are a 400.
type RevealRequest struct {
	Subject *AZSubject `json:"subject"`
	Secret  string     `json:"secret"`
}

// RevealResponse carries the value: the only answer of mandate's that
// ever does.
type RevealResponse struct {
	Secret    string    `json:"secret"`
	Value     string    `json:"value"`
	Lease     string    `json:"lease"`
	ExpiresAt time.Time `json:"expires_at"`
}

func (h *Reveal) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	reqID, err := requestID(w, r)
	if err != nil {
		h.fail(w, r, token.Presentation{}, err)
		return
	}
	act := access.Action{Kind: policy.ActionSecretUse, Point: secrets.Point, RequestID: reqID}
	pres, cred, err := taskCredential(r, h.cfg.Pipeline, act, h.cfg.PublicURL, "<task token>")
	if err != nil {
		h.fail(w, r, pres, err)
		return
	}
	var req RevealRequest
	err = decodeBody(w, r, MaxRevealBody, &req)
	if err == nil && (req.Subject == nil || req.Subject.Type != "agent" || req.Subject.ID == "" || req.Secret == "") {
		err = fmt.Errorf("%w: subject (type \"agent\", id) and secret are required", errBadRequest)
	}
	if err != nil {
		h.fail(w, r, pres, err)
		return
	}
	act.Resource = req.Secret
	cred.Agent = req.Subject.ID
	subj, err := h.cfg.Pipeline.Authenticate(r.Context(), cred, act)
	if err != nil {
		h.fail(w, r, pres, err)
		return
	}
	v, l, err := h.cfg.Broker.Reveal(r.Context(), subj.Task, req.Secret)
	switch {
	case errors.Is(err, secrets.ErrNotRevealable), errors.Is(err, secrets.ErrDenied), errors.Is(err, secrets.ErrApprovalRequired):
		h.fail(w, r, pres, fmt.Errorf("%w: %w", errForbidden, err))
		return
	case err != nil:
		h.fail(w, r, pres, err)
		return
	}
	writeJSON(w, http.StatusOK, RevealResponse{Secret: req.Secret, Value: string(v.Bytes()), Lease: string(l.ID), ExpiresAt: l.ExpiresAt})
}

func (h *Reveal) fail(w http.ResponseWriter, r *http.Request, pres token.Presentation, err error) {
	(&AuthZEN{log: h.log}).writeAZError(w, r, pres, err)
}
