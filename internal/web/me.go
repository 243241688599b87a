package web

import (
	"net/http"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// maxListed bounds the tasks /me lists.
const maxListed = 200

func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	sess, h := s.session(r)
	if sess == nil {
		http.Redirect(w, r, "/signin?next=/me", http.StatusFound)
		return
	}
	tasks, err := s.cfg.Tasks.ListTasks(r.Context(), task.Filter{OnBehalfOf: h.Principal, Limit: maxListed})
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Your tasks cannot be listed right now.")
		return
	}
	sessions, err := s.cfg.People.ListSessions(r.Context(), h.Key(), s.cfg.Now())
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Your sessions cannot be listed right now.")
		return
	}
	s.render(w, http.StatusOK, "me.html", struct {
		page
		Tasks         []*task.Task
		Sessions      []*identity.Session
		CSRF, Current string
	}{page{Title: "Your tasks and sessions", Person: h}, tasks, sessions, sess.CSRF, sess.ID})
}

// endTask ends one of the person's own tasks (and what was delegated
// from it): its tokens, refresh tokens and leases stop at once.
func (s *Server) endTask(w http.ResponseWriter, r *http.Request) {
	sess, h := s.session(r)
	if sess == nil {
		s.fail(w, r, http.StatusForbidden, "You are not signed in.")
		return
	}
	if !s.readForm(w, r, sess) {
		return
	}
	id := r.PostForm.Get("id")
	mine, err := s.cfg.Tasks.ListTasks(r.Context(), task.Filter{OnBehalfOf: h.Principal, Status: task.StatusActive})
	if err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "Your tasks cannot be read right now.")
		return
	}
	found := false
	for _, t := range mine {
		found = found || string(t.ID) == id
	}
	if !found {
		s.fail(w, r, http.StatusNotFound, "That is not an active task of yours.")
		return
	}
	ctx := admin.WithActor(r.Context(), "person:"+h.Principal)
	if _, _, err := s.cfg.Tasks.EndTask(ctx, id, "ended by "+h.Principal+" on /me"); err != nil {
		s.fail(w, r, http.StatusServiceUnavailable, "The task could not be ended; try again.")
		return
	}
	http.Redirect(w, r, "/me", http.StatusSeeOther)
}

func (s *Server) endSession(w http.ResponseWriter, r *http.Request) {
	sess, h := s.session(r)
	if sess == nil {
		s.fail(w, r, http.StatusForbidden, "You are not signed in.")
		return
	}
	if !s.readForm(w, r, sess) {
		return
	}
	id := r.PostForm.Get("id")
	if err := s.cfg.People.RevokeSession(r.Context(), id, h.Key(), s.cfg.Now()); err != nil {
		s.fail(w, r, http.StatusNotFound, "That is not a session of yours.")
		return
	}
	_ = s.record(r.Context(), audit.Event{Type: audit.TypeSessionEnded, Actor: h.Principal, Decision: audit.DecisionAllow, Reason: "ended on /me"})
	if id == sess.ID {
		s.setCookie(w, s.cookieName(), "", -1)
		http.Redirect(w, r, "/signin", http.StatusSeeOther)
		return
	}
	http.Redirect(w, r, "/me", http.StatusSeeOther)
}
