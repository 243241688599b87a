package httpapi

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// AdminConfig configures the admin API handler.
type AdminConfig struct {
	Service *admin.Service
	// Ledger serves the audit endpoints (/admin/v1/audit/…); nil leaves
	// them out.
	Ledger *audit.Ledger
	// Logger receives request failures; nil discards them.
	Logger *slog.Logger
}

// Admin serves the admin API (docs/admin-api.md) under /admin/v1/. It
// trusts the acting admin identity that an outer layer put in the request
// context with admin.WithActor (the local socket listener, or the admin
// token check on TCP); a request without one is refused with 401, so a
// mis-wired listener fails closed.
type Admin struct {
	svc    *admin.Service
	ledger *audit.Ledger
	log    *slog.Logger
	mux    *http.ServeMux
}

// NewAdmin returns the admin API handler.
func NewAdmin(cfg AdminConfig) *Admin {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	h := &Admin{svc: cfg.Service, ledger: cfg.Ledger, log: log, mux: http.NewServeMux()}
	if cfg.Ledger != nil {
		h.registerAudit()
	}
	h.mux.HandleFunc("POST /admin/v1/agents", h.registerAgent)
	h.mux.HandleFunc("GET /admin/v1/agents", h.listAgents)
	h.mux.HandleFunc("GET /admin/v1/agents/{name}", h.getAgent)
	h.mux.HandleFunc("PATCH /admin/v1/agents/{name}", h.updateAgent)
	h.mux.HandleFunc("POST /admin/v1/agents/{name}/suspend", h.agentTransition(h.svc.SuspendAgent))
	h.mux.HandleFunc("POST /admin/v1/agents/{name}/resume", h.agentTransition(h.svc.ResumeAgent))
	h.mux.HandleFunc("POST /admin/v1/agents/{name}/retire", h.agentTransition(h.svc.RetireAgent))
	h.mux.HandleFunc("POST /admin/v1/agents/{name}/keys", h.addAgentKey)
	h.mux.HandleFunc("DELETE /admin/v1/agents/{name}/keys/{kid}", h.removeAgentKey)
	h.mux.HandleFunc("POST /admin/v1/agents/{name}/federations", h.addAgentFederation)
	h.mux.HandleFunc("DELETE /admin/v1/agents/{name}/federations", h.removeAgentFederation)
	h.mux.HandleFunc("POST /admin/v1/tasks", h.startTask)
	h.mux.HandleFunc("GET /admin/v1/tasks", h.listTasks)
	h.mux.HandleFunc("GET /admin/v1/tasks/{id}", h.getTask)
	h.mux.HandleFunc("POST /admin/v1/tasks/{id}/end", h.taskFinish(h.svc.EndTask))
	h.mux.HandleFunc("POST /admin/v1/tasks/{id}/revoke", h.taskFinish(h.svc.RevokeTask))
	h.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such admin API endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Admin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if admin.ActorFromContext(r.Context()) == "" {
		writeError(w, r, h.log, errUnauthenticated)
		return
	}
	h.mux.ServeHTTP(w, r)
}

func (h *Admin) registerAgent(w http.ResponseWriter, r *http.Request) {
	var req admin.RegisterAgentRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	a, err := h.svc.RegisterAgent(r.Context(), req)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, agentResponse{Agent: a, Entitlement: req.Entitlement})
}

// agentResponse is an agent with its entitlement (null when it has none).
type agentResponse struct {
	*identity.Agent
	Entitlement *task.Entitlement `json:"entitlement"`
}

func (h *Admin) listAgents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := identity.Filter{Status: identity.Status(q.Get("status")), Owner: q.Get("owner")}
	if t := q.Get("tier"); t != "" {
		tier, err := identity.ParseTier(t)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Tier = tier
	}
	switch f.Status {
	case "", identity.StatusActive, identity.StatusSuspended, identity.StatusRetired:
	default:
		writeProblem(w, http.StatusBadRequest, "status must be active, suspended or retired")
		return
	}
	limit, err := limitParam(q.Get("limit"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	f.Limit = limit
	agents, err := h.svc.ListAgents(r.Context(), f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if agents == nil {
		agents = []*identity.Agent{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": agents})
}

func (h *Admin) getAgent(w http.ResponseWriter, r *http.Request) {
	a, err := h.svc.GetAgent(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	e, err := h.svc.GetEntitlement(r.Context(), a.ID.String())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, agentResponse{Agent: a, Entitlement: e})
}

func (h *Admin) updateAgent(w http.ResponseWriter, r *http.Request) {
	var req admin.UpdateAgentRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	res, err := h.svc.UpdateAgent(r.Context(), r.PathValue("name"), req)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (h *Admin) addAgentKey(w http.ResponseWriter, r *http.Request) {
	var key jose.JSONWebKey
	if err := decodeJSON(w, r, &key, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	a, err := h.svc.AddAgentKey(r.Context(), r.PathValue("name"), key)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

func (h *Admin) removeAgentKey(w http.ResponseWriter, r *http.Request) {
	a, err := h.svc.RemoveAgentKey(r.Context(), r.PathValue("name"), r.PathValue("kid"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

func (h *Admin) addAgentFederation(w http.ResponseWriter, r *http.Request) {
	var f identity.Federation
	if err := decodeJSON(w, r, &f, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	a, err := h.svc.AddAgentFederation(r.Context(), r.PathValue("name"), f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, a)
}

// removeAgentFederation takes the federation from the query
// (?issuer=…&subject=…): issuers are URLs and do not fit a path segment.
func (h *Admin) removeAgentFederation(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := identity.Federation{Issuer: q.Get("issuer"), Subject: q.Get("subject")}
	if f.Issuer == "" || f.Subject == "" {
		writeError(w, r, h.log, fmt.Errorf("%w: issuer and subject query parameters are required", errBadRequest))
		return
	}
	a, err := h.svc.RemoveAgentFederation(r.Context(), r.PathValue("name"), f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// reasonRequest is the optional body of status-changing requests.
type reasonRequest struct {
	Reason string `json:"reason"`
}

func (h *Admin) agentTransition(op func(ctx context.Context, ref, reason string) (*identity.Agent, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req reasonRequest
		if err := decodeJSON(w, r, &req, true); err != nil {
			writeError(w, r, h.log, err)
			return
		}
		a, err := op(r.Context(), r.PathValue("name"), req.Reason)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		writeJSON(w, http.StatusOK, a)
	}
}

func (h *Admin) startTask(w http.ResponseWriter, r *http.Request) {
	var req admin.StartTaskRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	t, err := h.svc.StartTask(r.Context(), req)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusCreated, t)
}

func (h *Admin) listTasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f task.Filter
	if ref := q.Get("agent"); ref != "" {
		id, err := h.svc.AgentID(ref)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Agent = id
	}
	switch s := task.Status(q.Get("status")); s {
	case "", task.StatusActive, task.StatusEnded, task.StatusRevoked, task.StatusExpired:
		f.Status = s
	default:
		writeProblem(w, http.StatusBadRequest, "status must be active, ended, revoked or expired")
		return
	}
	if p := q.Get("parent"); p != "" {
		id, err := task.ParseID(p)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Parent = id
	}
	limit, err := limitParam(q.Get("limit"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	f.Limit = limit
	tasks, err := h.svc.ListTasks(r.Context(), f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if tasks == nil {
		tasks = []*task.Task{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tasks": tasks})
}

func (h *Admin) getTask(w http.ResponseWriter, r *http.Request) {
	t, err := h.svc.GetTask(r.Context(), r.PathValue("id"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, t)
}

// finishResponse is the body returned when a task is ended or revoked.
type finishResponse struct {
	Task     *task.Task `json:"task"`
	Finished []task.ID  `json:"finished"`
}

func (h *Admin) taskFinish(op func(ctx context.Context, id, reason string) (*task.Task, []task.ID, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req reasonRequest
		if err := decodeJSON(w, r, &req, true); err != nil {
			writeError(w, r, h.log, err)
			return
		}
		t, finished, err := op(r.Context(), r.PathValue("id"), req.Reason)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		writeJSON(w, http.StatusOK, finishResponse{Task: t, Finished: finished})
	}
}

// maxListLimit caps list results per request.
const maxListLimit = 1000

func limitParam(s string) (int, error) {
	if s == "" {
		return maxListLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > maxListLimit {
		return 0, fmt.Errorf("%w: limit must be an integer from 1 to %d", errBadRequest, maxListLimit)
	}
	return n, nil
}
