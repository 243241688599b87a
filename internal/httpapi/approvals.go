package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/task"
)

// ApprovalDecider decides who may decide an approval request
// (access.Pipeline.DecideApproval).
type ApprovalDecider interface {
	DecideApproval(ctx context.Context, who approval.Approver, r *approval.Request, approve bool) (access.Decision, error)
}

// ApprovalsConfig configures the approvals admin API.
type ApprovalsConfig struct {
	Service  *approval.Service
	Pipeline ApprovalDecider
	// Admin offboards owners (POST /admin/v1/owners/{person}/offboard);
	// nil leaves that endpoint out.
	Admin  *admin.Service
	Logger *slog.Logger
}

// Approvals serves the approvals admin API (docs/approvals.md):
//
//	GET  /admin/v1/approvals               list (status, task, agent, owner, limit)
//	GET  /admin/v1/approvals/{id}          one request, with its full arguments
//	POST /admin/v1/approvals/{id}/approve  {"reason", "reach": "once"|"task", "digest"}
//	POST /admin/v1/approvals/{id}/deny     {"reason"}
//	POST /admin/v1/owners/{person}/offboard {"reason"}
//
// Every request needs an admin identity (admin.WithActor); deciding also
// needs the person the credential names (approval.WithApprover): an admin
// token that names no person, or an agent's token, decides nothing.
type Approvals struct {
	cfg ApprovalsConfig
	log *slog.Logger
	mux *http.ServeMux
}

// NewApprovals returns the approvals admin API handler.
func NewApprovals(cfg ApprovalsConfig) *Approvals {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &Approvals{cfg: cfg, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/v1/approvals", h.list)
	h.mux.HandleFunc("GET /admin/v1/approvals/{id}", h.show)
	h.mux.HandleFunc("POST /admin/v1/approvals/{id}/approve", h.decide(true))
	h.mux.HandleFunc("POST /admin/v1/approvals/{id}/deny", h.decide(false))
	if cfg.Admin != nil {
		h.mux.HandleFunc("POST /admin/v1/owners/{person}/offboard", h.offboard)
	}
	h.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such approvals endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Approvals) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if admin.ActorFromContext(r.Context()) == "" {
		writeError(w, r, h.log, errUnauthenticated)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Approvals) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := approval.Filter{Status: approval.Status(q.Get("status")), Agent: q.Get("agent"), AgentOwner: q.Get("owner")}
	switch f.Status {
	case "", approval.StatusPending, approval.StatusApproved, approval.StatusDenied, approval.StatusExpired, approval.StatusCancelled:
	default:
		writeProblem(w, http.StatusBadRequest, "status must be pending, approved, denied, expired or cancelled")
		return
	}
	if t := q.Get("task"); t != "" {
		id, err := task.ParseID(t)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Task = id
	}
	limit, err := limitParam(q.Get("limit"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	f.Limit = limit
	rs, err := h.cfg.Service.List(r.Context(), f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if rs == nil {
		rs = []*approval.Request{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": rs})
}

// ApprovalView is one request with its full arguments, for the approver.
type ApprovalView struct {
	*approval.Request
	Arguments json.RawMessage `json:"arguments"`
}

func (h *Approvals) get(w http.ResponseWriter, r *http.Request) (*approval.Request, bool) {
	id, err := approval.ParseID(r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return nil, false
	}
	req, err := h.cfg.Service.Get(r.Context(), id)
	if err != nil {
		writeError(w, r, h.log, err)
		return nil, false
	}
	return req, true
}

func (h *Approvals) show(w http.ResponseWriter, r *http.Request) {
	req, ok := h.get(w, r)
	if !ok {
		return
	}
	args, err := h.cfg.Service.Arguments(req)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, ApprovalView{Request: req, Arguments: args})
}

// decideRequest is the body of approve and deny.
type decideRequest struct {
	Reason string `json:"reason"`
	Reach  string `json:"reach"`
	// Digest, if set, must be the request's arguments digest: what the
	// approver was shown.
	Digest string `json:"digest"`
}

func (h *Approvals) decide(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, ok := approval.ApproverFromContext(r.Context())
		if !ok {
			writeError(w, r, h.log, fmt.Errorf("%w: this credential names no person; deciding an approval needs one (an admin token with person=, or approvals.local_person on the admin socket)", errForbidden))
			return
		}
		id, err := approval.ParseID(r.PathValue("id"))
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		var body decideRequest
		if err := decodeJSON(w, r, &body, true); err != nil {
			writeError(w, r, h.log, err)
			return
		}
		if len(body.Reason) > maxReasonLen {
			writeError(w, r, h.log, fmt.Errorf("%w: reason is over %d bytes", errBadRequest, maxReasonLen))
			return
		}
		reach, err := approval.ParseReach(body.Reach)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		if !approve && body.Reach != "" {
			writeError(w, r, h.log, fmt.Errorf("%w: a denial has no reach", errBadRequest))
			return
		}
		req, err := h.cfg.Service.Decide(r.Context(), approval.Decision{
			ID: id, Approver: who, Approve: approve, Reason: body.Reason, Reach: reach, Digest: body.Digest,
			Authorize: func(ctx context.Context, req *approval.Request) error {
				_, err := h.cfg.Pipeline.DecideApproval(ctx, who, req, approve)
				return err
			},
		})
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		writeJSON(w, http.StatusOK, req)
	}
}

// maxReasonLen bounds a decider's reason.
const maxReasonLen = 4096

func (h *Approvals) offboard(w http.ResponseWriter, r *http.Request) {
	var body reasonRequest
	if err := decodeJSON(w, r, &body, true); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	by := admin.ActorFromContext(r.Context())
	if who, ok := approval.ApproverFromContext(r.Context()); ok {
		by = who.Person
	}
	res, err := h.cfg.Admin.Offboard(r.Context(), r.PathValue("person"), body.Reason, func(ctx context.Context, owner, reason string) ([]string, error) {
		return cancelOwned(ctx, h.cfg.Service, owner, by, reason)
	})
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

// cancelOwned cancels the pending requests of owner's agents.
func cancelOwned(ctx context.Context, svc *approval.Service, owner, by, reason string) ([]string, error) {
	pending, err := svc.List(ctx, approval.Filter{AgentOwner: owner, Status: approval.StatusPending})
	if err != nil {
		return nil, err
	}
	ids := []string{}
	for _, p := range pending {
		if _, err := svc.Cancel(ctx, p.ID, by, reason); err != nil && !errors.Is(err, approval.ErrDecided) {
			return ids, err
		}
		ids = append(ids, string(p.ID))
	}
	return ids, nil
}
