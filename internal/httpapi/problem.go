package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/secrets"
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
	case errors.Is(err, errForbidden), errors.Is(err, task.ErrNotEntitled), errors.Is(err, approval.ErrForbidden):
		return http.StatusForbidden, err.Error()
	case errors.Is(err, errBadRequest),
		errors.Is(err, identity.ErrInvalid), errors.Is(err, identity.ErrInvalidID),
		errors.Is(err, task.ErrInvalid), errors.Is(err, task.ErrNotNarrower),
		errors.Is(err, admin.ErrNothingToUpdate),
		errors.Is(err, audit.ErrInvalid), errors.Is(err, approval.ErrInvalid),
		errors.Is(err, access.ErrInvalidAction), errors.Is(err, policy.ErrInvalidRequest), errors.Is(err, policy.ErrInvalidPolicy),
		errors.Is(err, secrets.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, identity.ErrNotFound), errors.Is(err, identity.ErrKeyNotFound), errors.Is(err, task.ErrNotFound), errors.Is(err, audit.ErrNotFound),
		errors.Is(err, secrets.ErrNotFound), errors.Is(err, secrets.ErrLeaseNotFound), errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound, err.Error()
	case errors.Is(err, identity.ErrExists), errors.Is(err, identity.ErrKeyExists), errors.Is(err, identity.ErrFederationTaken),
		errors.Is(err, identity.ErrInactive), errors.Is(err, task.ErrExists),
		errors.Is(err, task.ErrNotActive), errors.Is(err, admin.ErrTransition),
		errors.Is(err, secrets.ErrExists), errors.Is(err, secrets.ErrChanged), errors.Is(err, secrets.ErrInUse), errors.Is(err, secrets.ErrUnusable),
		errors.Is(err, approval.ErrDecided), errors.Is(err, approval.ErrExpired), errors.Is(err, approval.ErrDigestMismatch),
		errors.Is(err, approval.ErrPolicyChanged):
		return http.StatusConflict, err.Error()
	case errors.Is(err, approval.ErrRateLimited):
		return http.StatusTooManyRequests, err.Error()
	case errors.Is(err, audit.ErrUnavailable):
		return http.StatusServiceUnavailable, "the audit log is unavailable; the change was refused"
	case errors.Is(err, fault.ErrUnavailable):
		// The store is unavailable, full, read-only, busy or lost: an
		// operator can fix it (see docs/operations.md); the caller may
		// retry after Retry-After.
		return http.StatusServiceUnavailable, "the store is temporarily unavailable; nothing was changed"
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
	setRetryAfter(w, status)
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: detail})
}

// setRetryAfter tells the caller of a 503 when to try again: every 503
// errorStatus returns is something an operator can fix.
func setRetryAfter(w http.ResponseWriter, status int) {
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", fault.RetryAfter)
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decodeJSON strictly decodes one JSON value from r's body into dst: the
// content type must be JSON, the body valid UTF-8 without lone surrogate
// escapes (see checkJSONText), unknown fields and trailing data are
// errors, and the body is limited to MaxJSONBody. An empty body decodes
// nothing when allowEmpty is set.
func decodeJSON(w http.ResponseWriter, r *http.Request, dst any, allowEmpty bool) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", errBadRequest)
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxJSONBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return fmt.Errorf("%w: limit is %d bytes", errTooLarge, MaxJSONBody)
		}
		return fmt.Errorf("%w: reading the body: %v", errBadRequest, err)
	}
	if err := checkJSONText(body); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		switch {
		case errors.Is(err, io.EOF) && allowEmpty:
			return nil
		case errors.Is(err, io.EOF):
			return fmt.Errorf("%w: request body is empty", errBadRequest)
		}
		return fmt.Errorf("%w: %v", errBadRequest, jsonErrorText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: trailing data after the JSON value", errBadRequest)
	}
	return nil
}

// checkJSONText refuses a JSON text that is not valid UTF-8 (RFC 8259
// §8.1) or that escapes half of a UTF-16 surrogate pair alone ("\ud800"):
// encoding/json would decode either to U+FFFD, so the strings decided on
// and recorded would not be the ones sent. Refused, not cleaned.
func checkJSONText(b []byte) error {
	if !utf8.Valid(b) {
		return fmt.Errorf("%w: the request body is not valid UTF-8", errBadRequest)
	}
	if loneSurrogate(b) {
		return fmt.Errorf("%w: the request body escapes a lone UTF-16 surrogate", errBadRequest)
	}
	return nil
}

// loneSurrogate reports whether a string of the JSON text b has a \u
// escape of a high surrogate not followed by one of a low surrogate, or
// of a low surrogate not preceded by a high one. Malformed escapes are
// left to the decoder.
func loneSurrogate(b []byte) bool {
	inStr, high := false, false
	for i := 0; i < len(b); i++ {
		c := b[i]
		if !inStr {
			inStr = c == '"'
			continue
		}
		if c != '\\' || i+1 >= len(b) || b[i+1] != 'u' {
			if high {
				return true
			}
			switch c {
			case '"':
				inStr = false
			case '\\':
				i++ // the escaped character
			}
			continue
		}
		if i+6 > len(b) {
			return false
		}
		n, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		if err != nil {
			return false
		}
		i += 5
		switch {
		case n >= 0xD800 && n < 0xDC00:
			if high {
				return true
			}
			high = true
		case n >= 0xDC00 && n < 0xE000:
			if !high {
				return true
			}
			high = false
		case high:
			return true
		}
	}
	return high
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
