package web

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"time"
	"unicode/utf8"

	"github.com/mandatehq/mandate/internal/approval"
)

// maxApprovalReason bounds a decider's reason (as the admin API does).
const maxApprovalReason = 4096

// decider handles the approve (or deny) form of /approvals/{id}: the
// session's CSRF token, the digest of the arguments the page showed (a
// post made from a page of other arguments, or none, is refused), the
// reason and, for an approval, the reach. The decision is the approval
// service's, which asks the policy (approval.decide, the person as
// principal) and records it; every refusal here is recorded too
// (approval.refused), and nothing is decided by a refused post.
func (p *approvalPages) decider(approve bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		id, _ := approval.ParseID(r.PathValue("id"))
		sess, h := p.s.session(r)
		if sess == nil {
			p.refuse(w, r, "", id, http.StatusForbidden, "you are not signed in (or your session ended): sign in and open the request again")
			return
		}
		who := p.approver(h)
		if id == "" {
			p.refuse(w, r, who.Person, "", http.StatusNotFound, "this is not an approval request's address")
			return
		}
		form, reason := p.readDecisionForm(w, r, sess.CSRF, approve)
		if reason != "" {
			status := http.StatusBadRequest
			if reason == errCSRF {
				status = http.StatusForbidden
			}
			p.refuse(w, r, who.Person, id, status, reason)
			return
		}
		_, err := p.cfg.Service.Decide(r.Context(), approval.Decision{
			ID: id, Approver: who, Approve: approve, Reason: form.reason, Reach: form.reach, Digest: form.digest,
			Authorize: func(ctx context.Context, req *approval.Request) error {
				return p.cfg.Authorize(ctx, who, req, approve)
			},
		})
		if err != nil {
			// The service and the policy recorded the refusal.
			status, msg := p.decisionError(r.Context(), id, err)
			p.s.fail(w, r, status, msg)
			return
		}
		http.Redirect(w, r, "/approvals/"+string(id), http.StatusSeeOther)
	}
}

// errCSRF is the refusal of a post without the session's CSRF token.
const errCSRF = "the form did not come from this mandate server (CSRF token missing or wrong): reload the page and decide again"

type decisionForm struct {
	reason, digest string
	reach          approval.Reach
}

// readDecisionForm parses a bounded urlencoded post and checks it. It
// returns why it is refused, or "".
func (p *approvalPages) readDecisionForm(w http.ResponseWriter, r *http.Request, csrf string, approve bool) (decisionForm, string) {
	var f decisionForm
	r.Body = http.MaxBytesReader(w, r.Body, maxFormBytes)
	if err := r.ParseForm(); err != nil || r.URL.RawQuery != "" {
		return f, "the form could not be read"
	}
	for k, vs := range r.PostForm {
		if len(vs) > 1 {
			return f, "the form repeats the field " + fmt.Sprintf("%q", clipText(k))
		}
	}
	got := r.PostForm.Get("csrf")
	if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(csrf)) != 1 {
		return f, errCSRF
	}
	f.reason, f.digest = r.PostForm.Get("reason"), r.PostForm.Get("digest")
	switch {
	case len(f.reason) > maxApprovalReason || !utf8.ValidString(f.reason):
		return f, fmt.Sprintf("the reason must be UTF-8 text of at most %d bytes", maxApprovalReason)
	case f.digest == "":
		return f, "the form names no arguments digest: decide from the request's page, which shows the arguments you decide"
	}
	reach := r.PostForm.Get("reach")
	if !approve {
		if _, set := r.PostForm["reach"]; set {
			return f, "a denial has no reach"
		}
		return f, ""
	}
	var err error
	if f.reach, err = approval.ParseReach(reach); err != nil || reach == "" {
		return f, "the reach must be once or task"
	}
	return f, ""
}

const expiredText = "This request expired before it was decided; nothing was granted. If the agent still needs it, its call asks again."

// decisionError turns the service's refusal into what the person reads.
func (p *approvalPages) decisionError(ctx context.Context, id approval.ID, err error) (int, string) {
	switch {
	case errors.Is(err, approval.ErrNotFound):
		return http.StatusNotFound, "There is no such approval request."
	case errors.Is(err, approval.ErrDecided):
		cur, gerr := p.cfg.Service.Get(ctx, id)
		switch {
		case gerr != nil || cur.Decider == "":
			return http.StatusConflict, "This request was already decided; your decision changed nothing."
		case cur.Status == approval.StatusExpired:
			return http.StatusConflict, expiredText
		}
		return http.StatusConflict, fmt.Sprintf("This request was already %s by %s at %s; your decision changed nothing.", cur.Status, cur.Decider, cur.DecidedAt.UTC().Format(time.RFC3339))
	case errors.Is(err, approval.ErrExpired):
		return http.StatusConflict, expiredText
	case errors.Is(err, approval.ErrDigestMismatch):
		return http.StatusConflict, "The arguments on the page you decided from are not this request's; nothing was decided. Open the request again."
	case errors.Is(err, approval.ErrPolicyChanged):
		return http.StatusConflict, "The policy changed since this request was made, so it can no longer be approved; nothing was granted. The call asks again if it still needs approval."
	case errors.Is(err, approval.ErrForbidden):
		return http.StatusForbidden, "Refused: " + err.Error() + ". Nothing was decided."
	case errors.Is(err, approval.ErrInvalid):
		return http.StatusBadRequest, err.Error()
	}
	p.s.log.ErrorContext(ctx, "deciding an approval failed", "id", id, "err", err)
	return http.StatusServiceUnavailable, "The decision could not be recorded, so it was not made; try again shortly."
}
