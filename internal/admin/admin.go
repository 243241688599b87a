// Package admin implements the operations behind the admin API and the CLI:
// registering and changing agents, starting and finishing tasks. It composes
// the identity and task stores, the token revocation state and the audit
// recorder so that every change is validated, takes effect at once on every
// token it affects, and is recorded as an event.
package admin

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
)

// ErrTransition is returned for a status change the current status does
// not allow (resuming an active agent, changing a retired one).
var ErrTransition = errors.New("illegal status change")

// Revoker is the token layer's revocation state: the admin service tells it
// about every agent and task that stops being active, so that tokens already
// issued (and cached verifications of them) are refused at once.
type Revoker interface {
	// RevokeTasks marks tasks inactive.
	RevokeTasks(ids ...task.ID)
	// SetAgentActive marks an agent active or inactive.
	SetAgentActive(id identity.ID, active bool)
}

// Config configures a Service.
type Config struct {
	Agents identity.Store
	Tasks  task.Store
	// Entitlements keeps each agent's entitlement (normally the same
	// backend as Agents).
	Entitlements task.EntitlementStore
	Recorder     audit.Recorder
	Revoker      Revoker
	// Lifecycle starts and stops tasks; the server shares one with the
	// token server. Nil builds one over Tasks, Recorder and Revoker (whose
	// retries then run in RunExpiry).
	Lifecycle *lifecycle.Service
	// TrustDomain completes agent names into SPIFFE IDs.
	TrustDomain string
	// DefaultTaskTTL is a task's lifetime when the request names none
	// (default 1h); MaxTaskTTL caps every task's lifetime (default 24h).
	DefaultTaskTTL time.Duration
	MaxTaskTTL     time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Logger receives operational logs; nil discards them.
	Logger *slog.Logger
}

// Service performs admin operations. It is safe for concurrent use.
type Service struct {
	cfg Config
	log *slog.Logger
	// ownLifecycle: cfg.Lifecycle was built by New, and RunExpiry runs
	// its retries.
	ownLifecycle bool
}

// New returns a Service, filling defaults.
func New(cfg Config) (*Service, error) {
	if cfg.Agents == nil || cfg.Tasks == nil || cfg.Entitlements == nil || cfg.Recorder == nil || cfg.Revoker == nil {
		return nil, errors.New("admin: Agents, Tasks, Entitlements, Recorder and Revoker are required")
	}
	if _, err := identity.NewID(cfg.TrustDomain, "x"); err != nil {
		return nil, fmt.Errorf("admin: trust domain: %w", err)
	}
	if cfg.DefaultTaskTTL <= 0 {
		cfg.DefaultTaskTTL = time.Hour
	}
	if cfg.MaxTaskTTL <= 0 {
		cfg.MaxTaskTTL = 24 * time.Hour
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{cfg: cfg, log: log}
	if cfg.Lifecycle == nil {
		lc, err := lifecycle.New(lifecycle.Config{Tasks: cfg.Tasks, Recorder: cfg.Recorder, Revoker: cfg.Revoker, Now: cfg.Now, Logger: log})
		if err != nil {
			return nil, err
		}
		s.cfg.Lifecycle, s.ownLifecycle = lc, true
	}
	return s, nil
}

func (s *Service) now() time.Time { return s.cfg.Now().UTC() }

// AgentID resolves ref, an agent name or full SPIFFE ID, to an ID in the
// service's trust domain.
func (s *Service) AgentID(ref string) (identity.ID, error) {
	if strings.HasPrefix(ref, "spiffe://") {
		id, err := identity.ParseID(ref)
		if err != nil {
			return identity.ID{}, err
		}
		if id.TrustDomain() != s.cfg.TrustDomain {
			return identity.ID{}, fmt.Errorf("%w: %s is not in trust domain %q", identity.ErrInvalidID, id, s.cfg.TrustDomain)
		}
		return id, nil
	}
	return identity.NewID(s.cfg.TrustDomain, ref)
}

// record writes ev with the acting admin from ctx. A failure is returned
// wrapped in audit.ErrUnavailable.
func (s *Service) record(ctx context.Context, ev audit.Event) error {
	ev = adminEvent(ctx, ev)
	if err := s.cfg.Recorder.Record(ctx, ev); err != nil {
		s.log.Error("audit event not recorded", "type", ev.Type, "agent", ev.Agent, "task", ev.Task, "err", err)
		if errors.Is(err, audit.ErrUnavailable) {
			return err
		}
		return errors.Join(audit.ErrUnavailable, err)
	}
	return nil
}

// RegisterAgentRequest is the input to RegisterAgent.
type RegisterAgentRequest struct {
	// Name is the agent's name in the trust domain, or its full SPIFFE ID.
	Name        string                `json:"name"`
	Description string                `json:"description,omitempty"`
	Owner       string                `json:"owner"`
	Escalation  string                `json:"escalation"`
	Tier        identity.Tier         `json:"tier"`
	Labels      map[string]string     `json:"labels,omitempty"`
	Keys        []jose.JSONWebKey     `json:"keys,omitempty"`
	Federations []identity.Federation `json:"federations,omitempty"`
	RequireDPoP bool                  `json:"require_dpop,omitempty"`
	// Entitlement is the ceiling of the agent's tasks; without one the
	// agent cannot start tasks by itself or be delegated to.
	Entitlement *task.Entitlement `json:"entitlement,omitempty"`
}

// RegisterAgent validates and stores a new, active agent and its
// entitlement, if any.
func (s *Service) RegisterAgent(ctx context.Context, req RegisterAgentRequest) (*identity.Agent, error) {
	if req.Name == "" {
		return nil, fmt.Errorf("%w: name is required", identity.ErrInvalid)
	}
	id, err := s.AgentID(req.Name)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	}
	now := s.now()
	a := &identity.Agent{
		ID: id, Description: req.Description, Owner: req.Owner, Escalation: req.Escalation,
		Tier: req.Tier, Status: identity.StatusActive, Labels: req.Labels, Keys: req.Keys,
		Federations: req.Federations, RequireDPoP: req.RequireDPoP, CreatedAt: now, UpdatedAt: now,
	}
	if err := a.Validate(); err != nil {
		return nil, err
	}
	if req.Entitlement != nil {
		if err := s.checkEntitlement(req.Entitlement); err != nil {
			return nil, err
		}
	}
	if err := s.cfg.Agents.CreateAgent(ctx, a); err != nil {
		return nil, fmt.Errorf("register agent: %w", err)
	}
	// A previously retired agent of the same ID cannot exist (CreateAgent
	// refuses duplicates), so the revocation state needs no update here.
	details := map[string]string{"tier": string(a.Tier), "owner": a.Owner, "escalation": a.Escalation}
	for i, k := range a.Keys {
		details[fmt.Sprintf("key.%d", i)] = k.KeyID
	}
	for i, f := range a.Federations {
		details[fmt.Sprintf("federation.%d", i)] = f.Issuer + " " + f.Subject
	}
	if req.Entitlement != nil {
		entitlementDetails(details, "entitlement", req.Entitlement)
		_, err = s.cfg.Entitlements.SetEntitlement(ctx, id, req.Entitlement, now)
		if err != nil {
			err = fmt.Errorf("register agent: entitlement: %w", err)
		}
	}
	if err == nil {
		err = s.record(ctx, audit.Event{Type: audit.TypeAgentRegistered, Agent: id.String(), Details: details})
	}
	if err != nil {
		// An agent nobody can see registered, or registered without the
		// ceiling asked for, must not be able to act: leave it suspended
		// until an admin retries.
		s.cfg.Revoker.SetAgentActive(id, false)
		if _, serr := s.cfg.Agents.SetAgentStatus(ctx, id, identity.StatusSuspended, now); serr != nil {
			s.log.Error("unrecorded agent could not be suspended", "agent", id, "err", serr)
		}
		return nil, err
	}
	return a, nil
}

// adminEvent is ev as the admin API records it: by the acting admin
// from ctx, at point admin.
func adminEvent(ctx context.Context, ev audit.Event) audit.Event {
	ev.Actor = ActorFromContext(ctx)
	ev.Point = "admin"
	return ev
}

// GetAgent returns the agent named by ref (a name or SPIFFE ID).
func (s *Service) GetAgent(ctx context.Context, ref string) (*identity.Agent, error) {
	id, err := s.AgentID(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	}
	return s.cfg.Agents.GetAgent(ctx, id)
}

// ListAgents returns the agents matching f.
func (s *Service) ListAgents(ctx context.Context, f identity.Filter) ([]*identity.Agent, error) {
	return s.cfg.Agents.ListAgents(ctx, f)
}

// SuspendAgent stops an active agent: its tokens are refused and its active
// tasks (with their descendants) are revoked, at once.
func (s *Service) SuspendAgent(ctx context.Context, ref, reason string) (*identity.Agent, error) {
	return s.deactivate(ctx, ref, reason, identity.StatusSuspended, audit.TypeAgentSuspended)
}

// RetireAgent ends an agent for good; like SuspendAgent, but final.
func (s *Service) RetireAgent(ctx context.Context, ref, reason string) (*identity.Agent, error) {
	return s.deactivate(ctx, ref, reason, identity.StatusRetired, audit.TypeAgentRetired)
}

func (s *Service) deactivate(ctx context.Context, ref, reason string, to identity.Status, typ audit.Type) (*identity.Agent, error) {
	a, err := s.GetAgent(ctx, ref)
	if err != nil {
		return nil, err
	}
	switch {
	case a.Status == identity.StatusRetired:
		return nil, fmt.Errorf("%w: agent %s is retired", ErrTransition, a.ID)
	case a.Status == to:
		return nil, fmt.Errorf("%w: agent %s is already %s", ErrTransition, a.ID, to)
	}
	// Refuse the agent's tokens first: if anything below fails, the safe
	// state (inactive) is already in force.
	s.cfg.Revoker.SetAgentActive(a.ID, false)
	now := s.now()
	a, err = s.cfg.Agents.SetAgentStatus(ctx, a.ID, to, now)
	if err != nil {
		return nil, fmt.Errorf("%s agent: %w", to, err)
	}
	why := "agent " + string(to)
	finished, err := s.cfg.Lifecycle.Stop(ctx, lifecycle.Stop{
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) {
			return s.cfg.Tasks.FinishAgentTasks(ctx, a.ID, task.StatusRevoked, why, at)
		},
		Event: func(id task.ID) audit.Event {
			return adminEvent(ctx, audit.Event{Type: audit.TypeTaskRevoked, Agent: a.ID.String(), Task: string(id), Reason: why})
		},
	})
	if err != nil {
		return nil, fmt.Errorf("revoke tasks of %s: %w", a.ID, err)
	}
	details := map[string]string{"status": string(to), "tasks_revoked": fmt.Sprint(len(finished))}
	if reason != "" {
		details["reason"] = reason
	}
	if err := s.record(ctx, audit.Event{Type: typ, Agent: a.ID.String(), Reason: reason, Details: details}); err != nil {
		return nil, err
	}
	return a, nil
}

// ResumeAgent reactivates a suspended agent. Tasks revoked by the
// suspension stay revoked.
func (s *Service) ResumeAgent(ctx context.Context, ref, reason string) (*identity.Agent, error) {
	a, err := s.GetAgent(ctx, ref)
	if err != nil {
		return nil, err
	}
	if a.Status != identity.StatusSuspended {
		return nil, fmt.Errorf("%w: only a suspended agent can be resumed; %s is %s", ErrTransition, a.ID, a.Status)
	}
	a, err = s.cfg.Agents.SetAgentStatus(ctx, a.ID, identity.StatusActive, s.now())
	if err != nil {
		return nil, fmt.Errorf("resume agent: %w", err)
	}
	if err := s.record(ctx, audit.Event{Type: audit.TypeAgentResumed, Agent: a.ID.String(), Reason: reason}); err != nil {
		// The agent stays refused until the event is durable.
		return nil, err
	}
	s.cfg.Revoker.SetAgentActive(a.ID, true)
	return a, nil
}

// AddAgentKey registers another public key for an agent: the way to rotate
// an agent's key without re-registering it (add the new key, move the
// agent to it, then remove the old one).
func (s *Service) AddAgentKey(ctx context.Context, ref string, key jose.JSONWebKey) (*identity.Agent, error) {
	if err := identity.ValidatePublicKey(key); err != nil {
		return nil, fmt.Errorf("%w: key: %v", identity.ErrInvalid, err)
	}
	return s.changeCredentials(ctx, ref, audit.TypeAgentKeyAdded, map[string]string{"kid": key.KeyID},
		func(c *identity.Credentials) error {
			if _, ok := (&identity.Agent{Keys: c.Keys}).Key(key.KeyID); ok {
				return fmt.Errorf("%w: %q", identity.ErrKeyExists, key.KeyID)
			}
			if len(c.Keys) >= identity.MaxKeys {
				return fmt.Errorf("%w: at most %d keys", identity.ErrInvalid, identity.MaxKeys)
			}
			c.Keys = append(c.Keys, key)
			return nil
		})
}

// RemoveAgentKey removes one of an agent's public keys: no new client
// assertion signed with it is accepted. Tokens already obtained with it
// live out their short lifetime; suspend the agent to stop them at once.
func (s *Service) RemoveAgentKey(ctx context.Context, ref, kid string) (*identity.Agent, error) {
	return s.changeCredentials(ctx, ref, audit.TypeAgentKeyRemoved, map[string]string{"kid": kid},
		func(c *identity.Credentials) error {
			n := len(c.Keys)
			c.Keys = slices.DeleteFunc(c.Keys, func(k jose.JSONWebKey) bool { return k.KeyID == kid })
			if len(c.Keys) == n {
				return fmt.Errorf("%w: %q", identity.ErrKeyNotFound, kid)
			}
			return nil
		})
}

// AddAgentFederation makes an agent trust another external identity (an
// issuer and subject), e.g. after a CI pipeline was renamed.
func (s *Service) AddAgentFederation(ctx context.Context, ref string, f identity.Federation) (*identity.Agent, error) {
	if err := f.Validate(); err != nil {
		return nil, err
	}
	return s.changeCredentials(ctx, ref, audit.TypeAgentFederationAdded, map[string]string{"issuer": f.Issuer, "subject": f.Subject},
		func(c *identity.Credentials) error {
			if slices.Contains(c.Federations, f) {
				return fmt.Errorf("%w: the agent already trusts %s %q", identity.ErrFederationTaken, f.Issuer, f.Subject)
			}
			if len(c.Federations) >= identity.MaxFederations {
				return fmt.Errorf("%w: at most %d federations", identity.ErrInvalid, identity.MaxFederations)
			}
			c.Federations = append(c.Federations, f)
			return nil
		})
}

// RemoveAgentFederation stops an agent trusting an external identity.
func (s *Service) RemoveAgentFederation(ctx context.Context, ref string, f identity.Federation) (*identity.Agent, error) {
	return s.changeCredentials(ctx, ref, audit.TypeAgentFederationRemoved, map[string]string{"issuer": f.Issuer, "subject": f.Subject},
		func(c *identity.Credentials) error {
			n := len(c.Federations)
			c.Federations = slices.DeleteFunc(c.Federations, func(g identity.Federation) bool { return g == f })
			if len(c.Federations) == n {
				return fmt.Errorf("%w: the agent does not trust %s %q", identity.ErrNotFound, f.Issuer, f.Subject)
			}
			return nil
		})
}

// changeCredentials applies change to an agent's credentials atomically
// and records typ. If the event cannot be recorded, the previous
// credentials are put back: a credential nobody can see added must not
// work.
func (s *Service) changeCredentials(ctx context.Context, ref string, typ audit.Type, details map[string]string, change func(*identity.Credentials) error) (*identity.Agent, error) {
	id, err := s.AgentID(ref)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", identity.ErrInvalid, err)
	}
	var before identity.Credentials
	a, err := s.cfg.Agents.UpdateAgentCredentials(ctx, id, s.now(), func(cur identity.Credentials) (identity.Credentials, error) {
		before = cur
		next := identity.Credentials{Keys: slices.Clone(cur.Keys), Federations: slices.Clone(cur.Federations)}
		if err := change(&next); err != nil {
			return identity.Credentials{}, err
		}
		return next, nil
	})
	if err != nil {
		return nil, fmt.Errorf("change credentials of %s: %w", id, err)
	}
	if err := s.record(ctx, audit.Event{Type: typ, Agent: a.ID.String(), Details: details}); err != nil {
		if _, rerr := s.cfg.Agents.UpdateAgentCredentials(ctx, id, s.now(), func(identity.Credentials) (identity.Credentials, error) {
			return before, nil
		}); rerr != nil {
			s.log.Error("unrecorded credential change could not be undone", "agent", id, "type", typ, "err", rerr)
		}
		return nil, err
	}
	return a, nil
}
