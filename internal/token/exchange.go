package token

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// tokenExchange serves the RFC 8693 grant: start a task, join a task, delegate
// to a sub-agent, or renew a task token.
func (s *Server) tokenExchange(ctx context.Context, r *TokenRequest, info *reqInfo) (*TokenResponse, error) {
	if r.SubjectToken == "" {
		return nil, errInvalidRequest("subject_token is required")
	}
	if r.ActorToken != "" {
		if p, src, ok := s.personToken(r.SubjectToken); ok {
			return s.startForPerson(ctx, r, info, p, src)
		}
	}
	if !isAccessTokenTypeURI(r.SubjectTokenType) {
		return nil, errInvalidRequest("subject_token_type must be %s", TokenTypeAccessToken)
	}
	if r.ActorToken != "" && !isAccessTokenTypeURI(r.ActorTokenType) {
		return nil, errInvalidRequest("actor_token_type must be %s", TokenTypeAccessToken)
	}
	if r.ActorToken == "" && r.ActorTokenType != "" {
		return nil, errInvalidRequest("actor_token_type without actor_token")
	}
	if r.RequestedTokenType != "" && r.RequestedTokenType != TokenTypeAccessToken {
		return nil, errInvalidRequest("requested_token_type must be %s", TokenTypeAccessToken)
	}
	aud, err := s.audience(r)
	if err != nil {
		return nil, err
	}
	subj, err := s.verifier.verify(ctx, VerifyRequest{Token: r.SubjectToken}, verifyOpts{anyAudience: true, skipDPoP: true})
	if err != nil {
		return nil, asGrantError(err, "subject_token")
	}
	sc := subj.claims
	info.claimed = sc.ClientID
	info.chain = sc.Act.Chain()
	info.task = sc.TaskID
	switch sc.Use {
	case UseAgent:
		if !sc.Audience.Contains(s.cfg.Issuer) {
			return nil, errInvalidGrant(nil, "subject_token is not for this server")
		}
	case UseTask:
		if !slices.ContainsFunc(s.cfg.Audiences, sc.Audience.Contains) {
			return nil, errInvalidGrant(nil, "subject_token is not for this server")
		}
	}
	// The proof, if any, must be by the subject token's key when it is
	// bound: a bound token is never exchanged without its key.
	proofJKT, err := s.dpopAtTokenEndpoint(ctx, r)
	if err != nil {
		return nil, err
	}
	if jkt := sc.JKT(); jkt != "" {
		if proofJKT == "" {
			return nil, errInvalidDPoP(nil, "subject_token is DPoP-bound: a DPoP proof is required")
		}
		if proofJKT != jkt {
			return nil, errInvalidDPoP(nil, "DPoP proof is not signed by the key subject_token is bound to")
		}
	}
	agent, err := s.activeAgent(ctx, sc.ClientID, "subject_token")
	if err != nil {
		return nil, err
	}
	info.agent = agent.ID.String()
	switch {
	case sc.Use == UseAgent && r.ActorToken != "":
		return nil, errInvalidRequest("delegation needs a task token as subject_token")
	case sc.Use == UseAgent && r.TaskID != "":
		if err := s.optionalClientAuth(ctx, r, agent.ID); err != nil {
			return nil, err
		}
		return s.joinTask(ctx, r, info, agent, aud, proofJKT)
	case sc.Use == UseAgent:
		if err := s.optionalClientAuth(ctx, r, agent.ID); err != nil {
			return nil, err
		}
		return s.startTask(ctx, r, info, agent, aud, proofJKT, "")
	case r.ActorToken != "":
		return s.delegate(ctx, r, info, subj, agent, aud, proofJKT)
	default:
		if err := s.optionalClientAuth(ctx, r, agent.ID); err != nil {
			return nil, err
		}
		return s.renew(ctx, r, info, subj, agent, aud, proofJKT)
	}
}

func isAccessTokenTypeURI(t string) bool { return t == TokenTypeAccessToken || t == TokenTypeJWT }

// asGrantError turns a verification failure of a presented token into
// invalid_grant (RFC 8693 §2.2.2), keeping DPoP and availability errors.
func asGrantError(err error, which string) error {
	e := AsError(err)
	if e.Code == CodeInvalidToken {
		return errInvalidGrant(e, "%s is invalid: %s", which, e.Description)
	}
	return e
}

// audience picks the task token audience from the audience or resource
// parameter (RFC 8693 §2.1, RFC 8707 §2): one of Config.Audiences, named
// byte for byte. A resource that is not in canonical form
// (CheckResource) is refused as such, not cleaned up; either way the
// answer is invalid_target.
func (s *Server) audience(r *TokenRequest) (string, error) {
	if r.Audience != "" && r.Resource != "" && r.Audience != r.Resource {
		return "", newError(CodeInvalidTarget, 400, nil, "audience and resource disagree")
	}
	want := r.Audience
	if want == "" {
		want = r.Resource
	}
	if want == "" {
		return s.cfg.Audiences[0], nil
	}
	if slices.Contains(s.cfg.Audiences, want) {
		return want, nil
	}
	if r.Resource != "" {
		if err := CheckResource(want); err != nil {
			return "", newError(CodeInvalidTarget, 400, nil, "resource is not a canonical resource indicator: %v", err)
		}
	}
	return "", newError(CodeInvalidTarget, 400, nil, "audience is not served by this server")
}

// activeAgent loads an agent named by a token and requires it to be active.
func (s *Server) activeAgent(ctx context.Context, id, which string) (*identity.Agent, error) {
	aid, err := identity.ParseID(id)
	if err != nil {
		return nil, errInvalidGrant(err, "%s names no agent", which)
	}
	agent, err := s.cfg.Identities.GetAgent(ctx, aid)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, errInvalidGrant(err, "%s names an unknown agent", which)
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	if !agent.Active() {
		return nil, errInvalidGrant(nil, "%s agent is %s", which, agent.Status)
	}
	return agent, nil
}

// boundKey picks the key a new token is bound to and enforces RequireDPoP.
func boundKey(agent *identity.Agent, jkt string) (string, error) {
	if jkt == "" && agent.RequireDPoP {
		return "", errInvalidDPoP(nil, "this agent must present a DPoP proof")
	}
	return jkt, nil
}

// taskTTL computes a new task's lifetime from task_ttl, capped by the
// maximum task lifetime.
func (s *Server) taskTTL(r *TokenRequest) (time.Duration, error) {
	if r.TaskTTL == "" {
		return s.cfg.DefaultTaskTTL, nil
	}
	d, err := parseTTL(r.TaskTTL)
	if err != nil {
		return 0, err
	}
	return min(d, s.cfg.MaxTaskLifetime), nil
}

// startTask starts a task an agent asks for, on behalf of person when one
// proved it asked (startForPerson), otherwise of the agent's owner.
func (s *Server) startTask(ctx context.Context, r *TokenRequest, info *reqInfo, agent *identity.Agent, aud, jkt, person string) (*TokenResponse, error) {
	jkt, err := boundKey(agent, jkt)
	if err != nil {
		return nil, err
	}
	ent, err := s.entitlement(ctx, agent.ID, info)
	if errors.Is(err, task.ErrNoEntitlement) {
		return nil, errUnauthorizedClient(err, "this agent has no entitlement, so it cannot start tasks by itself: an admin starts its tasks, or gives it an entitlement (mandate agent update)")
	} else if err != nil {
		return nil, err
	}
	if strings.TrimSpace(r.Purpose) == "" {
		return nil, errInvalidRequest("purpose is required to start a task")
	}
	if strings.TrimSpace(r.Scope) == "" {
		return nil, errInvalidRequest("scope is required to start a task")
	}
	scope, err := task.ParseScope(r.Scope)
	if err != nil {
		return nil, errInvalidScope(err, "%s", err.Error())
	}
	// Unstated, the sensitivity and lifetime are the defaults brought
	// down to the entitlement's ceiling; stated, they must fit it.
	sens := lowest(task.SensitivityInternal, ent.MaxSensitivity)
	if r.Sensitivity != "" {
		if sens, err = task.ParseSensitivity(r.Sensitivity); err != nil {
			return nil, errInvalidRequest("%s", err.Error())
		}
	}
	ttl, err := s.taskTTL(r)
	if err != nil {
		return nil, err
	}
	if r.TaskTTL == "" {
		ttl = min(ttl, ent.MaxTaskTTL)
	}
	var b task.Budget
	if b.MaxActions, err = parseBudget("max_actions", r.MaxActions, 0); err != nil {
		return nil, err
	}
	if b.MaxWrites, err = parseBudget("max_writes", r.MaxWrites, 0); err != nil {
		return nil, err
	}
	obo := person
	if obo == "" {
		if obo, err = principalOf(r, agent); err != nil {
			return nil, err
		}
	}
	now := s.cfg.Now()
	t := &task.Task{
		ID: task.NewID(), Agent: agent.ID, OnBehalfOf: obo, Principal: obo, Purpose: r.Purpose,
		Scope: scope, Sensitivity: sens, Budget: b, Actors: []identity.ID{agent.ID},
		Status: task.StatusActive, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	info.task, info.obo, info.chain = string(t.ID), obo, []string{agent.ID.String()}
	if err := t.Validate(); err != nil {
		return nil, errInvalidRequest("%s", err.Error())
	}
	if err := admit(ent, t, info); err != nil {
		return nil, err
	}
	if err := s.startRecorded(ctx, audit.TypeTaskStarted, t, info); err != nil {
		return nil, err
	}
	return s.issueTask(ctx, info, t, agent, scope, aud, jkt)
}

// entitlement loads the entitlement of agent: task.ErrNoEntitlement if it
// has none, temporarily_unavailable if it cannot be read.
func (s *Server) entitlement(ctx context.Context, agent identity.ID, info *reqInfo) (*task.Entitlement, error) {
	e, err := s.cfg.Entitlements.GetEntitlement(ctx, agent)
	switch {
	case errors.Is(err, task.ErrNoEntitlement):
		info.details["entitlement"] = "none"
		return nil, err
	case err != nil:
		return nil, errUnavailable(err)
	}
	return e, nil
}

// admit checks that t fits its agent's entitlement e. A wider scope is
// invalid_scope (RFC 6749 §5.2: it exceeds what was granted); a higher
// sensitivity or a longer lifetime is invalid_request, naming the ceiling.
// What the task exceeds goes to the token.refused event.
func admit(e *task.Entitlement, t *task.Task, info *reqInfo) error {
	err := e.Admits(t)
	if err == nil {
		return nil
	}
	var ex *task.ExceedsError
	if !errors.As(err, &ex) {
		return errInvalidScope(err, "%s", err.Error())
	}
	info.details["entitlement"] = "exceeded"
	info.details["exceeds"] = ex.Limit
	if ex.Limit == task.LimitScope {
		return errInvalidScope(err, "%s", err.Error())
	}
	return errInvalidRequest("%s", err.Error())
}

// lowest returns the less sensitive of a and b.
func lowest(a, b task.Sensitivity) task.Sensitivity {
	if b.Rank() < a.Rank() {
		return b
	}
	return a
}

// principalOf is whom a task an agent starts itself runs for: the agent's
// owner, set by an admin at registration. on_behalf_of is never the agent's
// own claim: it is accepted only when it names that owner, so a client that
// states it gains nothing, and refused otherwise with the ways a principal is
// really established. task: principals come only from delegation.
func principalOf(r *TokenRequest, agent *identity.Agent) (string, error) {
	owner := agent.Owner
	if strings.TrimSpace(owner) == "" {
		return "", errInvalidRequest("this agent has no owner: an admin starts its tasks")
	}
	switch {
	case r.OnBehalfOf == "" || r.OnBehalfOf == owner:
		return owner, nil
	case strings.HasPrefix(r.OnBehalfOf, "task:"):
		return "", errInvalidRequest("on_behalf_of cannot name a task: a task acts for a parent task only when delegated (send the parent's task token as subject_token and this agent's token as actor_token)")
	default:
		return "", errInvalidRequest("on_behalf_of is not the agent's to choose: a task an agent starts runs on behalf of its owner; an admin starts a task for another principal with the admin API")
	}
}

// startRecorded stores t and records its task.started or task.delegated
// event through the task lifecycle: a task whose start cannot be recorded
// is revoked at once and never gets a token. Errors are *Error, except
// task.ErrNotActive (wrapped) for a child whose parent has stopped.
func (s *Server) startRecorded(ctx context.Context, typ audit.Type, t *task.Task, info *reqInfo) error {
	d := map[string]string{
		"grant_type": info.grant, "purpose": t.Purpose, "scope": t.Scope.String(),
		"sensitivity": string(t.Sensitivity), "expires_at": t.ExpiresAt.UTC().Format(time.RFC3339),
	}
	if t.Parent != "" {
		d["parent"] = string(t.Parent)
	}
	err := s.lifecycle.Start(ctx, t, func(t *task.Task) audit.Event {
		if t.Taint != "" {
			// Inherited from the parent or the agent (see task.Store.CreateTask).
			d["taint"] = string(t.Taint)
		}
		return audit.Event{
			Type: typ, Actor: t.Agent.String(), Agent: t.Agent.String(), Chain: info.chain,
			OnBehalfOf: t.OnBehalfOf, Task: string(t.ID), Decision: audit.DecisionAllow, Details: d,
			Point: auditPoint, Time: s.cfg.Now(),
		}
	})
	switch {
	case err == nil, errors.Is(err, task.ErrNotActive):
		return err
	case errors.Is(err, task.ErrInvalid):
		return errInvalidRequest("%s", err.Error())
	}
	return errUnavailable(err)
}

func (s *Server) joinTask(ctx context.Context, r *TokenRequest, info *reqInfo, agent *identity.Agent, aud, jkt string) (*TokenResponse, error) {
	jkt, err := boundKey(agent, jkt)
	if err != nil {
		return nil, err
	}
	if r.Purpose != "" {
		return nil, errInvalidRequest("purpose cannot be given when joining a task")
	}
	id, err := task.ParseID(r.TaskID)
	if err != nil {
		return nil, errInvalidRequest("task_id is not a task ID")
	}
	info.task = string(id)
	t, err := s.activeTask(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Agent != agent.ID {
		return nil, errInvalidGrant(nil, "the task belongs to another agent")
	}
	info.obo, info.chain = t.OnBehalfOf, idStrings(t.Actors)
	scope := t.Scope
	if strings.TrimSpace(r.Scope) != "" {
		if scope, err = task.ParseScope(r.Scope); err != nil {
			return nil, errInvalidScope(err, "%s", err.Error())
		}
		if !t.Scope.Covers(scope) {
			return nil, errInvalidScope(nil, "requested scope is not within the task's scope")
		}
	}
	return s.issueTask(ctx, info, t, agent, scope, aud, jkt)
}

// activeTask loads a task and requires it to be active now.
func (s *Server) activeTask(ctx context.Context, id task.ID) (*task.Task, error) {
	t, err := s.cfg.Tasks.GetTask(ctx, id)
	if errors.Is(err, task.ErrNotFound) {
		return nil, errInvalidGrant(err, "unknown task")
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	if !t.ActiveAt(s.cfg.Now()) || s.rev.TaskInactive(id) {
		return nil, errInvalidGrant(nil, "task is not active")
	}
	return t, nil
}

func (s *Server) renew(ctx context.Context, r *TokenRequest, info *reqInfo, subj *verified, agent *identity.Agent, aud, jkt string) (*TokenResponse, error) {
	sc := subj.claims
	if r.Purpose != "" {
		return nil, errInvalidRequest("a task token cannot start a new task; renewal takes no purpose")
	}
	if r.TaskID != "" && r.TaskID != sc.TaskID {
		return nil, errInvalidRequest("task_id does not match subject_token")
	}
	if r.TaskTTL != "" || r.MaxActions != "" || r.MaxWrites != "" || r.Sensitivity != "" || r.OnBehalfOf != "" {
		return nil, errInvalidRequest("renewal cannot change the task")
	}
	t, err := s.activeTask(ctx, task.ID(sc.TaskID))
	if err != nil {
		return nil, err
	}
	if t.Agent != agent.ID {
		return nil, errInvalidGrant(nil, "subject_token does not belong to the task's agent")
	}
	info.obo, info.chain = t.OnBehalfOf, idStrings(t.Actors)
	scope, err := narrowScope(sc.Scope, r.Scope)
	if err != nil {
		return nil, err
	}
	if jkt, err = boundKey(agent, jkt); err != nil {
		return nil, err
	}
	return s.issueTask(ctx, info, t, agent, scope, aud, jkt)
}

// narrowScope returns the token scope tokenScope, or the requested scope if
// one is given and tokenScope covers it.
func narrowScope(tokenScope, requested string) (task.Scope, error) {
	have, err := task.ParseScope(tokenScope)
	if err != nil {
		return nil, errInvalidGrant(err, "subject_token scope is malformed")
	}
	if strings.TrimSpace(requested) == "" {
		return have, nil
	}
	want, err := task.ParseScope(requested)
	if err != nil {
		return nil, errInvalidScope(err, "%s", err.Error())
	}
	if !have.Covers(want) {
		return nil, errInvalidScope(nil, "requested scope is not within subject_token's scope")
	}
	return want, nil
}

func (s *Server) delegate(ctx context.Context, r *TokenRequest, info *reqInfo, subj *verified, parentAgent *identity.Agent, aud, proofJKT string) (*TokenResponse, error) {
	sc := subj.claims
	if r.TaskID != "" {
		return nil, errInvalidRequest("task_id cannot be given when delegating")
	}
	act, err := s.verifier.verify(ctx, VerifyRequest{Token: r.ActorToken, Audiences: []string{s.cfg.Issuer}, Use: UseAgent}, verifyOpts{skipDPoP: true})
	if err != nil {
		return nil, asGrantError(err, "actor_token")
	}
	sub, err := s.activeAgent(ctx, act.claims.ClientID, "actor_token")
	if err != nil {
		return nil, err
	}
	info.details["delegate"] = sub.ID.String()
	if err := s.optionalClientAuth(ctx, r, parentAgent.ID, sub.ID); err != nil {
		return nil, err
	}
	ent, err := s.entitlement(ctx, sub.ID, info)
	if errors.Is(err, task.ErrNoEntitlement) {
		return nil, errInvalidGrant(err, "actor_token's agent has no entitlement, so no task can be delegated to it")
	} else if err != nil {
		return nil, err
	}
	parent, err := s.activeTask(ctx, task.ID(sc.TaskID))
	if err != nil {
		return nil, err
	}
	if parent.Agent != parentAgent.ID {
		return nil, errInvalidGrant(nil, "subject_token does not belong to the task's agent")
	}
	scope, err := narrowScope(sc.Scope, r.Scope)
	if err != nil {
		return nil, err
	}
	now := s.cfg.Now()
	// Unstated, the child lives as long as its parent and has its
	// sensitivity, each brought down to the delegate's entitlement.
	expires := parent.ExpiresAt
	if ceiling := now.Add(ent.MaxTaskTTL); ceiling.Before(expires) {
		expires = ceiling
	}
	if r.TaskTTL != "" {
		d, err := parseTTL(r.TaskTTL)
		if err != nil {
			return nil, err
		}
		if now.Add(d).After(parent.ExpiresAt) {
			return nil, errInvalidGrant(nil, "a delegated task cannot outlive its parent")
		}
		expires = now.Add(d)
	}
	sens := lowest(parent.Sensitivity, ent.MaxSensitivity)
	if r.Sensitivity != "" {
		if sens, err = task.ParseSensitivity(r.Sensitivity); err != nil {
			return nil, errInvalidRequest("%s", err.Error())
		}
	}
	var b task.Budget
	if b.MaxActions, err = parseBudget("max_actions", r.MaxActions, parent.Budget.MaxActions); err != nil {
		return nil, err
	}
	if b.MaxWrites, err = parseBudget("max_writes", r.MaxWrites, parent.Budget.MaxWrites); err != nil {
		return nil, err
	}
	purpose := r.Purpose
	if purpose == "" {
		purpose = parent.Purpose
	}
	if r.OnBehalfOf != "" {
		return nil, errInvalidRequest("a delegated task acts on behalf of its parent task")
	}
	child := &task.Task{
		ID: task.NewID(), Agent: sub.ID, OnBehalfOf: "task:" + string(parent.ID), Principal: parent.Principal,
		Purpose: purpose, Scope: scope, Sensitivity: sens, Budget: b, Parent: parent.ID, Depth: parent.Depth + 1,
		Actors: append(slices.Clone(parent.Actors), sub.ID), Status: task.StatusActive, CreatedAt: now, ExpiresAt: expires,
	}
	info.task, info.obo, info.chain = string(child.ID), child.OnBehalfOf, idStrings(child.Actors)
	info.details["parent_task"] = string(parent.ID)
	if err := child.Validate(); err != nil {
		return nil, errInvalidRequest("%s", err.Error())
	}
	if err := task.CheckNarrows(parent, child, now); err != nil {
		switch {
		case errors.Is(err, task.ErrNotNarrower) && !parent.Scope.Covers(child.Scope):
			return nil, errInvalidScope(err, "requested scope is not within the parent task's scope")
		case errors.Is(err, task.ErrNotNarrower):
			return nil, errInvalidGrant(err, "%s", err.Error())
		default:
			return nil, errInvalidGrant(err, "parent task is not active")
		}
	}
	if err := admit(ent, child, info); err != nil {
		return nil, err
	}
	// The child token goes to the sub-agent: bind it to the actor token's
	// key when that is bound, otherwise to the presented proof's key.
	jkt := act.claims.JKT()
	if jkt == "" {
		jkt = proofJKT
	}
	if jkt, err = boundKey(sub, jkt); err != nil {
		return nil, err
	}
	// Delegating is an action of the parent's agent, decided like any
	// other: its scope must name the delegate, the policies must allow the
	// delegate's tier and the depth, and the decision is recorded.
	if err := s.decideDelegation(ctx, DelegationRequest{Task: parent.ID, Agent: parentAgent.ID, TokenScope: sc.Scope, Delegate: sub.ID}); err != nil {
		return nil, err
	}
	if err := s.startRecorded(ctx, audit.TypeTaskDelegated, child, info); errors.Is(err, task.ErrNotActive) {
		return nil, errInvalidGrant(err, "parent task is not active")
	} else if err != nil {
		return nil, err
	}
	return s.issueTask(ctx, info, child, sub, scope, aud, jkt)
}

// issueTask issues a task token for t to agent. Its exp never passes the
// task's expiry.
func (s *Server) issueTask(ctx context.Context, info *reqInfo, t *task.Task, agent *identity.Agent, scope task.Scope, aud, jkt string) (*TokenResponse, error) {
	now := s.cfg.Now()
	exp := now.Add(s.cfg.TaskTokenTTL)
	if t.ExpiresAt.Before(exp) {
		exp = t.ExpiresAt
	}
	c := &Claims{
		Issuer: s.cfg.Issuer, Subject: t.Principal, Audience: jwt.Audience{aud},
		Expiry: jwt.NewNumericDate(exp), IssuedAt: jwt.NewNumericDate(now), NotBefore: jwt.NewNumericDate(now),
		ID: newJTI(), ClientID: agent.ID.String(), Scope: scope.String(), TaskID: string(t.ID),
		Tier: string(agent.Tier), Use: UseTask, Act: ActorChain(idStrings(t.Actors)),
	}
	if jkt != "" {
		c.Cnf = &Confirmation{JKT: jkt}
	}
	return s.issue(ctx, info, c)
}

func idStrings(ids []identity.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = id.String()
	}
	return out
}
