package httpapi

import (
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
)

// SecretsAdminConfig configures the secrets admin API.
type SecretsAdminConfig struct {
	Broker *secrets.Broker
	Logger *slog.Logger
}

// SecretsAdmin serves the secrets admin API (docs/secrets.md):
//
//	GET    /admin/v1/secrets              the secrets' definitions
//	GET    /admin/v1/secrets/{name}       one definition
//	PUT    /admin/v1/secrets/{name}       create or replace (with its value)
//	DELETE /admin/v1/secrets/{name}       revoke its leases, then remove it
//	POST   /admin/v1/secrets/{name}/rotate  a new value
//	POST   /admin/v1/secrets/rewrap       reseal everything under the primary KEK
//	GET    /admin/v1/leases?task=&secret=&status=&failed=true&limit=
//
// Values are accepted on PUT and rotate only, and never returned: every
// response carries definitions and leases, which hold none. Like Admin, it
// trusts the admin identity an outer layer put in the context and refuses
// requests without one.
type SecretsAdmin struct {
	broker *secrets.Broker
	log    *slog.Logger
	mux    *http.ServeMux
}

// NewSecretsAdmin returns the secrets admin handler.
func NewSecretsAdmin(cfg SecretsAdminConfig) *SecretsAdmin {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &SecretsAdmin{broker: cfg.Broker, log: log, mux: http.NewServeMux()}
	h.mux.HandleFunc("GET /admin/v1/secrets", h.list)
	h.mux.HandleFunc("GET /admin/v1/secrets/{name}", h.get)
	h.mux.HandleFunc("PUT /admin/v1/secrets/{name}", h.put)
	h.mux.HandleFunc("DELETE /admin/v1/secrets/{name}", h.remove)
	h.mux.HandleFunc("POST /admin/v1/secrets/{name}/rotate", h.rotate)
	h.mux.HandleFunc("POST /admin/v1/secrets/rewrap", h.rewrap)
	h.mux.HandleFunc("GET /admin/v1/leases", h.leases)
	h.mux.HandleFunc("/admin/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, http.StatusNotFound, "no such admin API endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h
}

// Patterns are the paths to route to the handler.
func (h *SecretsAdmin) Patterns() []string {
	return []string{"/admin/v1/secrets", "/admin/v1/secrets/", "/admin/v1/leases"}
}

// ServeHTTP implements http.Handler.
func (h *SecretsAdmin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if admin.ActorFromContext(r.Context()) == "" {
		writeError(w, r, h.log, errUnauthenticated)
		return
	}
	h.mux.ServeHTTP(w, r)
}

// SecretValue is how a value travels in a request: Value as UTF-8 text,
// or ValueBase64 (standard base64) for binary values; at most one.
type SecretValue struct {
	Value       *string `json:"value,omitempty"`
	ValueBase64 *string `json:"value_base64,omitempty"`
}

func (v SecretValue) bytes() ([]byte, error) {
	switch {
	case v.Value != nil && v.ValueBase64 != nil:
		return nil, fmt.Errorf("%w: give value or value_base64, not both", errBadRequest)
	case v.Value != nil:
		return []byte(*v.Value), nil
	case v.ValueBase64 != nil:
		b, err := base64.StdEncoding.Strict().DecodeString(*v.ValueBase64)
		if err != nil {
			return nil, fmt.Errorf("%w: value_base64 is not standard base64", errBadRequest)
		}
		return b, nil
	}
	return nil, nil
}

// PutSecretRequest is the body of PUT /admin/v1/secrets/{name}.
type PutSecretRequest struct {
	Kind        secrets.Kind            `json:"kind,omitempty"`
	Description string                  `json:"description,omitempty"`
	Deliver     []secrets.Target        `json:"deliver,omitempty"`
	Labels      map[string]string       `json:"labels,omitempty"`
	Postgres    *secrets.PostgresConfig `json:"postgres,omitempty"`
	SecretValue
}

func (h *SecretsAdmin) put(w http.ResponseWriter, r *http.Request) {
	var req PutSecretRequest
	if err := decodeJSON(w, r, &req, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	value, err := req.bytes()
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	defer clear(value)
	s, created, err := h.broker.Put(r.Context(), admin.ActorFromContext(r.Context()), secrets.PutRequest{
		Name: r.PathValue("name"), Kind: req.Kind, Description: req.Description, Deliver: req.Deliver,
		Labels: req.Labels, Postgres: req.Postgres, Value: value,
	})
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, s)
}

func (h *SecretsAdmin) rotate(w http.ResponseWriter, r *http.Request) {
	var req SecretValue
	if err := decodeJSON(w, r, &req, false); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	value, err := req.bytes()
	if err == nil && value == nil {
		err = fmt.Errorf("%w: rotate needs the new value (value or value_base64)", errBadRequest)
	}
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	defer clear(value)
	s, err := h.broker.Rotate(r.Context(), admin.ActorFromContext(r.Context()), r.PathValue("name"), value)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *SecretsAdmin) list(w http.ResponseWriter, r *http.Request) {
	list, err := h.broker.List(r.Context())
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"secrets": list})
}

func (h *SecretsAdmin) get(w http.ResponseWriter, r *http.Request) {
	s, err := h.broker.Get(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, s)
}

func (h *SecretsAdmin) remove(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxJSONBody))
	if err := h.broker.Remove(r.Context(), admin.ActorFromContext(r.Context()), r.PathValue("name")); err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusNoContent)
}

func (h *SecretsAdmin) rewrap(w http.ResponseWriter, r *http.Request) {
	rep, err := h.broker.Rewrap(r.Context(), admin.ActorFromContext(r.Context()))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (h *SecretsAdmin) leases(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var f secrets.LeaseFilter
	if v := q.Get("task"); v != "" {
		id, err := task.ParseID(v)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Task = id
	}
	if v := q.Get("secret"); v != "" {
		n, err := secrets.ParseName(v)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Secret = n
	}
	if v := q.Get("status"); v != "" {
		st, err := secrets.ParseLeaseStatus(v)
		if err != nil {
			writeError(w, r, h.log, err)
			return
		}
		f.Statuses = append(f.Statuses, st)
	}
	switch q.Get("failed") {
	case "", "false":
	case "true":
		f.Statuses = append(f.Statuses, secrets.LeaseFailed)
	default:
		writeProblem(w, http.StatusBadRequest, "failed must be true or false")
		return
	}
	limit, err := limitParam(q.Get("limit"))
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	f.Limit = limit
	leases, err := h.broker.Leases(r.Context(), f)
	if err != nil {
		writeError(w, r, h.log, err)
		return
	}
	w.Header().Set("X-Total-Count", strconv.Itoa(len(leases)))
	writeJSON(w, http.StatusOK, map[string]any{"leases": leases})
}
