package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
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
	// Store keeps the API-managed policy documents; required.
	Store policy.SourceStore
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
	h.mux.HandleFunc("GET /admin/v1/policies/{name}", h.get)
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

// record writes the policy change event: who, which document, and the
// digests of the text before and after (absent for none). It is recorded
// before the change is made: a change the ledger cannot record is refused.
func (h *PolicyAdmin) record(ctx context.Context, op, name, oldDigest, newDigest string) error {
	details := map[string]string{"operation": op}
	if oldDigest != "" {
		details["old_digest"] = oldDigest
	}
	if newDigest != "" {
		details["new_digest"] = newDigest
	}
	return h.cfg.Recorder.Record(ctx, audit.Event{
		Type: TypePolicyChanged, Actor: admin.ActorFromContext(ctx), Action: op, Resource: name,
		Details: details,
	})
}

// PolicyDocument is the response of GET /admin/v1/policies/{name}: an
// API-managed policy document. Its version is also the ETag.
type PolicyDocument struct {
	Name      string    `json:"name"`
	Text      string    `json:"text"`
	Version   int64     `json:"version"`
	Digest    string    `json:"digest"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by"`
}

func etag(version int64) string { return `"` + strconv.FormatInt(version, 10) + `"` }

// condition is a change's precondition: If-Match ("<version>" or *),
// If-None-Match (*), or none.
type condition struct {
	header  string // "If-Match", "If-None-Match" or "" for none
	version int64  // If-Match's version; 0 for *
}

// precondition reads the request's condition. Only one strong ETag (or
// *) is accepted: lists and weak tags are refused, not interpreted.
func precondition(r *http.Request) (condition, error) {
	match, hasMatch := r.Header["If-Match"]
	none, hasNone := r.Header["If-None-Match"]
	switch {
	case hasMatch && hasNone, len(match) > 1, len(none) > 1:
		return condition{}, fmt.Errorf("%w: send one If-Match or one If-None-Match", errBadRequest)
	case hasNone:
		if none[0] != "*" {
			return condition{}, fmt.Errorf("%w: If-None-Match must be * (create only)", errBadRequest)
		}
		return condition{header: "If-None-Match"}, nil
	case hasMatch:
		if match[0] == "*" {
			return condition{header: "If-Match"}, nil
		}
		v, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(match[0], `"`), `"`), 10, 64)
		if err != nil || v <= 0 || match[0] != etag(v) {
			return condition{}, fmt.Errorf("%w: If-Match must be one ETag of this API (%s) or *", errBadRequest, etag(7))
		}
		return condition{header: "If-Match", version: v}, nil
	}
	return condition{}, nil
}

// expect checks the condition against cur, the stored revision read for
// this request (nil for none), and returns the version the store must
// still have when the change is written (0: none): exactly what was read,
// so that the change and its event's old digest match, and a change that
// landed in between is refused.
func (c condition) expect(cur *policy.StoredSource) (int64, error) {
	switch {
	case c.header == "If-None-Match" && cur != nil:
		return 0, fmt.Errorf("%w: policy %s exists (version %d)", policy.ErrVersionConflict, cur.Name, cur.Version)
	case c.header == "If-Match" && cur == nil:
		return 0, fmt.Errorf("%w: the policy does not exist", policy.ErrVersionConflict)
	case c.header == "If-Match" && c.version != 0 && c.version != cur.Version:
		return 0, fmt.Errorf("%w: policy %s is at version %d", policy.ErrVersionConflict, cur.Name, cur.Version)
	case cur == nil:
		return 0, nil
	}
	return cur.Version, nil
}

// current returns the stored document name, or nil if there is none.
func (h *PolicyAdmin) current(ctx context.Context, name string) (*policy.StoredSource, error) {
	cur, err := h.cfg.Store.GetPolicySource(ctx, name)
	if errors.Is(err, policy.ErrPolicyNotFound) {
		return nil, nil
	}
	return cur, err
}

// writeConflict answers a version conflict: 412 when the caller sent a
// precondition, 409 when another change raced its unconditional one.
func (h *PolicyAdmin) writeConflict(w http.ResponseWriter, c condition, err error) {
	if c.header != "" {
		writeProblem(w, http.StatusPreconditionFailed, err.Error()+"; GET the policy for its current ETag")
		return
	}
	writeProblem(w, http.StatusConflict, err.Error()+"; it was changed concurrently, retry")
}

func (h *PolicyAdmin) get(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policy.ValidName(name); err != nil {
		writeError(w, r, h.log, errors.Join(errBadRequest, err))
		return
	}
	src, err := h.cfg.Store.GetPolicySource(r.Context(), name)
	if errors.Is(err, policy.ErrPolicyNotFound) {
		writeProblem(w, http.StatusNotFound, err.Error())
		return
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("ETag", etag(src.Version))
	writeJSON(w, http.StatusOK, PolicyDocument{
		Name: src.Name, Text: string(src.Text), Version: src.Version, Digest: src.Digest(),
		UpdatedAt: src.UpdatedAt, UpdatedBy: src.UpdatedBy,
	})
}

// put stores a policy document (the body, Cedar text) after checking that
// the whole set still compiles with it, then reloads. A document that does
// not compile is refused with the compiler's problems and never stored.
// If-Match / If-None-Match make the change conditional (412 when they do
// not hold).
func (h *PolicyAdmin) put(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policy.ValidName(name); err != nil {
		writeError(w, r, h.log, errors.Join(errBadRequest, err))
		return
	}
	cond, err := precondition(r)
	if err != nil {
		writeError(w, r, h.log, err)
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
	if len(text) > policy.MaxSourceSize {
		writeError(w, r, h.log, errTooLarge)
		return
	}
	cur, err := h.current(r.Context(), name)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	ifVersion, err := cond.expect(cur)
	if err != nil {
		h.writeConflict(w, cond, err)
		return
	}
	oldDigest := ""
	if cur != nil {
		oldDigest = cur.Digest()
	}
	if _, err := h.cfg.Loader.Candidate(r.Context(), policy.Source{Name: policy.SourceName(name), Text: text}); err != nil {
		h.writeCompileError(w, r, err)
		return
	}
	if err := h.record(r.Context(), "put", name, oldDigest, policy.SourceDigest(text)); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	stored, err := h.cfg.Store.PutPolicySource(r.Context(), &policy.StoredSource{
		Name: name, Text: text, UpdatedAt: time.Now(), UpdatedBy: admin.ActorFromContext(r.Context()),
	}, ifVersion)
	if errors.Is(err, policy.ErrVersionConflict) {
		h.writeConflict(w, cond, err)
		return
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("ETag", etag(stored.Version))
	if err := h.cfg.Loader.Reload(r.Context()); err != nil {
		h.writeCompileError(w, r, err)
		return
	}
	h.list(w, r)
}

// delete removes a policy document (If-Match makes it conditional), then
// reloads.
func (h *PolicyAdmin) delete(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if err := policy.ValidName(name); err != nil {
		writeError(w, r, h.log, errors.Join(errBadRequest, err))
		return
	}
	cond, err := precondition(r)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if cond.header == "If-None-Match" {
		writeError(w, r, h.log, fmt.Errorf("%w: If-None-Match does not apply to DELETE", errBadRequest))
		return
	}
	cur, err := h.current(r.Context(), name)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if cur == nil {
		writeProblem(w, http.StatusNotFound, fmt.Sprintf("%v: %s", policy.ErrPolicyNotFound, name))
		return
	}
	ifVersion, err := cond.expect(cur)
	if err != nil {
		h.writeConflict(w, cond, err)
		return
	}
	if err := h.record(r.Context(), "delete", name, cur.Digest(), ""); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	err = h.cfg.Store.DeletePolicySource(r.Context(), name, ifVersion)
	switch {
	case errors.Is(err, policy.ErrPolicyNotFound):
		writeProblem(w, http.StatusNotFound, err.Error())
		return
	case errors.Is(err, policy.ErrVersionConflict):
		h.writeConflict(w, cond, err)
		return
	case err != nil:
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
	if err := h.record(r.Context(), "reload", "", "", ""); err != nil {
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
