package token

import (
	"context"
	"errors"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// Grant types and PKCE of the authorization code flow (OAuth 2.1).
const (
	GrantAuthorizationCode = "authorization_code"
	GrantRefreshToken      = "refresh_token"
	// PKCEMethodS256 is the only code_challenge_method accepted.
	PKCEMethodS256 = "S256"
	// DefaultCodeTTL is how long an authorization code lives.
	DefaultCodeTTL = time.Minute
	// MaxStateLen bounds the client's state.
	MaxStateLen = 1024
)

// pkceValue is a PKCE code challenge (S256: 43 base64url characters) or
// verifier (43 to 128 unreserved characters, RFC 7636 §4.1).
var (
	pkceChallenge = regexp.MustCompile(`^[A-Za-z0-9_-]{43}$`)
	pkceVerifier  = regexp.MustCompile(`^[A-Za-z0-9._~-]{43,128}$`)
)

// AuthorizationRequest is a checked authorization request (OAuth 2.1
// §4.1.1 with RFC 8707 resource): the client is known and allowed, the
// redirect URI is one of its own byte for byte, PKCE is S256.
type AuthorizationRequest struct {
	Client      *Client
	RedirectURI string
	State       string
	Challenge   string
	// Resource is the audience the tokens will have: one of the
	// gateway's resources.
	Resource string
	// Scope is what the client asked for, as sent.
	Scope string
}

// AuthorizeError is a refused authorization request. Redirect says whether
// the refusal may go back to the client's redirect URI (it is the client's
// own); otherwise it is shown to the person only.
type AuthorizeError struct {
	Code        string
	Description string
	Redirect    bool
	cause       error
}

func (e *AuthorizeError) Error() string { return e.Code + ": " + e.Description }

// Unwrap returns the internal cause.
func (e *AuthorizeError) Unwrap() error { return e.cause }

// RedirectURL is where the refusal goes: the redirect URI with error,
// error_description, state and iss (RFC 9207).
func (s *Server) RedirectURL(req *AuthorizationRequest, params url.Values) string {
	if req.State != "" {
		params.Set("state", req.State)
	}
	params.Set("iss", s.cfg.Issuer)
	sep := "?"
	if strings.Contains(req.RedirectURI, "?") {
		sep = "&"
	}
	return req.RedirectURI + sep + params.Encode()
}

// ErrorRedirect is the redirect URL carrying e to the client.
func (s *Server) ErrorRedirect(req *AuthorizationRequest, e *AuthorizeError) string {
	return s.RedirectURL(req, url.Values{"error": {e.Code}, "error_description": {e.Description}})
}

// ParseAuthorization checks an authorization request's parameters. The
// client and the redirect URI are checked first: until they hold, a
// refusal is never a redirect (no open redirector). Every refusal is
// recorded (consent.refused). The request returned with a redirectable
// error lets the caller send it back.
func (s *Server) ParseAuthorization(ctx context.Context, q url.Values) (*AuthorizationRequest, error) {
	req, err := s.parseAuthorization(ctx, q)
	if err != nil {
		var ae *AuthorizeError
		if !errors.As(err, &ae) {
			ae = &AuthorizeError{Code: "invalid_request", Description: err.Error(), cause: err}
			var ce *ClientError
			if errors.As(err, &ce) {
				ae.Description = ce.Reason
			}
		}
		s.recordConsent(ctx, audit.TypeConsentRefused, audit.DecisionDeny, ae.Description, map[string]string{
			"client_id": audit.Clip(q.Get("client_id"), 256), "error": ae.Code})
		return req, ae
	}
	return req, nil
}

func (s *Server) parseAuthorization(ctx context.Context, q url.Values) (*AuthorizationRequest, error) {
	if err := CheckParams(q); err != nil {
		return nil, &AuthorizeError{Code: "invalid_request", Description: AsError(err).Description}
	}
	c, err := s.ResolveClient(ctx, q.Get("client_id"))
	if err != nil {
		return nil, err
	}
	redirect := q.Get("redirect_uri")
	if redirect == "" {
		return nil, &AuthorizeError{Code: "invalid_request", Description: "redirect_uri is required"}
	}
	if !slices.Contains(c.RedirectURIs, redirect) {
		return nil, &AuthorizeError{Code: "invalid_request", Description: "redirect_uri is not one of the client's registered redirect URIs (they are compared byte for byte)"}
	}
	req := &AuthorizationRequest{Client: c, RedirectURI: redirect, State: q.Get("state"), Scope: q.Get("scope")}
	fail := func(code, format string, args ...any) (*AuthorizationRequest, error) {
		e := AsError(errInvalidRequest(format, args...))
		return req, &AuthorizeError{Code: code, Description: e.Description, Redirect: true}
	}
	if len(req.State) > MaxStateLen {
		req.State = ""
		return fail("invalid_request", "state is longer than %d bytes", MaxStateLen)
	}
	switch {
	case q.Get("response_type") != "code":
		return fail("unsupported_response_type", "response_type must be code")
	case q.Get("code_challenge") == "":
		return fail("invalid_request", "code_challenge is required (PKCE)")
	case q.Get("code_challenge_method") != PKCEMethodS256:
		return fail("invalid_request", "code_challenge_method must be S256")
	case !pkceChallenge.MatchString(q.Get("code_challenge")):
		return fail("invalid_request", "code_challenge must be 43 base64url characters (S256)")
	case q.Has("request") || q.Has("request_uri"):
		return fail("request_not_supported", "request objects are not supported")
	}
	req.Challenge = q.Get("code_challenge")
	gateways := s.cfg.Audiences[1:]
	switch res := q.Get("resource"); {
	case res == "" && len(gateways) == 1:
		req.Resource = gateways[0]
	case res == "":
		return fail("invalid_target", "resource is required: name the MCP server (RFC 8707)")
	case !slices.Contains(gateways, res):
		return fail("invalid_target", "resource is not an MCP server this gateway serves")
	default:
		req.Resource = res
	}
	return req, nil
}

// Consent is a signed-in person's answer to an authorization request.
type Consent struct {
	Request *AuthorizationRequest
	// Principal is the person (identity.Human.Principal), proven by their
	// sign-in; PersonKey their issuer and subject, for the record.
	Principal string
	PersonKey string
	Purpose   string
	Scope     string
	TTL       time.Duration
}

// ConsentOffer is what the consent page offers: the client's agent and its
// entitlement, the scope to prefill (the client's request when it parses
// and fits, the entitlement's otherwise) and the longest lifetime.
type ConsentOffer struct {
	Agent       string
	Tier        string
	Entitlement *task.Entitlement
	Scope       string
	MaxTTL      time.Duration
	DefaultTTL  time.Duration
}

// Offer returns what the consent page for req offers owner.
func (s *Server) Offer(ctx context.Context, req *AuthorizationRequest, principal string) (*ConsentOffer, error) {
	agent, ent, err := s.clientAgent(ctx, req.Client, principal)
	if err != nil {
		return nil, err
	}
	o := &ConsentOffer{Agent: agent.ID.String(), Tier: string(agent.Tier), Entitlement: ent, Scope: ent.Scope.String(),
		MaxTTL: min(ent.MaxTaskTTL, s.cfg.MaxTaskLifetime)}
	o.DefaultTTL = min(s.cfg.DefaultTaskTTL, o.MaxTTL)
	if sc, err := task.ParseScope(req.Scope); err == nil && len(sc) > 0 && ent.Scope.Covers(sc) {
		o.Scope = sc.String()
	}
	return o, nil
}

// Approve starts the task a person consented to — the client's agent, on
// behalf of the person, for the purpose, scope and lifetime they chose —
// and returns the redirect URL that carries its authorization code. The
// task must fit the agent's entitlement. Errors are *Error.
func (s *Server) Approve(ctx context.Context, c Consent) (string, error) {
	info := &reqInfo{grant: GrantAuthorizationCode, claimed: c.Request.Client.ID, details: map[string]string{
		"client_id": audit.Clip(c.Request.Client.ID, 256), "consented_by": audit.Clip(c.PersonKey, 512)}}
	redirect, err := s.approve(ctx, c, info)
	if err != nil {
		e := s.refuse(ctx, info, err)
		s.recordConsent(ctx, audit.TypeConsentRefused, audit.DecisionDeny, AsError(e).Description, info.details)
		return "", e
	}
	return redirect, nil
}

func (s *Server) approve(ctx context.Context, c Consent, info *reqInfo) (string, error) {
	if err := checkPrincipal(c.Principal); err != nil {
		return "", errInvalidRequest("the person cannot be a principal: %v", err)
	}
	agent, ent, err := s.clientAgent(ctx, c.Request.Client, c.Principal)
	if err != nil {
		return "", err
	}
	info.agent = agent.ID.String()
	if strings.TrimSpace(c.Purpose) == "" {
		return "", errInvalidRequest("a purpose is required")
	}
	scope, err := task.ParseScope(c.Scope)
	if err != nil {
		return "", errInvalidScope(err, "%s", err.Error())
	}
	if c.TTL <= 0 || c.TTL > s.cfg.MaxTaskLifetime {
		return "", errInvalidRequest("the lifetime must be positive and at most %s", s.cfg.MaxTaskLifetime)
	}
	now := s.cfg.Now()
	t := &task.Task{
		ID: task.NewID(), Agent: agent.ID, OnBehalfOf: c.Principal, Principal: c.Principal, Purpose: c.Purpose,
		Scope: scope, Sensitivity: lowest(task.SensitivityInternal, ent.MaxSensitivity), Actors: []identity.ID{agent.ID},
		Status: task.StatusActive, CreatedAt: now, ExpiresAt: now.Add(c.TTL),
	}
	info.task, info.obo, info.chain = string(t.ID), t.OnBehalfOf, []string{agent.ID.String()}
	if err := t.Validate(); err != nil {
		return "", errInvalidRequest("%s", err.Error())
	}
	if err := admit(ent, t, info); err != nil {
		return "", err
	}
	if err := s.startRecorded(ctx, audit.TypeTaskStarted, t, info); err != nil {
		return "", err
	}
	code := newSecret("mac_")
	g := &Grant{Kind: GrantKindCode, Hash: GrantHash(code), Task: t.ID, Agent: agent.ID, ClientID: c.Request.Client.ID,
		RedirectURI: c.Request.RedirectURI, Challenge: c.Request.Challenge, Resource: c.Request.Resource, Scope: scope.String(),
		CreatedAt: now, ExpiresAt: now.Add(s.cfg.CodeTTL)}
	g.Family = g.Hash
	if err := s.cfg.Grants.AddGrant(ctx, g); err != nil {
		return "", errUnavailable(err)
	}
	d := map[string]string{"client_id": info.details["client_id"], "consented_by": info.details["consented_by"],
		"scope": t.Scope.String(), "resource": g.Resource, "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339)}
	if err := s.record(ctx, audit.Event{Type: audit.TypeConsentGranted, Actor: c.Principal, Agent: agent.ID.String(),
		Task: string(t.ID), OnBehalfOf: c.Principal, Decision: audit.DecisionAllow, Details: d}); err != nil {
		return "", err
	}
	return s.RedirectURL(c.Request, url.Values{"code": {code}}), nil
}

// Deny records that the person refused req and returns the redirect URL
// that tells the client (access_denied).
func (s *Server) Deny(ctx context.Context, req *AuthorizationRequest, personKey string) string {
	s.recordConsent(ctx, audit.TypeConsentRefused, audit.DecisionDeny, "the person denied the request", map[string]string{
		"client_id": audit.Clip(req.Client.ID, 256), "error": "access_denied", "refused_by": audit.Clip(personKey, 512)})
	return s.ErrorRedirect(req, &AuthorizeError{Code: "access_denied", Description: "the person denied the request"})
}

func (s *Server) recordConsent(ctx context.Context, typ audit.Type, decision, reason string, d map[string]string) {
	if err := s.record(ctx, audit.Event{Type: typ, Decision: decision, Reason: reason, Details: d}); err != nil {
		s.log.ErrorContext(ctx, "recording a consent event failed", "err", err)
	}
}
