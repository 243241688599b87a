package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/token"
)

// IdP is an OpenID Connect provider people sign in at. mandate is a
// confidential relying party with the authorization code flow, state,
// nonce and PKCE (S256).
type IdP struct {
	// Name appears in the redirect URI: PublicURL/signin/oidc/<Name>/callback.
	Name    string
	Display string
	Issuer  string
	// ClientID and ClientSecret are mandate's registration at the IdP.
	ClientID     string
	ClientSecret string
	// Scopes requested besides openid (default email profile).
	Scopes []string
	// PrincipalClaim names people on tasks: "email" (default; refused
	// when email_verified is false) or "sub".
	PrincipalClaim string
	// GroupsClaim holds the person's groups (default "groups").
	GroupsClaim string
	// AdminGroups: members of any are mandate admins on the web.
	AdminGroups []string
}

var idpName = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,31}$`)

type idp struct {
	cfg      IdP
	redirect string

	mu       sync.Mutex
	provider *oidc.Provider
	issParam bool // the provider sends iss in its responses (RFC 9207)
}

func errDuplicateIdP(name string) error {
	return fmt.Errorf("web: identity provider %q is configured twice", name)
}

func newIdP(c IdP, publicURL string) (*idp, error) {
	switch {
	case !idpName.MatchString(c.Name):
		return nil, fmt.Errorf("web: identity provider name %q must be 1-32 lower-case letters, digits or '-'", c.Name)
	case c.Issuer == "" || c.ClientID == "":
		return nil, fmt.Errorf("web: identity provider %q needs an issuer and a client_id", c.Name)
	case c.PrincipalClaim != "" && c.PrincipalClaim != "email" && c.PrincipalClaim != "sub":
		return nil, fmt.Errorf("web: identity provider %q: principal_claim must be email or sub", c.Name)
	}
	if c.Display == "" {
		c.Display = c.Name
	}
	if c.PrincipalClaim == "" {
		c.PrincipalClaim = "email"
	}
	if c.GroupsClaim == "" {
		c.GroupsClaim = "groups"
	}
	if c.Scopes == nil {
		c.Scopes = []string{"email", "profile"}
	}
	return &idp{cfg: c, redirect: strings.TrimSuffix(publicURL, "/") + "/signin/oidc/" + c.Name + "/callback"}, nil
}

// discover fetches the provider's metadata once (go-oidc refuses
// metadata whose issuer is not the configured one).
func (p *idp) discover(ctx context.Context, hc *http.Client) (*oidc.Provider, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.provider != nil {
		return p.provider, nil
	}
	pr, err := oidc.NewProvider(oidc.ClientContext(ctx, hc), p.cfg.Issuer)
	if err != nil {
		return nil, err
	}
	var md struct {
		ISS bool `json:"authorization_response_iss_parameter_supported"`
	}
	_ = pr.Claims(&md)
	p.provider, p.issParam = pr, md.ISS
	return pr, nil
}

func (p *idp) oauth2(pr *oidc.Provider) *oauth2.Config {
	return &oauth2.Config{ClientID: p.cfg.ClientID, ClientSecret: p.cfg.ClientSecret, Endpoint: pr.Endpoint(),
		RedirectURL: p.redirect, Scopes: append([]string{oidc.ScopeOpenID}, p.cfg.Scopes...)}
}

// flow is a sign-in at an IdP in progress, kept server side; the browser
// holds its ID in a short-lived cookie, so the callback must come back to
// the browser that started it (login CSRF).
type flow struct {
	idp, state, nonce, verifier, next string
	expires                           time.Time
}

const flowCookie = "mandate_signin"

func (s *Server) signinPage(w http.ResponseWriter, r *http.Request) {
	type entry struct{ Name, Display string }
	var idps []entry
	for _, p := range s.order {
		idps = append(idps, entry{p.cfg.Name, p.cfg.Display})
	}
	s.render(w, http.StatusOK, "signin.html", struct {
		page
		IdPs []entry
		Next string
	}{page{Title: "Sign in"}, idps, safeNext(r.URL.Query().Get("next"))})
}

func (s *Server) signinOIDC(w http.ResponseWriter, r *http.Request) {
	p := s.idps[r.PathValue("idp")]
	if p == nil {
		s.fail(w, r, http.StatusNotFound, "There is no such identity provider here.")
		return
	}
	pr, err := p.discover(r.Context(), s.cfg.HTTPClient)
	if err != nil {
		s.log.ErrorContext(r.Context(), "identity provider discovery failed", "idp", p.cfg.Name, "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "The identity provider cannot be reached right now; try again shortly.")
		return
	}
	f := &flow{idp: p.cfg.Name, state: randomToken(), nonce: randomToken(), verifier: oauth2.GenerateVerifier(),
		next: safeNext(r.URL.Query().Get("next")), expires: s.cfg.Now().Add(flowTTL)}
	id := randomToken()
	if !s.putFlow(id, f) {
		s.fail(w, r, http.StatusServiceUnavailable, "Too many sign-ins are in progress; try again shortly.")
		return
	}
	s.setCookie(w, flowCookie, id, int(flowTTL.Seconds()))
	http.Redirect(w, r, p.oauth2(pr).AuthCodeURL(f.state, oidc.Nonce(f.nonce), oauth2.S256ChallengeOption(f.verifier)), http.StatusFound)
}

func (s *Server) putFlow(id string, f *flow) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for k, v := range s.flows {
		if now.After(v.expires) {
			delete(s.flows, k)
		}
	}
	if len(s.flows) >= maxPending {
		return false
	}
	s.flows[id] = f
	return true
}

// takeFlow removes and returns the flow the request's cookie names: each
// is used once, so a replayed callback finds nothing.
func (s *Server) takeFlow(r *http.Request) *flow {
	c, err := r.Cookie(flowCookie)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	f := s.flows[c.Value]
	delete(s.flows, c.Value)
	if f == nil || s.cfg.Now().After(f.expires) {
		return nil
	}
	return f
}

func (s *Server) callbackOIDC(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("idp")
	p := s.idps[name]
	d := map[string]string{"idp": name}
	if p == nil {
		s.fail(w, r, http.StatusNotFound, "There is no such identity provider here.")
		return
	}
	q := r.URL.Query()
	f := s.takeFlow(r)
	s.setCookie(w, flowCookie, "", -1)
	switch {
	case f == nil || f.idp != name:
		s.refuseSignIn(w, r, http.StatusBadRequest, "this sign-in was not started in this browser, was already completed, or took too long", d)
		return
	case q.Get("state") == "" || subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(f.state)) != 1:
		s.refuseSignIn(w, r, http.StatusBadRequest, "the state returned by the identity provider is missing or wrong", d)
		return
	}
	pr, err := p.discover(r.Context(), s.cfg.HTTPClient)
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "The identity provider cannot be reached right now; try again shortly.")
		return
	}
	// RFC 9207: a response naming another issuer is a mix-up; a provider
	// that sends iss must always send it.
	if iss := q.Get("iss"); iss != "" && iss != p.cfg.Issuer || iss == "" && p.issParam {
		s.refuseSignIn(w, r, http.StatusBadRequest, "the response names another issuer than the identity provider it was sent to (mix-up)", d)
		return
	}
	if e := q.Get("error"); e != "" {
		s.refuseSignIn(w, r, http.StatusForbidden, "the identity provider answered "+clipText(e), d)
		return
	}
	ctx := oidc.ClientContext(r.Context(), s.cfg.HTTPClient)
	tok, err := p.oauth2(pr).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(f.verifier))
	if err != nil {
		s.log.InfoContext(r.Context(), "code exchange at the identity provider failed", "idp", name, "err", err)
		s.refuseSignIn(w, r, http.StatusBadGateway, "the identity provider did not accept the sign-in code", d)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	h, err := s.verifyIDToken(ctx, p, pr, raw, f.nonce)
	if err != nil {
		s.refuseSignIn(w, r, http.StatusForbidden, err.Error(), d)
		return
	}
	if err := s.signIn(r.Context(), w, r, h, "oidc:"+name); err != nil {
		s.log.ErrorContext(r.Context(), "starting a session failed", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "The sign-in could not be recorded; try again shortly.")
		return
	}
	http.Redirect(w, r, f.next, http.StatusSeeOther)
}

// verifyIDToken checks the ID token (signature by the provider's keys,
// iss, aud = mandate's client ID, exp, nonce) and turns it into a person.
func (s *Server) verifyIDToken(ctx context.Context, p *idp, pr *oidc.Provider, raw, nonce string) (*identity.Human, error) {
	if raw == "" {
		return nil, errors.New("the identity provider sent no ID token")
	}
	v := pr.Verifier(&oidc.Config{ClientID: p.cfg.ClientID, Now: s.cfg.Now,
		SupportedSigningAlgs: []string{oidc.RS256, oidc.ES256, oidc.EdDSA, oidc.PS256}})
	idt, err := v.Verify(ctx, raw)
	if err != nil {
		s.log.InfoContext(ctx, "ID token refused", "idp", p.cfg.Name, "err", err)
		return nil, errors.New("the ID token does not verify (signature, issuer, audience or expiry)")
	}
	if idt.Nonce == "" || subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return nil, errors.New("the ID token's nonce is missing or is not this sign-in's")
	}
	var all map[string]any
	var std struct {
		Email    string `json:"email"`
		Verified *bool  `json:"email_verified"`
		Name     string `json:"name"`
	}
	if err := idt.Claims(&all); err != nil || idt.Claims(&std) != nil {
		return nil, errors.New("the ID token's claims are malformed")
	}
	h := &identity.Human{Issuer: idt.Issuer, Subject: idt.Subject, Email: std.Email, Name: clipText(std.Name)}
	if g, ok := all[p.cfg.GroupsClaim].([]any); ok {
		for _, x := range g {
			if gs, ok := x.(string); ok && len(h.Groups) < identity.MaxHumanGroups {
				h.Groups = append(h.Groups, gs)
			}
		}
	}
	h.Admin = slices.ContainsFunc(h.Groups, func(g string) bool { return slices.Contains(p.cfg.AdminGroups, g) })
	h.Principal = idt.Subject
	if p.cfg.PrincipalClaim == "email" {
		if std.Email == "" || std.Verified != nil && !*std.Verified {
			return nil, errors.New("the identity provider did not send a verified email")
		}
		h.Principal = std.Email
	}
	if err := h.Validate(); err != nil || strings.ContainsAny(h.Principal, " \t\r\n") || strings.HasPrefix(h.Principal, "task:") {
		return nil, errors.New("the person's identity cannot name a principal")
	}
	return h, nil
}

// NewLocalLink returns a one-time sign-in link for the local
// administrator, good for ttl (DefaultLinkTTL if zero).
func (s *Server) NewLocalLink(ttl time.Duration) (string, error) {
	if ttl <= 0 {
		ttl = DefaultLinkTTL
	}
	secret := randomToken()
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	for k, exp := range s.links {
		if now.After(exp) {
			delete(s.links, k)
		}
	}
	if len(s.links) >= maxPending {
		return "", errors.New("too many unused sign-in links")
	}
	s.links[token.GrantHash(secret)] = now.Add(ttl)
	return strings.TrimSuffix(s.cfg.PublicURL, "/") + "/signin/local?" + url.Values{"t": {secret}}.Encode(), nil
}

func (s *Server) signinLocal(w http.ResponseWriter, r *http.Request) {
	secret := r.URL.Query().Get("t")
	s.mu.Lock()
	exp, ok := s.links[token.GrantHash(secret)]
	delete(s.links, token.GrantHash(secret))
	s.mu.Unlock()
	if secret == "" || !ok || s.cfg.Now().After(exp) {
		s.refuseSignIn(w, r, http.StatusForbidden, "this sign-in link is unknown, already used or expired; make another with mandate admin login-link",
			map[string]string{"method": "local"})
		return
	}
	h := &identity.Human{Issuer: identity.LocalIssuer, Subject: "admin", Principal: s.cfg.LocalPrincipal, Name: "Local administrator", Admin: true}
	if err := s.signIn(r.Context(), w, r, h, "local"); err != nil {
		s.log.ErrorContext(r.Context(), "starting a session failed", "err", err)
		s.fail(w, r, http.StatusServiceUnavailable, "The sign-in could not be recorded; try again shortly.")
		return
	}
	http.Redirect(w, r, safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
}

func clipText(s string) string {
	if len(s) > 200 {
		s = s[:200]
	}
	return strings.ToValidUTF8(s, "?")
}
