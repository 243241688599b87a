package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
)

// The approval pages: /approvals lists the pending requests the signed-in
// person may decide, /approvals/{id} shows one (its canonical arguments in
// full, and how they differ from earlier approvals of the same tool for
// the same agent) with the forms that approve or deny it. Who may see and
// decide a request is the policy's approval.decide, the person as
// principal: the page asks it beforehand without recording
// (ApprovalPages.Preview) and the decision asks it again, recorded,
// through the approval service (ApprovalPages.Authorize). Deciding is in
// approval_decide.go.

// ApprovalPages is what the approval pages need.
type ApprovalPages struct {
	// Service is the approval service; required.
	Service *approval.Service
	// Preview answers, recording nothing, whether who may approve or deny
	// r (access.Pipeline.PreviewApproval); required.
	Preview func(who approval.Approver, r *approval.Request, approve bool) policy.Decision
	// Authorize is the recorded approval.decide decision the service asks
	// before it decides (access.Pipeline.DecideApproval); nil error:
	// allowed. Required.
	Authorize func(ctx context.Context, who approval.Approver, r *approval.Request, approve bool) error
	// Groups returns the groups mandate knows a person to be in
	// (approvals.approvers); nil: none.
	Groups func(person string) []string
}

// Limits of the approval pages.
const (
	// maxApprovalsListed bounds the pending requests /approvals looks at.
	maxApprovalsListed = 500
	// maxEarlier is how many earlier approvals a page compares with, of
	// the most recent maxEarlierScanned approved requests of the agent.
	maxEarlier        = 3
	maxEarlierScanned = 200
	// maxShownArguments bounds the arguments a page shows indented; past
	// it they are shown as stored (canonical, compact).
	maxShownArguments = 256 << 10
)

type approvalPages struct {
	s   *Server
	cfg ApprovalPages
}

// RegisterApprovals adds the approval pages to mux.
func (s *Server) RegisterApprovals(mux *http.ServeMux, cfg ApprovalPages) error {
	if cfg.Service == nil || cfg.Preview == nil || cfg.Authorize == nil {
		return errors.New("web: the approval pages need the approval service, its preview and its authorizer")
	}
	if cfg.Groups == nil {
		cfg.Groups = func(string) []string { return nil }
	}
	p := &approvalPages{s: s, cfg: cfg}
	mux.HandleFunc("GET /approvals", s.secure(p.list, ""))
	mux.HandleFunc("GET /approvals/{id}", s.secure(p.show, ""))
	mux.HandleFunc("POST /approvals/{id}/approve", s.secure(p.decider(true), ""))
	mux.HandleFunc("POST /approvals/{id}/deny", s.secure(p.decider(false), ""))
	return nil
}

// approver is the signed-in person as the approval service knows them.
func (p *approvalPages) approver(h *identity.Human) approval.Approver {
	return approval.Approver{Person: h.Principal, Via: "web:" + audit.Clip(h.Issuer, 200), Groups: p.cfg.Groups(h.Principal)}
}

// verdicts is what the policy would answer who approving and denying r.
type verdicts struct {
	Approve, Deny verdict
}

type verdict struct {
	Allowed bool
	Why     string
}

func (v verdicts) any() bool { return v.Approve.Allowed || v.Deny.Allowed }

func (p *approvalPages) verdicts(who approval.Approver, r *approval.Request) verdicts {
	judge := func(approve bool) verdict {
		d := p.cfg.Preview(who, r, approve)
		var why []string
		for _, rs := range d.Reasons {
			if rs.Message != "" {
				why = append(why, rs.Message)
			}
		}
		why = append(why, d.Errors...)
		return verdict{Allowed: d.Allowed(), Why: strings.Join(why, "; ")}
	}
	return verdicts{Approve: judge(true), Deny: judge(false)}
}

// pendingRow is one request on /approvals.
type pendingRow struct {
	R *approval.Request
	verdicts
}

func (p *approvalPages) list(w http.ResponseWriter, r *http.Request) {
	sess, h := p.s.session(r)
	if sess == nil {
		p.signInFirst(w, r, "/approvals")
		return
	}
	rs, err := p.cfg.Service.List(r.Context(), approval.Filter{Status: approval.StatusPending, Limit: maxApprovalsListed})
	if err != nil {
		p.s.fail(w, r, http.StatusServiceUnavailable, "The approval requests cannot be listed right now.")
		return
	}
	who, now := p.approver(h), p.s.cfg.Now()
	var rows []pendingRow
	for _, req := range rs {
		if !now.Before(req.ExpiresAt) {
			continue
		}
		if v := p.verdicts(who, req); v.any() {
			rows = append(rows, pendingRow{R: req, verdicts: v})
		}
	}
	p.s.render(w, http.StatusOK, "approvals.html", struct {
		page
		Rows []pendingRow
	}{page{Title: "Approval requests", Person: h}, rows})
}

// earlier is one earlier approval compared with the request on the page.
type earlier struct {
	R    *approval.Request
	Rows []diffRow
	More bool
	Err  string
}

// approvalView is what approval.html shows.
type approvalView struct {
	page
	R         *approval.Request
	Arguments string
	// Open: pending and not expired, so the forms are shown.
	Open bool
	verdicts
	Earlier []earlier
	CSRF    string
}

func (p *approvalPages) show(w http.ResponseWriter, r *http.Request) {
	sess, h := p.s.session(r)
	if sess == nil {
		p.signInFirst(w, r, r.URL.Path)
		return
	}
	req, ok := p.request(w, r)
	if !ok {
		return
	}
	who := p.approver(h)
	v := p.verdicts(who, req)
	if !v.any() {
		// The arguments are for those who decide: nobody else sees them.
		p.refuse(w, r, who.Person, req.ID, http.StatusForbidden, "you may not decide this approval request, so it is not shown to you: "+orNoPolicy(v.Deny.Why))
		return
	}
	args, err := p.cfg.Service.Arguments(req)
	if err != nil {
		p.s.fail(w, r, http.StatusServiceUnavailable, "The request's arguments cannot be read right now.")
		return
	}
	p.s.render(w, http.StatusOK, "approval.html", approvalView{
		page: page{Title: "Approval request", Person: h}, R: req, Arguments: indentJSON(args),
		Open: req.Status == approval.StatusPending && p.s.cfg.Now().Before(req.ExpiresAt), verdicts: v,
		Earlier: p.earlier(r.Context(), req, args), CSRF: sess.CSRF,
	})
}

// request reads the request the path names, answering (404) if there is
// none.
func (p *approvalPages) request(w http.ResponseWriter, r *http.Request) (*approval.Request, bool) {
	id, err := approval.ParseID(r.PathValue("id"))
	if err != nil {
		p.s.fail(w, r, http.StatusNotFound, "There is no such approval request (the link is not an approval request's).")
		return nil, false
	}
	req, err := p.cfg.Service.Get(r.Context(), id)
	switch {
	case errors.Is(err, approval.ErrNotFound):
		p.s.fail(w, r, http.StatusNotFound, "There is no such approval request.")
		return nil, false
	case err != nil:
		p.s.fail(w, r, http.StatusServiceUnavailable, "The approval request cannot be read right now.")
		return nil, false
	}
	return req, true
}

// earlier compares args with the arguments of the most recent approvals
// of the same action and resource for the same agent.
func (p *approvalPages) earlier(ctx context.Context, req *approval.Request, args []byte) []earlier {
	rs, err := p.cfg.Service.List(ctx, approval.Filter{Agent: req.Agent, Status: approval.StatusApproved, Limit: maxEarlierScanned})
	if err != nil {
		return []earlier{{Err: "earlier approvals cannot be read right now"}}
	}
	var out []earlier
	for _, e := range rs {
		if len(out) == maxEarlier {
			break
		}
		if e.ID == req.ID || e.Action != req.Action || e.Resource != req.Resource {
			continue
		}
		ev := earlier{R: e}
		if was, err := p.cfg.Service.Arguments(e); err != nil {
			ev.Err = "its arguments cannot be read"
		} else if ev.Rows, ev.More, err = diffArguments(was, args); err != nil {
			ev.Err = err.Error()
		}
		out = append(out, ev)
	}
	return out
}

// signInFirst answers a visitor without a session: the page is for a
// signed-in person.
func (p *approvalPages) signInFirst(w http.ResponseWriter, r *http.Request, path string) {
	p.s.render(w, http.StatusUnauthorized, "approval_signin.html", struct {
		page
		Path string
	}{page{Title: "Sign in to decide"}, path})
}

// refuse records a refused view or decision and shows why.
func (p *approvalPages) refuse(w http.ResponseWriter, r *http.Request, person string, id approval.ID, status int, reason string) {
	_ = p.s.record(r.Context(), audit.Event{Type: approval.TypeRefused, Decision: audit.DecisionDeny, Actor: person,
		ApprovalID: string(id), Reason: reason, Details: map[string]string{"path": audit.Clip(r.URL.Path, 256), "method": r.Method}})
	p.s.fail(w, r, status, "Refused: "+reason+". Nothing was decided.")
}

func orNoPolicy(why string) string {
	if why == "" {
		return "no policy allows it"
	}
	return why
}

// indentJSON shows canonical JSON indented (whitespace only: the bytes
// between are the canonical ones); very large arguments as stored.
func indentJSON(b []byte) string {
	if len(b) > maxShownArguments {
		return string(b)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, b, "", "  "); err != nil {
		return string(b)
	}
	return buf.String()
}
