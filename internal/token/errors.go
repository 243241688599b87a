package token

import (
	"errors"
	"fmt"
	"net/http"
)

// OAuth error codes (RFC 6749 §5.2, RFC 6750 §3.1, RFC 8693 §2.2.2,
// RFC 9449 §5, RFC 7009 §2.2.1).
const (
	CodeInvalidRequest         = "invalid_request"
	CodeInvalidClient          = "invalid_client"
	CodeInvalidGrant           = "invalid_grant"
	CodeInvalidScope           = "invalid_scope"
	CodeUnauthorizedClient     = "unauthorized_client"
	CodeUnsupportedGrantType   = "unsupported_grant_type"
	CodeUnsupportedTokenType   = "unsupported_token_type"
	CodeInvalidTarget          = "invalid_target"
	CodeInvalidToken           = "invalid_token"
	CodeInvalidDPoPProof       = "invalid_dpop_proof"
	CodeServerError            = "server_error"
	CodeTemporarilyUnavailable = "temporarily_unavailable"
)

// Error is an OAuth error: a code from the RFCs, a description that is safe
// to show the caller, and the HTTP status to answer with. The internal
// cause (which may name stores, keys or files) is kept for logs only and is
// reachable with errors.Unwrap, never in Error's Description.
type Error struct {
	Code        string
	Description string
	Status      int
	cause       error
	// dpop marks a refusal about DPoP binding, answered on the DPoP
	// challenge (DPoPChallenge).
	dpop bool
}

// Error returns the code, the description and the internal cause.
func (e *Error) Error() string {
	s := e.Code
	if e.Description != "" {
		s += ": " + e.Description
	}
	if e.cause != nil {
		s += " (" + e.cause.Error() + ")"
	}
	return s
}

// Unwrap returns the internal cause.
func (e *Error) Unwrap() error { return e.cause }

// Is reports whether target is an *Error with the same code, so that
// errors.Is(err, &Error{Code: CodeInvalidGrant}) works.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code && t.Description == "" && t.cause == nil
}

func newError(code string, status int, cause error, format string, args ...any) *Error {
	return &Error{Code: code, Description: fmt.Sprintf(format, args...), Status: status, cause: cause}
}

func errInvalidRequest(format string, args ...any) *Error {
	return newError(CodeInvalidRequest, http.StatusBadRequest, nil, format, args...)
}

func errInvalidClient(cause error, format string, args ...any) *Error {
	return newError(CodeInvalidClient, http.StatusUnauthorized, cause, format, args...)
}

func errInvalidGrant(cause error, format string, args ...any) *Error {
	return newError(CodeInvalidGrant, http.StatusBadRequest, cause, format, args...)
}

func errInvalidScope(cause error, format string, args ...any) *Error {
	return newError(CodeInvalidScope, http.StatusBadRequest, cause, format, args...)
}

func errUnauthorizedClient(cause error, format string, args ...any) *Error {
	return newError(CodeUnauthorizedClient, http.StatusBadRequest, cause, format, args...)
}

func errInvalidToken(cause error, format string, args ...any) *Error {
	return newError(CodeInvalidToken, http.StatusUnauthorized, cause, format, args...)
}

func errInvalidDPoP(cause error, format string, args ...any) *Error {
	return newError(CodeInvalidDPoPProof, http.StatusBadRequest, cause, format, args...)
}

func errUnavailable(cause error) *Error {
	return newError(CodeTemporarilyUnavailable, http.StatusServiceUnavailable, cause, "the authorization server is temporarily unable to serve the request")
}

// AsError converts any error into an *Error. Errors that are not already
// OAuth errors become temporarily_unavailable (503) with a generic
// description: the caller never sees an internal cause.
func AsError(err error) *Error {
	if err == nil {
		return nil
	}
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return errUnavailable(err)
}
