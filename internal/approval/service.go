package approval

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
)

// Defaults and limits of a Service.
const (
	DefaultExpireAfter = 15 * time.Minute
	// DefaultRequestsPerMinute and DefaultMaxPendingPerTask bound how many
	// new requests one task may open (a flood of distinct calls): the
	// rate, with a burst of the same size, and the pending ones at once.
	DefaultRequestsPerMinute = 10
	DefaultMaxPendingPerTask = 32
	// MaxArguments is the largest canonical arguments a request keeps.
	MaxArguments = 1 << 20
	// maxLimiters bounds the per-task rate limiters kept.
	maxLimiters = 10_000
	// sealPurpose binds sealed arguments to their use (seal.Keyring).
	sealPurpose = "approval.arguments"
)

// Digester computes the keyed digest of canonical arguments
// (audit.Redactor).
type Digester interface {
	Digest(args []byte) (string, error)
}

// Sealer encrypts arguments at rest (seal.Keyring).
type Sealer interface {
	Seal(purpose, recordID string, plaintext []byte) ([]byte, error)
	Open(purpose, recordID string, blob []byte) ([]byte, error)
}

// Notice is something a Notifier is told: Kind is requested, approved,
// denied, expired, cancelled or escalated.
type Notice struct {
	Kind    string
	Request *Request
}

// Notifier is told of every change, without waiting for it: Notify must
// not block (webhooks are delivered in the background).
type Notifier interface {
	Notify(n Notice)
}

// Config configures a Service.
type Config struct {
	Store    Store
	Digester Digester
	Recorder audit.Recorder
	// Sealer, if set, seals the arguments kept with each request.
	Sealer Sealer
	// PolicyVersion returns what the live policy set asks of approval
	// names (policy.Engine.ApprovalVersion); an approval granted under
	// another version lifts nothing. Nil: every version is "".
	PolicyVersion func(names []string) string
	// ExpireAfter is how long a request waits for a decision
	// (approvals.expire_after; default DefaultExpireAfter).
	ExpireAfter time.Duration
	// EscalateAfter: a request still pending this long is escalated
	// (approvals.escalate_after); zero never escalates.
	EscalateAfter time.Duration
	// RequestsPerMinute and MaxPendingPerTask bound each task's new
	// requests (defaults DefaultRequestsPerMinute, DefaultMaxPendingPerTask).
	RequestsPerMinute int
	MaxPendingPerTask int
	Notifier          Notifier
	Now               func() time.Time
	Logger            *slog.Logger
}

// Service is the approval service. Its index of open requests and usable
// approvals, and the wake-ups of waiters, are in memory: it serves one
// replica (a store shared by several would need their changes broadcast,
// see docs/approvals.md). It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger

	// decideMu serializes state changes (decide, cancel, expire,
	// escalate) so that each is checked and written as one step.
	decideMu sync.Mutex

	mu sync.RWMutex
	// open maps a coalescing key to the request that answers it: pending,
	// or approved and usable.
	open map[string]*Request
	// approved are the usable approvals of each task.
	approved map[task.ID][]*Request
	// pending are the pending requests, for expiry and escalation.
	pending  map[ID]*Request
	waiters  map[ID]chan struct{}
	limiters map[task.ID]*rate.Limiter
}

// New returns a Service and loads the open requests from the store.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Store == nil || cfg.Digester == nil || cfg.Recorder == nil {
		return nil, errors.New("approval: the service needs a store, a digester and a recorder")
	}
	if cfg.ExpireAfter <= 0 {
		cfg.ExpireAfter = DefaultExpireAfter
	}
	if cfg.RequestsPerMinute <= 0 {
		cfg.RequestsPerMinute = DefaultRequestsPerMinute
	}
	if cfg.MaxPendingPerTask <= 0 {
		cfg.MaxPendingPerTask = DefaultMaxPendingPerTask
	}
	if cfg.PolicyVersion == nil {
		cfg.PolicyVersion = func([]string) string { return "" }
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Service{cfg: cfg, log: log, open: map[string]*Request{}, approved: map[task.ID][]*Request{},
		pending: map[ID]*Request{}, waiters: map[ID]chan struct{}{}, limiters: map[task.ID]*rate.Limiter{}}
	for _, st := range []Status{StatusPending, StatusApproved} {
		rs, err := cfg.Store.ListApprovals(ctx, Filter{Status: st, Limit: 1 << 30})
		if err != nil {
			return nil, fmt.Errorf("approval: load open requests: %w", err)
		}
		for _, r := range rs {
			s.index(r)
		}
	}
	return s, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// usable reports whether an approved request may still lift something.
func usable(r *Request, now time.Time) bool {
	return r.Status == StatusApproved && (!r.Used || r.Reach == ReachTask) && now.Before(r.ApprovedUntil)
}

// index puts r in the in-memory maps (caller holds mu, or is New).
func (s *Service) index(r *Request) {
	switch {
	case r.Status == StatusPending:
		s.pending[r.ID] = r
		s.open[r.key()] = r
	case usable(r, s.now()):
		s.open[r.key()] = r
		s.approved[r.Task] = append(s.approved[r.Task], r)
	}
}

// unindex takes r out of the in-memory maps (caller holds mu).
func (s *Service) unindex(r *Request) {
	delete(s.pending, r.ID)
	if cur := s.open[r.key()]; cur != nil && cur.ID == r.ID {
		delete(s.open, r.key())
	}
	list := s.approved[r.Task]
	if i := slices.IndexFunc(list, func(x *Request) bool { return x.ID == r.ID }); i >= 0 {
		list = slices.Delete(slices.Clone(list), i, i+1)
		if len(list) == 0 {
			delete(s.approved, r.Task)
		} else {
			s.approved[r.Task] = list
		}
	}
}

// publish replaces the indexed copy of r, wakes its waiters and notifies.
func (s *Service) publish(r *Request, kind string) {
	s.mu.Lock()
	s.unindex(r)
	s.index(r)
	if ch := s.waiters[r.ID]; ch != nil {
		close(ch)
		delete(s.waiters, r.ID)
	}
	s.mu.Unlock()
	if s.cfg.Notifier != nil && kind != "" {
		s.cfg.Notifier.Notify(Notice{Kind: kind, Request: r.clone()})
	}
}

// digest is the keyed digest of args, canonicalized; no arguments are the
// empty object (an MCP call without arguments has none).
func (s *Service) digest(args json.RawMessage) (string, error) {
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	d, err := s.cfg.Digester.Digest(args)
	if err != nil {
		return "", fmt.Errorf("%w: the arguments are not JSON", ErrInvalid)
	}
	return d, nil
}

// OpenRequest is an approval_required decision, as the pipeline saw it.
type OpenRequest struct {
	Agent, AgentTier, AgentOwner, Escalation string
	Task                                     task.ID
	// TaskExpires bounds an approval of reach task.
	TaskExpires              time.Time
	Chain                    []string
	OnBehalfOf, Principal    string
	Action, Resource, Server string
	Arguments                json.RawMessage
	Reasons, Approvals       []string
	Point, RequestID         string
}

// Open opens a request for an approval_required decision, or finds the
// one already open for the same task, action, resource and arguments (a
// flood from one task opens one request): pending, or approved and not
// yet used. A new request is recorded (approval.requested) before Open
// returns; ErrRateLimited when the task opened too many.
func (s *Service) Open(ctx context.Context, o OpenRequest) (*Request, error) {
	if len(o.Arguments) > MaxArguments {
		return nil, fmt.Errorf("%w: the arguments are over %d bytes", ErrInvalid, MaxArguments)
	}
	if len(o.Approvals) == 0 || o.Task == "" || o.Action == "" || o.Resource == "" {
		return nil, fmt.Errorf("%w: an approval request needs a task, an action, a resource and approval names", ErrInvalid)
	}
	digest, err := s.digest(o.Arguments)
	if err != nil {
		return nil, err
	}
	key := coalesceKey(o.Task, o.Action, o.Resource, digest)
	now := s.now()
	s.mu.Lock()
	if r := s.open[key]; r != nil && (r.Status == StatusPending && now.Before(r.ExpiresAt) || usable(r, now)) {
		s.mu.Unlock()
		return r.clone(), nil
	}
	n := 0
	for _, p := range s.pending {
		if p.Task == o.Task {
			n++
		}
	}
	lim := s.limiters[o.Task]
	if lim == nil {
		if len(s.limiters) >= maxLimiters {
			clear(s.limiters)
		}
		lim = rate.NewLimiter(rate.Limit(float64(s.cfg.RequestsPerMinute)/60), s.cfg.RequestsPerMinute)
		s.limiters[o.Task] = lim
	}
	if n >= s.cfg.MaxPendingPerTask || !lim.AllowN(now, 1) {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: %d pending; at most %d new requests a minute, %d pending", ErrRateLimited, n, s.cfg.RequestsPerMinute, s.cfg.MaxPendingPerTask)
	}
	r := &Request{
		ID: NewID(), Agent: o.Agent, AgentTier: o.AgentTier, AgentOwner: o.AgentOwner, Escalation: o.Escalation,
		Task: o.Task, TaskExpiresAt: o.TaskExpires.UTC(), Chain: o.Chain, OnBehalfOf: o.OnBehalfOf, Principal: o.Principal,
		Action: o.Action, Resource: o.Resource, Server: o.Server, ArgsDigest: digest,
		Reasons: o.Reasons, Approvals: slices.Clone(o.Approvals), PolicyVersion: s.cfg.PolicyVersion(o.Approvals),
		Point: o.Point, CreatedAt: now, ExpiresAt: now.Add(s.cfg.ExpireAfter), Status: StatusPending,
	}
	if !o.TaskExpires.IsZero() && o.TaskExpires.Before(r.ExpiresAt) {
		r.ExpiresAt = o.TaskExpires.UTC()
	}
	// Reserve the key while the request is written: concurrent callers
	// find this one.
	s.open[key] = r
	s.pending[r.ID] = r
	s.mu.Unlock()
	if err := s.create(ctx, r, o); err != nil {
		s.mu.Lock()
		s.unindex(r)
		s.mu.Unlock()
		return nil, err
	}
	if s.cfg.Notifier != nil {
		s.cfg.Notifier.Notify(Notice{Kind: "requested", Request: r.clone()})
	}
	return r.clone(), nil
}

// create seals, stores and records a new request.
func (s *Service) create(ctx context.Context, r *Request, o OpenRequest) error {
	args := []byte(o.Arguments)
	if len(args) == 0 {
		args = []byte(`{}`)
	}
	canon, err := audit.CanonicalJSON(args)
	if err != nil {
		return fmt.Errorf("%w: the arguments are not JSON", ErrInvalid)
	}
	stored := *r
	stored.Arguments = canon
	if s.cfg.Sealer != nil {
		if stored.Arguments, err = s.cfg.Sealer.Seal(sealPurpose, string(r.ID), canon); err != nil {
			return fmt.Errorf("approval: seal arguments: %w", err)
		}
	}
	// The in-memory copy keeps no arguments (Get reads them from the
	// store): r is already visible to concurrent callers.
	// The event first: a request that cannot be recorded is not opened.
	ev := s.event(TypeRequested, r, r.Agent)
	ev.RequestID, ev.Point = o.RequestID, o.Point
	ev.Details["expires_at"] = r.ExpiresAt.Format(time.RFC3339)
	if err := s.cfg.Recorder.Record(ctx, ev); err != nil {
		return err
	}
	if err := s.cfg.Store.CreateApproval(ctx, &stored); err != nil {
		return fmt.Errorf("approval: store request: %w", err)
	}
	return nil
}

// event is the ledger event of a change to r, caused by actor.
func (s *Service) event(typ audit.Type, r *Request, actor string) audit.Event {
	ev := audit.Event{
		Type: typ, Actor: actor, Agent: r.Agent, Chain: r.Chain, OnBehalfOf: r.OnBehalfOf, Task: string(r.Task),
		Action: r.Action, Resource: r.Resource, ApprovalID: string(r.ID), ArgsDigest: r.ArgsDigest,
		Details: map[string]string{"approvals": joinNames(r.Approvals), "policy_version": r.PolicyVersion},
	}
	if r.Reach != "" {
		ev.Details["reach"] = string(r.Reach)
	}
	if r.Decider != "" {
		ev.Details["decider"] = r.Decider
	}
	if r.Reason != "" {
		ev.Reason = r.Reason
	}
	return ev
}

func joinNames(ns []string) string {
	out := ""
	for i, n := range ns {
		if i > 0 {
			out += ","
		}
		out += n
	}
	return out
}

// Binding is the action an Approved question is about.
type Binding struct {
	Action, Resource string
	Arguments        json.RawMessage
}

// Approved returns the approval names granted to this action of taskID:
// those of approved requests for the same action and resource and either
// the same arguments digest (reach once: the approval is spent by this
// call, recorded as approval.used) or any arguments (reach task). An
// approval whose policy version the live set no longer has lifts nothing
// and expires. It is on the decision path of every action: without an
// approval for the task it is one map lookup.
func (s *Service) Approved(ctx context.Context, taskID task.ID, b Binding) ([]string, error) {
	s.mu.RLock()
	list := s.approved[taskID]
	s.mu.RUnlock()
	if len(list) == 0 {
		return nil, nil
	}
	var digest string
	var names []string
	now := s.now()
	for _, r := range list {
		if r.Action != b.Action || r.Resource != b.Resource || !usable(r, now) {
			continue
		}
		if r.Reach != ReachTask {
			if digest == "" {
				d, err := s.digest(b.Arguments)
				if err != nil {
					return nil, nil // arguments that do not parse match no approval
				}
				digest = d
			}
			if r.ArgsDigest != digest {
				continue
			}
		}
		if v := s.cfg.PolicyVersion(r.Approvals); v != r.PolicyVersion {
			s.lapse(ctx, r, "the policy changed since the approval: it asks again")
			continue
		}
		if r.Reach != ReachTask {
			if err := s.use(ctx, r, now); err != nil {
				if errors.Is(err, ErrConflict) {
					continue // spent by a concurrent call
				}
				return nil, err
			}
		}
		names = append(names, r.Approvals...)
	}
	return names, nil
}

// use spends a once approval: durably, then recorded.
func (s *Service) use(ctx context.Context, r *Request, now time.Time) error {
	if err := s.cfg.Store.UseApproval(ctx, r.ID, now); err != nil {
		if errors.Is(err, ErrConflict) || errors.Is(err, ErrNotFound) {
			s.mu.Lock()
			s.unindex(r)
			s.mu.Unlock()
			return ErrConflict
		}
		return fmt.Errorf("approval: use: %w", err)
	}
	used := r.clone()
	used.Used, used.UsedAt = true, now
	s.publish(used, "")
	return s.cfg.Recorder.Record(ctx, s.event(TypeUsed, used, used.Agent))
}

// Find returns the open request (pending, or approved and usable) for an
// action of taskID with these arguments. ErrNotFound if there is none.
func (s *Service) Find(taskID task.ID, action, resource string, args json.RawMessage) (*Request, error) {
	digest, err := s.digest(args)
	if err != nil {
		return nil, err
	}
	s.mu.RLock()
	r := s.open[coalesceKey(taskID, action, resource, digest)]
	s.mu.RUnlock()
	if r == nil {
		return nil, ErrNotFound
	}
	return r.clone(), nil
}

// Get returns a request from the store. ErrNotFound if there is none.
func (s *Service) Get(ctx context.Context, id ID) (*Request, error) {
	return s.cfg.Store.GetApproval(ctx, id)
}

// List returns the requests f selects.
func (s *Service) List(ctx context.Context, f Filter) ([]*Request, error) {
	return s.cfg.Store.ListApprovals(ctx, f)
}

// Arguments returns a request's canonical arguments, opened, for the
// person who decides it. They are never recorded.
func (s *Service) Arguments(r *Request) ([]byte, error) {
	if s.cfg.Sealer == nil {
		return r.Arguments, nil
	}
	b, err := s.cfg.Sealer.Open(sealPurpose, string(r.ID), r.Arguments)
	if err != nil {
		return nil, fmt.Errorf("approval: open arguments: %w", err)
	}
	return b, nil
}

// Digest is the digest a request with these arguments is bound to.
func (s *Service) Digest(args json.RawMessage) (string, error) { return s.digest(args) }
