package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
)

// TypePolicyChanged is recorded when an admin changes the API-managed
// policies or reloads the policy set.
const TypePolicyChanged = audit.TypePolicyChanged

// PolicyAdminConfig configures the policy admin API.
type PolicyAdminConfig struct {
	Engine *policy.Engine
	Loader *policy.Loader
	Store  policy.APIStore
	// Recorder records policy changes; required.
	Recorder audit.Recorder
	Logger   *slog.Logger
}

// PolicyAdmin serves the policy admin API under /admin/v1/policies (see
// docs/policies.md). Like Admin, it trusts the admin identity an outer
// layer put in the context and refuses requests without one.
type PolicyAdmin struct {
	cfg PolicyAdminConfig
	log *slog.Logger
	mux *http.ServeMux
}

// NewPolicyAdmin returns the policy admin handler.
func NewPolicyAdmin(cfg PolicyAdminConfig) *PolicyAdmin {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &PolicyAdmin{cfg: cfg, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/v1/policies", h.list)
	h.mux.HandleFunc("PUT /admin/v1/policies/{name}", h.put)
	h.mux.HandleFunc("DELETE /admin/v1/policies/{name}", h.delete)
	h.mux.HandleFunc("POST /admin/v1/policies/reload", h.reload)
	h.mux.HandleFunc("POST /admin/v1/policies/explain", h.explain)
	return h
}

// ServeHTTP implements http.Handler.
func (h *PolicyAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if admin.ActorFromContext(r.Context()) == "" {
		writeError(w, r, h.log, errUnauthenticated)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// PolicyList is the response of GET /admin/v1/policies.
type PolicyList struct {
	Policies []policy.Info `json:"policies"`
	Sources  []string      `json:"sources"`
	LoadedAt time.Time     `json:"loaded_at,omitzero"`
	// LastError is the last reload's failure (the live set is the last
	// good one).
	LastError string `json:"last_error,omitempty"`
}

func (h *PolicyAdmin) list(w http.ResponseWriter, r *http.Request) {
	set := h.cfg.Engine.Set()
	out := PolicyList{}
	if set != nil {
		out.Policies, out.Sources = set.Policies(), set.Sources()
	}
	loaded, last := h.cfg.Loader.Status()
	out.LoadedAt = loaded
	if last != nil {
		out.LastError = last.Error()
	}
	writeJSON(w, http.StatusOK, out)
}

// compileProblem is the 400 body of a policy that does not compile.
type compileProblem struct {
	Problem
	Problems []policy.Problem `json:"problems"`
}

func (h *PolicyAdmin) writeCompileError(w http.ResponseWriter, r *http.Request, err error) {
	var ce *policy.CompileError
	if !errors.As(err, &ce) {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusBadRequest)
	_ = jsonEncode(w, compileProblem{
		Problem:  Problem{Type: "about:blank", Title: "Bad Request", Status: http.StatusBadRequest, Detail: "the policies do not compile:\n" + ce.Error()},
		Problems: ce.Problems,
	})
}

func (h *PolicyAdmin) record(ctx context.Context, op, name string) error {
	return h.cfg.Recorder.Record(ctx, audit.Event{
		Type: TypePolicyChanged, Actor: admin.ActorFromContext(ctx), Action: op, Resource: name,
		Details: map[string]string{"operation": op},
	})
}

// put stores a policy document (the body, Cedar text) after checking that
// the whole set still compiles with it, then reloads.
func (h *PolicyAdmin) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policy.ValidName(name); err != nil {
		writeError(w, r, h.log, errors.Join(errBadRequest, err))
		return
	}
	text, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxSourceSize+1024))
	if err != nil {
		writeError(w, r, h.log, errTooLarge)
		return
	}
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		// {"text": "<cedar>"}, as the CLI sends it.
		var body struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal(text, &body); err != nil {
			writeError(w, r, h.log, fmt.Errorf("%w: want {\"text\": \"<cedar policies>\"} or a text/plain body", errBadRequest))
			return
		}
		text = []byte(body.Text)
	}
	if _, err := h.cfg.Loader.Candidate(r.Context(), policy.Source{Name: policy.SourceName(name), Text: text}); err != nil {
		h.writeCompileError(w, r, err)
		return
	}
	if err := h.record(r.Context(), "put", name); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.cfg.Store.Put(name, text); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.cfg.Loader.Reload(r.Context()); err != nil {
		h.writeCompileError(w, r, err)
		return
	}
	h.list(w, r)
}

func (h *PolicyAdmin) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policy.ValidName(name); err != nil {
		writeError(w, r, h.log, errors.Join(errBadRequest, err))
		return
	}
	if err := h.record(r.Context(), "delete", name); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.cfg.Store.Delete(name); err != nil {
		if errors.Is(err, policy.ErrPolicyNotFound) {
			writeProblem(w, http.StatusNotFound, err.Error())
			return
		}
		writeError(w, r, h.log, err)
		return
	}
	if err := h.cfg.Loader.Reload(r.Context()); err != nil {
		h.writeCompileError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *PolicyAdmin) reload(w http.ResponseWriter, r *http.Request) {
	if err := h.record(r.Context(), "reload", ""); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if err := h.cfg.Loader.Reload(r.Context()); err != nil {
		h.writeCompileError(w, r, err)
		return
	}
	h.list(w, r)
}

// explain decides a policy request (the JSON form of policy.Request)
// against the live set and shows every matching policy. It decides
// nothing for real and records nothing.
func (h *PolicyAdmin) explain(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, policy.MaxRequestSize))
	if err != nil {
		writeError(w, r, h.log, errTooLarge)
		return
	}
	req, err := policy.DecodeRequestJSON(body)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	x, err := h.cfg.Engine.Explain(req)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, x)
}

func jsonEncode(w io.Writer, v any) error {
	return json.NewEncoder(w).Encode(v)
}
