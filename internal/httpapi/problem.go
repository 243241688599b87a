package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// MaxJSONBody is the largest JSON request body the admin API accepts.
const MaxJSONBody = 1 << 20

// Problem is an RFC 9457 problem details object.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// errBadRequest marks request-decoding failures; its message is safe to show.
var errBadRequest = errors.New("bad request")

// errTooLarge marks a body over its limit.
var errTooLarge = errors.New("request body too large")

// errUnauthenticated marks a request without an acceptable admin identity.
var errUnauthenticated = errors.New("admin authentication required")

// errorStatus maps an error to its HTTP status and the detail that may be
// shown to the caller. It is the one place where errors become statuses;
// anything unrecognised is a 500 whose cause is logged, never shown.
func errorStatus(err error) (int, string) {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, err.Error()
	case errors.Is(err, errUnauthenticated), errors.Is(err, access.ErrUnauthenticated):
		return http.StatusUnauthorized, err.Error()
	case errors.Is(err, errForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, errBadRequest),
		errors.Is(err, identity.ErrInvalid), errors.Is(err, identity.ErrInvalidID),
		errors.Is(err, task.ErrInvalid), errors.Is(err, task.ErrNotNarrower), errors.Is(err, task.ErrTooDeep),
		errors.Is(err, audit.ErrInvalid),
		errors.Is(err, access.ErrInvalidAction), errors.Is(err, policy.ErrInvalidRequest), errors.Is(err, policy.ErrInvalidPolicy):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, identity.ErrNotFound), errors.Is(err, identity.ErrKeyNotFound), errors.Is(err, task.ErrNotFound), errors.Is(err, audit.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, identity.ErrExists), errors.Is(err, identity.ErrKeyExists), errors.Is(err, identity.ErrFederationTaken),
		errors.Is(err, identity.ErrInactive), errors.Is(err, task.ErrExists),
		errors.Is(err, task.ErrNotActive), errors.Is(err, admin.ErrTransition):
		return http.StatusConflict, err.Error()
	case errors.Is(err, audit.ErrUnavailable):
		return http.StatusServiceUnavailable, "the audit log is unavailable; the change was refused"
	case errors.Is(err, access.ErrAuthUnavailable):
		return http.StatusServiceUnavailable, "authentication is temporarily unavailable; retry later"
	}
	return http.StatusInternalServerError, "internal error"
}

// writeError writes err as problem+json, logging causes the caller does
// not see.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status, detail := errorStatus(err)
	if status >= 500 {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	writeProblem(w, status, detail)
}

func writeProblem(w http.ResponseWriter, status int, detail string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON strictly decodes one JSON value from r's body into dst: the
// content type must be JSON, unknown fields and trailing data are errors,
// and the body is limited to MaxJSONBody. An empty body decodes nothing
// when allowEmpty is set.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", errBadRequest)
	}
	body := http.MaxBytesReader(w, r.Body, MaxJSONBody)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		var tooLarge *http.MaxBytesError
		switch {
		case errors.As(err, &tooLarge):
			return fmt.Errorf("%w: limit is %d bytes", errTooLarge, MaxJSONBody)
		case errors.Is(err, io.EOF) && allowEmpty:
			return nil
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: request body is empty", errBadRequest)
		}
		return fmt.Errorf("%w: %v", errBadRequest, jsonErrorText(err))
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON value", errBadRequest)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: limit is %d bytes", errTooLarge, MaxJSONBody)
		}
		return fmt.Errorf("%w: trailing data after the JSON value", errBadRequest)
	}
	return nil
}

// jsonErrorText turns a decoding error into a message that names the
// offending field or offset, without echoing values.
func jsonErrorText(err error) string {
	var syntax *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d", syntax.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s", typ.Field, typ.Type)
		}
		return fmt.Sprintf("value at byte %d must be %s", typ.Offset, typ.Type)
	case strings.HasPrefix(err.Error(), "json: unknown field"):
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return "invalid JSON: " + err.Error()
}
