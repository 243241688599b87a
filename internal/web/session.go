package web

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/approval"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/token"
)

func randomToken() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// cookieName is the session cookie: __Host- under TLS, so that it is
// Secure, host-only and path /.
func (s *Server) cookieName() string {
	if s.cfg.Secure {
		return "__Host-mandate_session"
	}
	return "mandate_session"
}

func (s *Server) setCookie(w http.ResponseWriter, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge, HttpOnly: true,
		Secure: s.cfg.Secure, SameSite: http.SameSiteLaxMode})
}

// session returns the live session the request's cookie names and its
// person, or nil. A cookie mandate did not issue names no session: only
// the hash of a secret mandate made is ever looked up.
func (s *Server) session(r *http.Request) (*identity.Session, *identity.Human) {
	c, err := r.Cookie(s.cookieName())
	if err != nil || c.Value == "" || len(c.Value) > 128 {
		return nil, nil
	}
	now := s.cfg.Now()
	sess, err := s.cfg.People.GetSession(r.Context(), token.GrantHash(c.Value), now)
	if err != nil {
		if !errors.Is(err, identity.ErrSessionNotFound) {
			s.log.ErrorContext(r.Context(), "reading a session failed", "err", err)
		}
		return nil, nil
	}
	iss, sub, _ := strings.Cut(sess.Human, " ")
	h, err := s.cfg.People.GetHuman(r.Context(), iss, sub)
	if err != nil {
		return nil, nil
	}
	if now.Sub(sess.LastSeen) > s.cfg.SessionTTL/100 {
		_ = s.cfg.People.TouchSession(r.Context(), sess.ID, now)
	}
	return sess, h
}

// signIn records the person, ends the session the browser came with (if
// any: a new sign-in never continues an old or planted session) and
// starts a new one with a new secret and CSRF token.
func (s *Server) signIn(ctx context.Context, w http.ResponseWriter, r *http.Request, h *identity.Human, how string) error {
	now := s.cfg.Now()
	h.LastSeen = now
	if old, err := s.cfg.People.GetHuman(ctx, h.Issuer, h.Subject); err == nil {
		h.CreatedAt = old.CreatedAt
	} else {
		h.CreatedAt = now
	}
	if err := s.cfg.People.UpsertHuman(ctx, h); err != nil {
		return err
	}
	if c, err := r.Cookie(s.cookieName()); err == nil && c.Value != "" && len(c.Value) <= 128 {
		_ = s.cfg.People.RevokeSession(ctx, token.GrantHash(c.Value), "", now)
	}
	secret := randomToken()
	ua := r.UserAgent()
	if len(ua) > 200 {
		ua = ua[:200]
	}
	sess := &identity.Session{ID: token.GrantHash(secret), Human: h.Key(), CSRF: randomToken(), UserAgent: strings.ToValidUTF8(ua, "?"),
		CreatedAt: now, LastSeen: now, ExpiresAt: now.Add(s.cfg.SessionTTL)}
	if err := s.cfg.People.CreateSession(ctx, sess); err != nil {
		return err
	}
	if err := s.record(ctx, audit.Event{Type: audit.TypePersonSignedIn, Actor: h.Principal, OnBehalfOf: h.Principal, Decision: audit.DecisionAllow,
		Details: map[string]string{"issuer": audit.Clip(h.Issuer, 256), "subject": audit.Clip(h.Subject, 256), "method": how}}); err != nil {
		_ = s.cfg.People.RevokeSession(ctx, sess.ID, "", now)
		return err
	}
	s.setCookie(w, s.cookieName(), secret, int(s.cfg.SessionTTL.Seconds()))
	return nil
}

// refuseSignIn records a refused sign-in and shows why.
func (s *Server) refuseSignIn(w http.ResponseWriter, r *http.Request, status int, reason string, d map[string]string) {
	_ = s.record(r.Context(), audit.Event{Type: audit.TypePersonSignInRefused, Decision: audit.DecisionDeny, Reason: reason, Details: d})
	s.fail(w, r, status, "Sign-in refused: "+reason)
}

func (s *Server) signout(w http.ResponseWriter, r *http.Request) {
	sess, h := s.session(r)
	if sess == nil {
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	if !s.readForm(w, r, sess) {
		return
	}
	_ = s.cfg.People.RevokeSession(r.Context(), sess.ID, sess.Human, s.cfg.Now())
	_ = s.record(r.Context(), audit.Event{Type: audit.TypeSessionEnded, Actor: h.Principal, Decision: audit.DecisionAllow, Reason: "signed out"})
	s.setCookie(w, s.cookieName(), "", -1)
	http.Redirect(w, r, "/signin", http.StatusSeeOther)
}

// safeNext returns next if it is a path on this server that sign-in may
// return to (the authorization endpoint or /me), otherwise /me: sign-in
// is never an open redirector.
func safeNext(next string) string {
	switch {
	case next == "/me":
		return next
	case strings.HasPrefix(next, "/oauth/authorize?") && !strings.ContainsAny(next, "\\\r\n") && !strings.HasPrefix(next, "//"):
		return next
	case next == "/approvals":
		return next
	case strings.HasPrefix(next, "/approvals/"):
		// An approval page, named by a canonical request id only (a link
		// from a notification: the person lands where it pointed).
		if _, err := approval.ParseID(strings.TrimPrefix(next, "/approvals/")); err == nil {
			return next
		}
	}
	return "/me"
}
