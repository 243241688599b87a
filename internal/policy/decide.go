package policy

import (
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	cedar "github.com/cedar-policy/cedar-go"
)

// Effect is the outcome of a decision.
type Effect string

// Decision outcomes.
const (
	Allow            Effect = "allow"
	Deny             Effect = "deny"
	ApprovalRequired Effect = "approval_required"
)

// Reason is one policy that determined a decision.
type Reason struct {
	Policy  string `json:"policy"`
	Effect  string `json:"effect"` // permit | forbid | error
	Message string `json:"message,omitempty"`
	// Approval names the approval that lifts this forbid.
	Approval string `json:"approval,omitempty"`
	// Lifted marks an @approval forbid lifted by an approval the request
	// carried.
	Lifted   bool   `json:"lifted,omitempty"`
	Position string `json:"position,omitempty"`
}

// Decision is the answer to a Request.
type Decision struct {
	Effect Effect `json:"decision"`
	// Reasons are the policies that determined the decision: the matching
	// forbids for deny, the pending @approval forbids for
	// approval_required, the matching permits for allow, the erroring
	// policies when an error denied. Empty for a default deny.
	Reasons []Reason `json:"reasons,omitempty"`
	// Obligations the enforcement point must fulfil (allow only).
	Obligations []string `json:"obligations,omitempty"`
	// Approvals are the approvals that would lift an approval_required.
	Approvals []string `json:"approvals,omitempty"`
	// Errors are evaluation errors; any one denies.
	Errors []string `json:"errors,omitempty"`
}

// Allowed reports whether the action may proceed.
func (d Decision) Allowed() bool { return d.Effect == Allow }

// Explanation is a Decision with everything that was considered.
type Explanation struct {
	Decision Decision `json:"decision"`
	// Considered is how many policies the index selected for the request;
	// Total is the size of the set.
	Considered int `json:"considered"`
	Total      int `json:"total"`
	// Forbids and Permits are every matching policy of each effect.
	Forbids []Reason `json:"forbids,omitempty"`
	Permits []Reason `json:"permits,omitempty"`
	Errors  []Reason `json:"errors,omitempty"`
}

// Decide evaluates r against s at time now (used when r.Time is zero). A
// request that does not validate is denied and the error returned wraps
// ErrInvalidRequest.
func (s *Set) Decide(r *Request, now time.Time) (Decision, error) {
	x, err := s.evaluate(r, now, false, nil)
	return x.Decision, err
}

// Explain is Decide, evaluating every candidate policy and reporting them.
func (s *Set) Explain(r *Request, now time.Time) (Explanation, error) {
	return s.evaluate(r, now, true, nil)
}

func (s *Set) reason(id cedar.PolicyID) Reason {
	c := s.byID[string(id)]
	if c == nil {
		return Reason{Policy: string(id)}
	}
	return Reason{Policy: c.ID, Effect: c.Effect, Message: c.Message, Approval: c.Approval, Position: c.Position}
}

// isForbid reports whether id names a forbid; an unknown id counts as
// one (fail closed).
func (s *Set) isForbid(id cedar.PolicyID) bool {
	c := s.byID[string(id)]
	return c == nil || c.forbid
}

func (s *Set) evaluate(r *Request, now time.Time, full bool, c *caches) (Explanation, error) {
	if s == nil {
		s = &Set{}
	}
	x := Explanation{Total: len(s.ordered)}
	if err := r.Validate(); err != nil {
		x.Decision = Decision{Effect: Deny, Errors: []string{err.Error()}}
		return x, err
	}
	in := toCedar(r, now, c)
	defer putInput(in)
	fs, ps := s.candidates(r.Action, in.req.Resource, in.server.UID, in.hasServer)
	var forbids, permits policyList
	forbids.set(fs, [3][]*compiled{})
	permits.set(ps, [3][]*compiled{})
	x.Considered = forbids.len() + permits.len()

	// Common path: one cedar evaluation of every candidate. cedar-go
	// reports only the matching forbids when any forbid matches; the
	// permits are evaluated separately only when they are needed (every
	// matching forbid is an @approval one) or for an explanation.
	var fdiag, pdiag cedar.Diagnostic
	switch {
	case full:
		if f := forbids; !f.empty() {
			_, fdiag = cedar.Authorize(&f, in, in.req)
		}
		if p := permits; !p.empty() {
			_, pdiag = cedar.Authorize(&p, in, in.req)
		}
	default:
		all := in.all
		all.set(fs, ps)
		if !all.empty() {
			var diag cedar.Diagnostic
			_, diag = cedar.Authorize(all, in, in.req)
			fdiag.Errors = diag.Errors
			if len(diag.Reasons) > 0 && s.isForbid(diag.Reasons[0].PolicyID) {
				fdiag.Reasons = diag.Reasons
			} else {
				pdiag.Reasons = diag.Reasons
			}
		}
	}
	var plain, pending, lifted []Reason
	for _, m := range fdiag.Reasons {
		rs := s.reason(m.PolicyID)
		c := s.byID[string(m.PolicyID)]
		switch {
		case c == nil || !c.hasApproval:
			plain = append(plain, rs)
		case slices.Contains(r.Approvals, c.Approval):
			rs.Lifted = true
			lifted = append(lifted, rs)
		default:
			pending = append(pending, rs)
		}
		if full {
			x.Forbids = append(x.Forbids, rs)
		}
	}
	if !full && len(fdiag.Reasons) > 0 && len(plain) == 0 && len(fdiag.Errors) == 0 && !permits.empty() {
		all := in.all
		all.set(ps, [3][]*compiled{})
		_, pdiag = cedar.Authorize(all, in, in.req)
	}
	matched := make([]Reason, 0, len(pdiag.Reasons))
	for _, m := range pdiag.Reasons {
		matched = append(matched, s.reason(m.PolicyID))
	}
	if full {
		x.Permits = matched
	}
	var errs []Reason
	var errText []string
	for _, e := range append(fdiag.Errors, pdiag.Errors...) {
		rs := s.reason(e.PolicyID)
		rs.Effect = "error"
		rs.Message = e.Message
		errs = append(errs, rs)
		errText = append(errText, fmt.Sprintf("policy %s (%s) errored: %s", rs.Policy, rs.Position, e.Message))
	}
	x.Errors = errs

	d := &x.Decision
	switch {
	case len(errs) > 0:
		// cedar-go skips a policy that errors; mandate fails closed.
		*d = Decision{Effect: Deny, Reasons: errs, Errors: errText}
	case len(plain) > 0:
		*d = Decision{Effect: Deny, Reasons: plain}
	case len(matched) == 0:
		// Default deny: approval would not help either.
		*d = Decision{Effect: Deny}
	case len(pending) > 0:
		*d = Decision{Effect: ApprovalRequired, Reasons: pending}
		for _, p := range pending {
			if !slices.Contains(d.Approvals, p.Approval) {
				d.Approvals = append(d.Approvals, p.Approval)
			}
		}
	default:
		*d = Decision{Effect: Allow, Reasons: matched}
		for _, rs := range append(matched, lifted...) {
			c := s.byID[rs.Policy]
			if c == nil {
				continue
			}
			for _, o := range c.Obligations {
				if !slices.Contains(d.Obligations, o) {
					d.Obligations = append(d.Obligations, o)
				}
			}
		}
	}
	return x, nil
}

// Engine holds the live policy set. Decisions read it through an atomic
// pointer, so Swap never stalls them. It is safe for concurrent use.
type Engine struct {
	cur    atomic.Pointer[Set]
	now    func() time.Time
	caches *caches
}

// NewEngine returns an Engine serving set. now supplies the decision time
// for requests without one (nil means time.Now).
func NewEngine(set *Set, now func() time.Time) *Engine {
	if now == nil {
		now = time.Now
	}
	e := &Engine{now: now, caches: newCaches()}
	e.cur.Store(set)
	return e
}

// Set returns the live policy set.
func (e *Engine) Set() *Set { return e.cur.Load() }

// Swap makes set live and returns the previous one.
func (e *Engine) Swap(set *Set) *Set { return e.cur.Swap(set) }

// Decide evaluates r against the live set. See Set.Decide.
func (e *Engine) Decide(r *Request) (Decision, error) {
	var now time.Time
	if r.Time.IsZero() {
		now = e.now()
	}
	x, err := e.cur.Load().evaluate(r, now, false, e.caches)
	return x.Decision, err
}

// Explain evaluates r against the live set. See Set.Explain.
func (e *Engine) Explain(r *Request) (Explanation, error) {
	return e.cur.Load().evaluate(r, e.now(), true, e.caches)
}
