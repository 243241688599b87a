package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// ApprovalsConfig configures held actions and who decides them.
type ApprovalsConfig struct {
	// WaitTimeout is how long an enforcement point holds a call for its
	// approval; ExpireAfter how long a request waits for a decision;
	// EscalateAfter when a pending request is escalated (0: never).
	WaitTimeout   time.Duration
	ExpireAfter   time.Duration
	EscalateAfter time.Duration
	// Approvers are the people in the "approvers" group.
	Approvers []string
	// LocalPerson is the person the local admin socket's user is when
	// deciding approvals; empty: the socket decides none.
	LocalPerson string
	// RequestsPerMinute bounds the new requests of one task.
	RequestsPerMinute int
	// WebhookURL receives every notice (Slack incoming-webhook JSON),
	// signed with the secret in WebhookSecretFile.
	WebhookURL        string
	WebhookSecretFile string
	// EscalationWebhooks are "contact=url": the webhook that reaches an
	// agent's escalation contact.
	EscalationWebhooks []string
	// CallbackHosts are the host:port values ARAP callbacks may be sent
	// to; none refuses callbacks.
	CallbackHosts []string
	// DenialsThreshold denials of one task within DenialsWindow notify
	// the agent's owner and escalation contact (0: never), and stop the
	// task when DenialsStop is set.
	DenialsThreshold int
	DenialsWindow    time.Duration
	DenialsStop      bool
}

// maxWaitTimeout keeps a held call inside the HTTP listener's write
// timeout: a longer wait would be cut off mid-answer.
const maxWaitTimeout = writeTimeout - 5*time.Second

func (c *ApprovalsConfig) validate(bad func(key, format string, args ...any)) {
	switch {
	case c.WaitTimeout <= 0 || c.WaitTimeout > maxWaitTimeout:
		bad("approvals.wait_timeout", "must be a positive duration of at most %s (got %s): a longer wait would outlast the HTTP write timeout; the request stays open, and the call proceeds when made again after the approval", maxWaitTimeout, c.WaitTimeout)
	case c.ExpireAfter <= 0:
		bad("approvals.expire_after", "must be a positive duration (got %s)", c.ExpireAfter)
	case c.EscalateAfter < 0:
		bad("approvals.escalate_after", "must not be negative (0 turns escalation off)")
	case c.RequestsPerMinute <= 0:
		bad("approvals.requests_per_minute", "must be positive (got %d)", c.RequestsPerMinute)
	case c.DenialsThreshold < 0:
		bad("approvals.denials_threshold", "must not be negative (0 turns the watch off)")
	case c.DenialsThreshold > 0 && c.DenialsWindow <= 0:
		bad("approvals.denials_window", "must be a positive duration (got %s)", c.DenialsWindow)
	}
	if (c.WebhookURL != "" || len(c.EscalationWebhooks) > 0) && c.WebhookSecretFile == "" {
		bad("approvals.webhook_secret_file", "is required with approvals.webhook_url or approvals.escalation_webhooks: every delivery is signed")
	}
	for _, u := range append([]string{c.WebhookURL}, c.escalationURLs()...) {
		if pu, err := url.Parse(u); u != "" && (err != nil || pu.Scheme != "https" && pu.Scheme != "http" || pu.Host == "") {
			bad("approvals.webhook_url", "%q must be an absolute http(s) URL", u)
		}
	}
	for i, e := range c.EscalationWebhooks {
		if contact, u, ok := strings.Cut(e, "="); !ok || contact == "" || u == "" {
			bad(fmt.Sprintf("approvals.escalation_webhooks[%d]", i), "%q must be contact=url", e)
		}
	}
}

func (c *ApprovalsConfig) escalationURLs() []string {
	var out []string
	for _, e := range c.EscalationWebhooks {
		if _, u, ok := strings.Cut(e, "="); ok {
			out = append(out, u)
		}
	}
	return out
}

// approvalsLayer is the approval service and what serves it.
type approvalsLayer struct {
	cfg      ApprovalsConfig
	svc      *approval.Service
	webhooks *approval.Webhooks
	// denials watches repeated denials (the pipeline tells it).
	denials *approval.Denials
	// engine is the live policy engine, once the access layer has it.
	engine atomic.Pointer[policy.Engine]
}

// newApprovals builds the approval service (before the pipeline, whose
// decisions open its requests).
func newApprovals(ctx context.Context, cfg ApprovalsConfig, s *Server, rec audit.Recorder, admins *admin.Service) (*approvalsLayer, error) {
	l := &approvalsLayer{cfg: cfg}
	var notifier approval.Notifier
	if cfg.WebhookSecretFile != "" {
		secret, err := readLimited(cfg.WebhookSecretFile)
		if err != nil {
			return nil, fmt.Errorf("approvals.webhook_secret_file: %w", err)
		}
		secret = bytes.TrimSpace(secret)
		esc := map[string]string{}
		for _, e := range cfg.EscalationWebhooks {
			contact, u, _ := strings.Cut(e, "=")
			esc[contact] = u
		}
		if l.webhooks, err = approval.NewWebhooks(approval.WebhookConfig{
			URL: cfg.WebhookURL, Escalations: esc, Secret: secret, Recorder: rec,
			Link:   func(id approval.ID) string { return approvalLink(s.publicURL, id) },
			Logger: s.log.With("component", "approval-webhooks"),
		}); err != nil {
			return nil, err
		}
		notifier = l.webhooks
	}
	svc, err := approval.New(ctx, approval.Config{
		Store: s.backend, Digester: s.ledger.Redactor(), Recorder: rec, Sealer: s.sealer,
		PolicyVersion: func(names []string) string {
			if e := l.engine.Load(); e != nil {
				return e.ApprovalVersion(names)
			}
			return ""
		},
		ExpireAfter: cfg.ExpireAfter, EscalateAfter: cfg.EscalateAfter, RequestsPerMinute: cfg.RequestsPerMinute,
		Notifier: notifier, Logger: s.log.With("component", "approvals"),
	})
	if err != nil {
		return nil, err
	}
	l.svc = svc
	s.background = append(s.background, func(ctx context.Context) error { return svc.Run(ctx, time.Second) })
	if l.webhooks != nil {
		s.background = append(s.background, l.webhooks.Run)
	}
	dc := approval.DenialsConfig{
		Threshold: cfg.DenialsThreshold, Window: cfg.DenialsWindow, Recorder: rec, Notifier: notifier,
		Agent: func(ctx context.Context, agent string) (string, string, error) {
			id, err := identity.ParseID(agent)
			if err != nil {
				return "", "", err
			}
			a, err := s.backend.GetAgent(ctx, id)
			if err != nil {
				return "", "", err
			}
			return a.Owner, a.Escalation, nil
		},
		Logger: s.log.With("component", "denials"),
	}
	if cfg.DenialsStop {
		dc.Stop = func(ctx context.Context, id task.ID, reason string) error {
			_, _, err := admins.RevokeTask(ctx, string(id), reason)
			return err
		}
	}
	l.denials = approval.NewDenials(dc)
	return l, nil
}

// groups are the groups mandate knows person to be in.
func (l *approvalsLayer) groups(person string) []string {
	if slices.Contains(l.cfg.Approvers, person) {
		return []string{"approvers"}
	}
	return nil
}

// mount adds the approvals admin API: on TCP behind an admin token (which
// names the approver if it carries person=), on the socket as the local
// admin (who is approvals.local_person, if set).
func (l *approvalsLayer) mount(mux, sockMux *http.ServeMux, tokens adminTokens, acc *accessLayer, adminSvc *admin.Service, s *Server) {
	h := httpapi.NewApprovals(httpapi.ApprovalsConfig{Service: l.svc, Pipeline: acc.pipeline, Admin: adminSvc, Logger: s.log.With("component", "approvalsapi")})
	tcp := requireAdminToken(tokens, s.log, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := tokens.person(r); p != "" {
			r = r.WithContext(approval.WithApprover(r.Context(), approval.Approver{Person: p, Via: admin.ActorFromContext(r.Context()), Groups: l.groups(p)}))
		}
		h.ServeHTTP(w, r)
	}))
	sock := localAdmin(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p := l.cfg.LocalPerson; p != "" {
			r = r.WithContext(approval.WithApprover(r.Context(), approval.Approver{Person: p, Via: admin.ActorLocal, Groups: l.groups(p)}))
		}
		h.ServeHTTP(w, r)
	}))
	for _, p := range []string{"/admin/v1/approvals", "/admin/v1/approvals/", "/admin/v1/owners/"} {
		mux.Handle(p, tcp)
		sockMux.Handle(p, sock)
	}
}

// person returns the person the admin token on r names, if any (r has
// passed check).
func (a adminTokens) person(r *http.Request) string {
	_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	return a.persons[sum]
}

// parseAdminTokenEntry parses an admin.token_hashes entry:
// "sha256:<hex>", optionally followed by " person=<id>", the person the
// token's holder is when deciding approvals.
func parseAdminTokenEntry(s string) (hash []byte, person string, err error) {
	h, rest, _ := strings.Cut(strings.TrimSpace(s), " ")
	if rest = strings.TrimSpace(rest); rest != "" {
		p, ok := strings.CutPrefix(rest, "person=")
		if !ok || p == "" || strings.ContainsAny(p, " \t") || strings.HasPrefix(p, "spiffe://") {
			return nil, "", fmt.Errorf("%q: after the hash, only person=<id> may follow (a person, never an agent)", s)
		}
		person = p
	}
	hash, err = parseTokenHash(h)
	return hash, person, err
}

// parseAdminTokens decodes admin.token_hashes (validated by Config).
func parseAdminTokens(entries []string) (adminTokens, error) {
	t := adminTokens{persons: map[[32]byte]string{}}
	for _, e := range entries {
		h, p, err := parseAdminTokenEntry(e)
		if err != nil {
			return adminTokens{}, err
		}
		t.hashes = append(t.hashes, h)
		if p != "" {
			t.persons[[32]byte(h)] = p
		}
	}
	return t, nil
}

// approvalWaiter holds an MCP call for its approval: it waits for the
// request the decision opened (up to approvals.wait_timeout) and then has
// the call decided again by the gateway's decider, so that whatever
// changed meanwhile (a revoked task, a changed policy) still stops it.
type approvalWaiter struct {
	svc     *approval.Service
	decider mcpproxy.Decider
	timeout time.Duration
	// publicURL is the base of the approval page the client is told of.
	publicURL string
}

var (
	_ mcpproxy.ApprovalWaiter = (*approvalWaiter)(nil)
	_ mcpproxy.InBandAsker    = (*approvalWaiter)(nil)
)

// AskInBand implements mcpproxy.InBandAsker: a sessionless client's held
// call is answered at once with its approval request's page to show the
// person; its retry is decided again (the approval, once granted, lifts
// the hold).
func (w *approvalWaiter) AskInBand(_ context.Context, r mcpproxy.Request, d mcpproxy.Decision) (mcpproxy.InBand, bool, error) {
	if r.Principal == nil {
		return mcpproxy.InBand{}, false, nil
	}
	req, err := w.svc.Find(task.ID(r.Principal.Task), r.Action, r.Resource, r.Arguments)
	if err != nil {
		return mcpproxy.InBand{}, false, fmt.Errorf("no approval request could be opened for this call (too many from this task?): %s", strings.Join(d.Reasons, "; "))
	}
	return mcpproxy.InBand{
		URL:     approvalLink(w.publicURL, req.ID),
		Message: fmt.Sprintf("%s needs approval to %s %s: open the approval page to review and decide, then go on", req.Agent, req.Action, req.Resource),
		ID:      string(req.ID),
	}, true, nil
}

// Wait implements mcpproxy.ApprovalWaiter. It fails closed: an expired,
// denied or cancelled request, one still pending at the timeout, or none
// at all is a denial that says why.
func (w *approvalWaiter) Wait(ctx context.Context, r mcpproxy.Request, d mcpproxy.Decision) (mcpproxy.Decision, error) {
	if r.Principal == nil {
		return deny("no principal"), nil
	}
	wctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	for {
		req, err := w.svc.Find(task.ID(r.Principal.Task), r.Action, r.Resource, r.Arguments)
		if err != nil {
			return deny("approval required, but no approval request could be opened for this call (too many from this task?): " + strings.Join(d.Reasons, "; ")), nil
		}
		got, err := w.wait(wctx, r, req)
		if err != nil && (got == nil || got.Status == approval.StatusPending) {
			if ctx.Err() != nil {
				return deny("the client went away while the call waited for approval " + string(req.ID)), nil
			}
			return deny(fmt.Sprintf("approval %s is still pending after %s: ask %s to approve it at %s (or mandate approval approve %s), then make the call again",
				req.ID, w.timeout, req.AgentOwner, approvalLink(w.publicURL, req.ID), req.ID)), nil
		}
		switch got.Status {
		case approval.StatusDenied:
			return deny(fmt.Sprintf("approval %s denied by %s: %s", got.ID, got.Decider, orDash(got.Reason))), nil
		case approval.StatusExpired:
			return deny(fmt.Sprintf("approval %s expired: %s", got.ID, orDash(got.Reason))), nil
		case approval.StatusCancelled:
			return deny(fmt.Sprintf("approval %s cancelled by %s: %s", got.ID, got.Decider, orDash(got.Reason))), nil
		case approval.StatusApproved:
		default:
			return deny("approval " + string(got.ID) + " is " + string(got.Status)), nil
		}
		// Approved: decided again now, by the one pipeline.
		d, err = w.decider.Decide(ctx, r)
		if err != nil || d.Effect != mcpproxy.ApprovalRequired {
			return d, err
		}
		// Asked again (the approval was spent by a concurrent call, or the
		// policy changed): wait for the new request, within the timeout.
		if wctx.Err() != nil {
			return deny("approval " + string(got.ID) + " no longer applies and the wait is over: " + strings.Join(d.Reasons, "; ")), nil
		}
	}
}

// progressEvery is how often a held call tells its client it still waits.
const progressEvery = 10 * time.Second

// wait waits for request req's decision within ctx, telling the client
// (r.Progress: progress notifications, where it asked for them) what the
// call waits for, and every progressEvery that it still does.
func (w *approvalWaiter) wait(ctx context.Context, r mcpproxy.Request, req *approval.Request) (*approval.Request, error) {
	notify := func(string) {}
	if r.Progress != nil {
		notify = r.Progress
	}
	start := time.Now()
	link := approvalLink(w.publicURL, req.ID)
	notify(fmt.Sprintf("waiting for approval %s: ask %s to approve it at %s (or mandate approval approve %s)", req.ID, req.AgentOwner, link, req.ID))
	if r.AskPerson != nil {
		// In band: the client shows the person the approval page; who may
		// approve there is still approval.decide's to say.
		r.AskPerson(link, fmt.Sprintf("%s needs approval to %s %s: open the approval page to review and decide", req.Agent, req.Action, req.Resource), string(req.ID))
	}
	for {
		sctx, cancel := context.WithTimeout(ctx, progressEvery)
		got, err := w.svc.Wait(sctx, req.ID)
		cancel()
		if err == nil || ctx.Err() != nil || (got != nil && got.Status != approval.StatusPending) {
			return got, err
		}
		notify(fmt.Sprintf("still waiting for approval %s (%s)", req.ID, time.Since(start).Round(time.Second)))
	}
}

func deny(reason string) mcpproxy.Decision {
	return mcpproxy.Decision{Effect: mcpproxy.Deny, Reasons: []string{reason}}
}

func orDash(s string) string {
	if s == "" {
		return "no reason given"
	}
	return s
}
