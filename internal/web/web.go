// Package web serves the pages people use: sign-in (OpenID Connect to the
// organisation's identity providers, or the one-time local link of the
// zero-configuration start), the consent page of the OAuth authorization
// endpoint that turns a person's approval into a task mandate, and /me,
// where people see and end their tasks and sessions.
//
// Every page is rendered by html/template from embedded templates, with a
// strict Content-Security-Policy (no script at all, styles from this
// server only), no caching and no framing. Sessions are server side
// (identity.PeopleStore); the browser holds only a random secret in an
// HttpOnly, SameSite=Lax cookie (Secure under TLS), replaced at every
// sign-in. Every state-changing form carries the session's CSRF token.
package web

import (
	"context"
	"crypto/subtle"
	"embed"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Defaults and limits.
const (
	DefaultSessionTTL = 12 * time.Hour
	// DefaultLinkTTL is how long a local sign-in link works.
	DefaultLinkTTL = 15 * time.Minute
	// maxFormBytes bounds a form post.
	maxFormBytes = 64 << 10
	// maxPending bounds sign-in flows and local links in flight.
	maxPending = 4096
	// flowTTL bounds a sign-in at an identity provider.
	flowTTL = 10 * time.Minute
)

// Tasks is what the pages need of the task service: a person's tasks, and
// ending one.
type Tasks interface {
	ListTasks(ctx context.Context, f task.Filter) ([]*task.Task, error)
	EndTask(ctx context.Context, id, reason string) (*task.Task, []task.ID, error)
}

// Config configures the pages.
type Config struct {
	// Authz is the authorization server; required.
	Authz  *token.Server
	People identity.PeopleStore
	Tasks  Tasks
	Audit  audit.Recorder
	// PublicURL is the server's base URL (redirect URIs at the identity
	// providers are PublicURL + /signin/oidc/<name>/callback).
	PublicURL string
	// Secure marks cookies Secure and names the session cookie __Host-
	// (set it when serving TLS).
	Secure bool
	// IdPs are the identity providers people sign in at.
	IdPs []IdP
	// LocalPrincipal names the local administrator on tasks (default
	// "admin").
	LocalPrincipal string
	SessionTTL     time.Duration
	// HTTPClient talks to identity providers (default: timeouts, no
	// redirects followed for the token endpoint).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Server serves the pages. It is safe for concurrent use.
type Server struct {
	cfg   Config
	log   *slog.Logger
	tmpl  *template.Template
	idps  map[string]*idp
	order []*idp

	mu    sync.Mutex
	flows map[string]*flow     // sign-ins at an IdP in progress, by flow ID
	links map[string]time.Time // local sign-in links, by hash
}

// New builds the pages' server.
func New(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = DefaultSessionTTL
	}
	if cfg.LocalPrincipal == "" {
		cfg.LocalPrincipal = "admin"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	t, err := template.New("").ParseFS(templateFS, "templates/*.html")
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, tmpl: t, idps: map[string]*idp{}, flows: map[string]*flow{}, links: map[string]time.Time{}}
	for i := range cfg.IdPs {
		p, err := newIdP(cfg.IdPs[i], cfg.PublicURL)
		if err != nil {
			return nil, err
		}
		if s.idps[p.cfg.Name] != nil {
			return nil, errDuplicateIdP(p.cfg.Name)
		}
		s.idps[p.cfg.Name] = p
		s.order = append(s.order, p)
	}
	return s, nil
}

// Register adds the pages to mux.
func (s *Server) Register(mux *http.ServeMux) {
	static, _ := fs.Sub(staticFS, "static")
	mux.Handle("GET /static/", s.secure(http.StripPrefix("/static/", http.FileServerFS(static)).ServeHTTP, ""))
	mux.HandleFunc("GET /oauth/authorize", s.secure(s.authorize, ""))
	mux.HandleFunc("POST /oauth/authorize/decision", s.secure(s.decide, ""))
	mux.HandleFunc("GET /signin", s.secure(s.signinPage, ""))
	mux.HandleFunc("GET /signin/local", s.secure(s.signinLocal, ""))
	mux.HandleFunc("GET /signin/oidc/{idp}", s.secure(s.signinOIDC, ""))
	mux.HandleFunc("GET /signin/oidc/{idp}/callback", s.secure(s.callbackOIDC, ""))
	mux.HandleFunc("POST /signout", s.secure(s.signout, ""))
	mux.HandleFunc("GET /me", s.secure(s.me, ""))
	mux.HandleFunc("POST /me/tasks/end", s.secure(s.endTask, ""))
	mux.HandleFunc("POST /me/sessions/end", s.secure(s.endSession, ""))
}

// csp is the policy of every page: nothing runs, nothing frames it, forms
// post only here (formAction adds the consent's redirect target, since
// browsers apply form-action to the redirect after a post).
func csp(formAction string) string {
	fa := "'self'"
	if formAction != "" {
		fa += " " + formAction
	}
	return "default-src 'none'; style-src 'self'; img-src 'self'; form-action " + fa + "; frame-ancestors 'none'; base-uri 'none'"
}

// secure sets the headers every page carries and turns a panic into an
// error page.
func (s *Server) secure(next http.HandlerFunc, formAction string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp(formAction))
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cross-Origin-Opener-Policy", "same-origin")
		if r.URL.Path[:min(len(r.URL.Path), 8)] != "/static/" {
			h.Set("Cache-Control", "no-store")
		}
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.ErrorContext(r.Context(), "web handler panic", "path", r.URL.Path, "panic", p)
				s.fail(w, r, http.StatusInternalServerError, "Something went wrong on the server.")
			}
		}()
		next(w, r)
	}
}

// page is what every template sees.
type page struct {
	Title  string
	Person *identity.Human
}

func (s *Server) render(w http.ResponseWriter, status int, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if err := s.tmpl.ExecuteTemplate(w, name, data); err != nil {
		s.log.Error("rendering a page failed", "template", name, "err", err)
	}
}

// fail renders the error page: a plain explanation, never a redirect.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	s.render(w, status, "error.html", struct {
		page
		Message string
	}{page{Title: "Not allowed"}, msg})
}

// record writes an event; a failure is logged (the caller refuses anyway
// or the event is informational).
func (s *Server) record(ctx context.Context, ev audit.Event) error {
	ev.Point = "web"
	if ev.Time.IsZero() {
		ev.Time = s.cfg.Now()
	}
	err := s.cfg.Audit.Record(ctx, ev)
	if err != nil {
		s.log.ErrorContext(ctx, "recording a web event failed", "type", ev.Type, "err", err)
	}
	return err
}

// readForm parses a bounded urlencoded form post and checks its CSRF token
// against the session's. It returns false (having answered) when either
// fails.
func (s *Server) readForm(w http.ResponseWriter, r *http.Request, sess *identity.Session) bool {
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || r.URL.RawQuery != "" {
		s.fail(w, r, http.StatusBadRequest, "The form could not be read.")
		return false
	}
	for _, vs := range r.PostForm {
		if len(vs) > 1 {
			s.fail(w, r, http.StatusBadRequest, "The form repeats a field.")
			return false
		}
	}
	got := r.PostForm.Get("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(sess.CSRF)) != 1 {
		_ = s.record(r.Context(), audit.Event{Type: audit.TypeConsentRefused, Decision: audit.DecisionDeny, Actor: sess.Human,
			Reason: "a form was posted without this session's CSRF token", Details: map[string]string{"path": r.URL.Path}})
		s.fail(w, r, http.StatusForbidden, "This form did not come from this mandate server (CSRF token missing or wrong). Reload the page and try again.")
		return false
	}
	return true
}
