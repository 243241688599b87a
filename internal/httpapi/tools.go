package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// ToolsConfig configures the admin API's MCP tool pin endpoints.
type ToolsConfig struct {
	// Pins are the tool pins the MCP gateway serves by (the same
	// toolpin.Pins, so that an approval takes effect at once); required.
	Pins   *toolpin.Pins
	Logger *slog.Logger
}

// Tools serves the admin API for MCP tool definition pins:
//
//	GET  /admin/v1/tools                             every pin
//	GET  /admin/v1/tools/{upstream}/{tool}           one pin, with its pending definition
//	POST /admin/v1/tools/{upstream}/{tool}/approve   approve the pending definition
//	                                                 (body {"digest": "sha256-v2:…"}, optional)
//
// A pin with an empty digest and a null definition is a rename awaiting
// approval: nothing of it was ever approved.
//
// Callers authenticate as for the rest of the admin API.
type Tools struct {
	pins *toolpin.Pins
	log  *slog.Logger
	mux  *http.ServeMux
}

// NewTools returns the tool pin endpoints.
func NewTools(cfg ToolsConfig) *Tools {
	h := &Tools{pins: cfg.Pins, log: cfg.Logger, mux: http.NewServeMux()}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	h.mux.HandleFunc("GET /admin/v1/tools", h.list)
	h.mux.HandleFunc("GET /admin/v1/tools/{upstream}/{tool}", h.get)
	h.mux.HandleFunc("POST /admin/v1/tools/{upstream}/{tool}/approve", h.approve)
	h.mux.HandleFunc("/admin/v1/tools/", func(w http.ResponseWriter, _ *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such endpoint")
	})
	return h
}

// ServeHTTP implements http.Handler.
func (h *Tools) ServeHTTP(w http.ResponseWriter, r *http.Request) { h.mux.ServeHTTP(w, r) }

func (h *Tools) list(w http.ResponseWriter, r *http.Request) {
	pins, err := h.pins.List(r.Context())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	if pins == nil {
		pins = []*toolpin.Pin{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"tools": pins})
}

func (h *Tools) get(w http.ResponseWriter, r *http.Request) {
	pin, err := h.pins.Get(r.Context(), r.PathValue("upstream"), r.PathValue("tool"))
	if errors.Is(err, toolpin.ErrNotFound) {
		writeProblem(w, http.StatusNotFound, "no pinned tool "+r.PathValue("upstream")+"/"+r.PathValue("tool"))
		return
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, pin)
}

func (h *Tools) approve(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Digest string `json:"digest"`
	}
	if err := decodeJSON(w, r, &body, true); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	actor := admin.ActorFromContext(r.Context())
	if actor == "" {
		actor = "admin"
	}
	pin, err := h.pins.Approve(r.Context(), r.PathValue("upstream"), r.PathValue("tool"), body.Digest, actor)
	switch {
	case errors.Is(err, toolpin.ErrNotFound):
		writeProblem(w, http.StatusNotFound, err.Error())
	case errors.Is(err, toolpin.ErrDigestMismatch):
		writeProblem(w, http.StatusConflict, "the pending definition changed since you reviewed it; run 'mandate tool diff' again")
	case err != nil:
		writeError(w, r, h.log, err)
	default:
		writeJSON(w, http.StatusOK, pin)
	}
}
