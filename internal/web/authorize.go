package web

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/token"
)

// ttlChoices are the lifetimes the consent page offers, up to the ceiling.
var ttlChoices = []time.Duration{15 * time.Minute, time.Hour, 4 * time.Hour, 8 * time.Hour, 24 * time.Hour, 7 * 24 * time.Hour}

// authorize is the OAuth authorization endpoint (GET): the request is
// checked (client, redirect URI byte for byte, PKCE S256, resource); a
// person who is not signed in is sent to sign in first; then the consent
// page.
func (s *Server) authorize(w http.ResponseWriter, r *http.Request) {
	req, ok := s.parse(w, r, r.URL.Query())
	if !ok {
		return
	}
	sess, h := s.session(r)
	if sess == nil {
		http.Redirect(w, r, "/signin?"+url.Values{"next": {"/oauth/authorize?" + r.URL.RawQuery}}.Encode(), http.StatusFound)
		return
	}
	s.consentPage(w, r, req, sess, h, r.URL.RawQuery)
}

// parse checks an authorization request and answers a refusal: on a page
// when the client or redirect URI is in doubt, by redirect otherwise.
func (s *Server) parse(w http.ResponseWriter, r *http.Request, q url.Values) (*token.AuthorizationRequest, bool) {
	req, err := s.cfg.Authz.ParseAuthorization(r.Context(), q)
	if err == nil {
		return req, true
	}
	var ae *token.AuthorizeError
	if errors.As(err, &ae) && ae.Redirect && req != nil {
		http.Redirect(w, r, s.cfg.Authz.ErrorRedirect(req, ae), http.StatusFound)
		return nil, false
	}
	msg := err.Error()
	if ae != nil {
		msg = ae.Description
	}
	s.fail(w, r, http.StatusBadRequest, "This application's request was refused: "+msg)
	return nil, false
}

type ttlOption struct {
	Value, Label string
	Selected     bool
}

func (s *Server) consentPage(w http.ResponseWriter, r *http.Request, req *token.AuthorizationRequest, sess *identity.Session, h *identity.Human, raw string) {
	offer, err := s.cfg.Authz.Offer(r.Context(), req, h.Principal)
	if err != nil {
		s.fail(w, r, http.StatusForbidden, "This application cannot be authorized: "+token.AsError(err).Description)
		return
	}
	var ttls []ttlOption
	for _, d := range ttlChoices {
		if d <= offer.MaxTTL {
			ttls = append(ttls, ttlOption{Value: d.String(), Label: human(d), Selected: d == offer.DefaultTTL})
		}
	}
	if len(ttls) == 0 || offer.MaxTTL != ttlChoices[len(ttls)-1] {
		ttls = append(ttls, ttlOption{Value: offer.MaxTTL.String(), Label: human(offer.MaxTTL) + " (the ceiling)", Selected: offer.DefaultTTL == offer.MaxTTL})
	}
	name := req.Client.Name
	if name == "" {
		name = req.Client.ID
	}
	w.Header().Set("Content-Security-Policy", csp(formTarget(req.RedirectURI)))
	s.render(w, http.StatusOK, "consent.html", struct {
		page
		ClientName, ClientID, Resource, Requested, RedirectURI, CSRF, RawRequest, Purpose, MaxTTL string
		Offer                                                                                     *token.ConsentOffer
		TTLs                                                                                      []ttlOption
	}{page{Title: "Authorize " + name, Person: h}, name, req.Client.ID, req.Resource, req.Scope, req.RedirectURI, sess.CSRF, raw,
		"Work with " + name + " on " + req.Resource, human(offer.MaxTTL), offer, ttls})
}

// formTarget is the CSP source of a redirect URI: its origin, or its
// scheme for a private-use scheme.
func formTarget(redirect string) string {
	u, err := url.Parse(redirect)
	if err != nil {
		return ""
	}
	if u.Host == "" {
		return u.Scheme + ":"
	}
	return u.Scheme + "://" + u.Host
}

func human(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return fmt.Sprintf("%d day(s)", d/(24*time.Hour))
	case d%time.Hour == 0:
		return fmt.Sprintf("%d hour(s)", d/time.Hour)
	}
	return d.String()
}

// decide takes the person's answer (POST, CSRF-checked): the request is
// checked again from scratch, then approved — the task starts on the
// person's behalf and the client gets its code — or denied.
func (s *Server) decide(w http.ResponseWriter, r *http.Request) {
	sess, h := s.session(r)
	if sess == nil {
		s.fail(w, r, http.StatusForbidden, "You are not signed in (or your session ended). Start again from the application.")
		return
	}
	if !s.readForm(w, r, sess) {
		return
	}
	q, err := url.ParseQuery(r.PostForm.Get("request"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "The authorization request is malformed.")
		return
	}
	req, ok := s.parse(w, r, q)
	if !ok {
		return
	}
	if r.PostForm.Get("decision") != "approve" {
		http.Redirect(w, r, s.cfg.Authz.Deny(r.Context(), req, h.Key()), http.StatusSeeOther)
		return
	}
	ttl, err := time.ParseDuration(r.PostForm.Get("ttl"))
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "The lifetime is not a duration.")
		return
	}
	to, err := s.cfg.Authz.Approve(r.Context(), token.Consent{Request: req, Principal: h.Principal, PersonKey: h.Key(),
		Purpose: r.PostForm.Get("purpose"), Scope: r.PostForm.Get("scope"), TTL: ttl})
	if err != nil {
		s.fail(w, r, http.StatusBadRequest, "The task could not be started: "+token.AsError(err).Description)
		return
	}
	http.Redirect(w, r, to, http.StatusSeeOther)
}
