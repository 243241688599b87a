package httpapi

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"

	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/token"
)

// MaxOAuthBodySize bounds the body of an OAuth endpoint request.
const MaxOAuthBodySize = 64 << 10

// OAuth endpoint paths.
const (
	PathOAuthMetadata   = "/.well-known/oauth-authorization-server"
	PathOAuthJWKS       = "/oauth/jwks"
	PathOAuthToken      = "/oauth/token"
	PathOAuthIntrospect = "/oauth/introspect"
	PathOAuthRevoke     = "/oauth/revoke"
	PathOAuthRegister   = "/oauth/register"
)

// OAuthConfig configures the OAuth endpoints.
type OAuthConfig struct {
	// Server is the authorization server; required.
	Server *token.Server
	// AdminAuth, if set, reports whether a request to the introspection or
	// revocation endpoint comes from an authenticated admin (an admin
	// token, say). Other callers must authenticate as an agent with
	// private_key_jwt.
	AdminAuth func(*http.Request) bool
	// Logger receives internal causes of errors; nil discards them.
	Logger *slog.Logger
}

// OAuth serves the authorization server's HTTP endpoints: RFC 8414
// metadata, the JWKS, the token endpoint, RFC 7662 introspection and
// RFC 7009 revocation. Requests are application/x-www-form-urlencoded with
// at most MaxOAuthBodySize bytes and no repeated parameters; errors are
// OAuth JSON errors; responses carrying tokens are not cacheable.
type OAuth struct {
	srv       *token.Server
	adminAuth func(*http.Request) bool
	log       *slog.Logger
}

// NewOAuth returns the OAuth endpoints handler.
func NewOAuth(cfg OAuthConfig) *OAuth {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &OAuth{srv: cfg.Server, adminAuth: cfg.AdminAuth, log: log}
}

// Register adds the OAuth endpoints to mux.
func (h *OAuth) Register(mux *http.ServeMux) {
	mux.HandleFunc("GET "+PathOAuthMetadata, h.guard(h.metadata))
	mux.HandleFunc("GET "+PathOAuthJWKS, h.guard(h.jwks))
	mux.HandleFunc("POST "+PathOAuthToken, h.guard(h.token))
	mux.HandleFunc("POST "+PathOAuthIntrospect, h.guard(h.introspect))
	mux.HandleFunc("POST "+PathOAuthRevoke, h.guard(h.revoke))
	mux.HandleFunc("POST "+PathOAuthRegister, h.guard(h.register))
}

// register serves RFC 7591 dynamic client registration: a JSON body of
// at most token.MaxRegistrationLen bytes; 201 with the client's metadata
// and its new client_id, or an RFC 7591 §3.2.2 error.
func (h *OAuth) register(w http.ResponseWriter, r *http.Request) {
	writeErr := func(e *token.RegistrationError) {
		if e.Status >= 500 {
			h.log.ErrorContext(r.Context(), "client registration failed", "err", e.Unwrap())
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		writeOAuthJSON(w, e.Status, oauthErrorBody{Error: e.Code, Description: e.Description})
	}
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		writeErr(&token.RegistrationError{Code: "invalid_client_metadata", Description: "the request body must be application/json", Status: http.StatusBadRequest})
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, token.MaxRegistrationLen))
	if err != nil {
		writeErr(&token.RegistrationError{Code: "invalid_client_metadata", Description: "the request body is too large or unreadable", Status: http.StatusRequestEntityTooLarge})
		return
	}
	md, err := h.srv.RegisterClient(r.Context(), body)
	if err != nil {
		writeErr(token.AsRegistrationError(err))
		return
	}
	writeOAuthJSON(w, http.StatusCreated, md)
}

// guard turns a panic into an OAuth error instead of a dropped connection
// or a stack trace.
func (h *OAuth) guard(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				h.log.ErrorContext(r.Context(), "oauth handler panic", "path", r.URL.Path, "panic", p)
				h.writeOAuthError(w, r, token.AsError(errors.New("panic")))
			}
		}()
		next(w, r)
	}
}

func (h *OAuth) metadata(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Cache-Control", "public, max-age=300")
	writeOAuthJSON(w, http.StatusOK, h.srv.Metadata())
}

func (h *OAuth) jwks(w http.ResponseWriter, _ *http.Request) {
	// Short caching: a rotated key signs at once, and relying parties
	// refetch on an unknown kid.
	w.Header().Set("Cache-Control", "public, max-age=60")
	b, err := json.Marshal(h.srv.Keyring().JWKS())
	if err != nil {
		writeOAuthJSON(w, http.StatusServiceUnavailable, oauthErrorBody{Error: token.CodeTemporarilyUnavailable})
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

func (h *OAuth) token(w http.ResponseWriter, r *http.Request) {
	form, err := readForm(w, r)
	if err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	if r.Header.Get("Authorization") != "" {
		h.writeOAuthError(w, r, &token.Error{Code: token.CodeInvalidClient, Status: http.StatusUnauthorized,
			Description: "only private_key_jwt client authentication is supported"})
		return
	}
	req, err := token.ParseTokenRequest(form)
	if err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	switch proofs := r.Header.Values("DPoP"); len(proofs) {
	case 0:
	case 1:
		req.DPoPProof = proofs[0]
	default:
		h.writeOAuthError(w, r, &token.Error{Code: token.CodeInvalidDPoPProof, Status: http.StatusBadRequest,
			Description: "at most one DPoP header is allowed"})
		return
	}
	resp, err := h.srv.Token(r.Context(), req)
	if err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	writeOAuthJSON(w, http.StatusOK, resp)
}

// caller authenticates an introspection or revocation caller: an admin
// (AdminAuth) or an agent's private_key_jwt client assertion.
func (h *OAuth) caller(r *http.Request, form url.Values) (token.Caller, error) {
	if h.adminAuth != nil && h.adminAuth(r) {
		return token.Caller{Admin: true}, nil
	}
	if r.Header.Get("Authorization") != "" {
		return token.Caller{}, &token.Error{Code: token.CodeInvalidClient, Status: http.StatusUnauthorized,
			Description: "the credentials in the Authorization header are not accepted"}
	}
	agent, err := h.srv.AuthenticateClient(r.Context(), form.Get("client_id"), form.Get("client_assertion_type"), form.Get("client_assertion"))
	if err != nil {
		return token.Caller{}, err
	}
	return token.Caller{Agent: agent.ID}, nil
}

// tokenRequest reads the form of an introspection or revocation request,
// authenticates its caller and returns the token it names and the form.
// It writes the OAuth error itself and returns ok=false on any failure.
func (h *OAuth) tokenRequest(w http.ResponseWriter, r *http.Request) (caller token.Caller, raw string, form url.Values, ok bool) {
	form, err := readForm(w, r)
	if err == nil {
		err = token.CheckParams(form)
	}
	if err == nil {
		caller, err = h.caller(r, form)
	}
	if err == nil && form.Get("token") == "" {
		err = &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusBadRequest, Description: "token is required"}
	}
	if err != nil {
		h.writeOAuthError(w, r, err)
		return token.Caller{}, "", nil, false
	}
	return caller, form.Get("token"), form, true
}

func (h *OAuth) introspect(w http.ResponseWriter, r *http.Request) {
	caller, raw, _, ok := h.tokenRequest(w, r)
	if !ok {
		return
	}
	writeOAuthJSON(w, http.StatusOK, h.srv.Introspect(r.Context(), caller, raw))
}

// revoke serves RFC 7009 revocation. With the extension parameter
// end_task=true (and an optional reason) the task a task token is for
// ends too (token.Server.EndTask), and the answer is a JSON object
// saying so — a server without the extension answers an empty 200,
// which a client asking to end its task must not take for an ending.
func (h *OAuth) revoke(w http.ResponseWriter, r *http.Request) {
	caller, raw, form, ok := h.tokenRequest(w, r)
	if !ok {
		return
	}
	switch end := form.Get("end_task"); {
	case end == "true":
		ended, err := h.srv.EndTask(r.Context(), caller, raw, form.Get("reason"))
		if err != nil {
			h.writeOAuthError(w, r, err)
			return
		}
		writeOAuthJSON(w, http.StatusOK, ended)
		return
	case end != "" || form.Has("end_task") || form.Has("reason"):
		h.writeOAuthError(w, r, &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusBadRequest,
			Description: "end_task must be \"true\" (and reason is given only with it)"})
		return
	}
	if err := h.srv.Revoke(r.Context(), caller, raw); err != nil {
		h.writeOAuthError(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}

// readForm reads an application/x-www-form-urlencoded body of at most
// MaxOAuthBodySize bytes. Parameters in the query string are refused: they
// would end up in logs.
func readForm(w http.ResponseWriter, r *http.Request) (url.Values, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/x-www-form-urlencoded" {
		return nil, &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusBadRequest,
			Description: "the request body must be application/x-www-form-urlencoded"}
	}
	if r.URL.RawQuery != "" {
		return nil, &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusBadRequest,
			Description: "parameters must be sent in the request body"}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxOAuthBodySize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusRequestEntityTooLarge,
				Description: "the request body is too large"}
		}
		return nil, &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusBadRequest, Description: "the request body could not be read"}
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, &token.Error{Code: token.CodeInvalidRequest, Status: http.StatusBadRequest, Description: "the request body is not valid form encoding"}
	}
	return form, nil
}

// oauthErrorBody is an OAuth error response (RFC 6749 §5.2).
type oauthErrorBody struct {
	Error       string `json:"error"`
	Description string `json:"error_description,omitempty"`
}

// writeOAuthError writes err as an OAuth error; this is the one place OAuth
// errors become HTTP statuses. Internal causes go to the log only.
func (h *OAuth) writeOAuthError(w http.ResponseWriter, r *http.Request, err error) {
	e := token.AsError(err)
	status := e.Status
	if status < 400 || status > 599 || status == http.StatusInternalServerError {
		status = http.StatusServiceUnavailable
	}
	if status >= 500 {
		h.log.ErrorContext(r.Context(), "oauth request failed", "path", r.URL.Path, "code", e.Code, "err", err)
		w.Header().Set("Retry-After", fault.RetryAfter)
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer error="`+e.Code+`"`)
	}
	writeOAuthJSON(w, status, oauthErrorBody{Error: e.Code, Description: e.Description})
}

// writeOAuthJSON writes v as JSON with Cache-Control: no-store (RFC 6749
// §5.1) unless the handler set its own caching.
func writeOAuthJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status = http.StatusServiceUnavailable
		b = []byte(`{"error":"temporarily_unavailable"}`)
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "application/json")
	if hdr.Get("Cache-Control") == "" {
		hdr.Set("Cache-Control", "no-store")
		hdr.Set("Pragma", "no-cache")
	}
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
