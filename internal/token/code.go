package token

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
)

// authorizationCode serves grant_type=authorization_code (OAuth 2.1
// §4.1.3) for public clients: the code is spent first, so it is used at
// most once whatever else fails; a code presented again revokes the task
// its first use started (and with it every token and refresh token issued
// from it). The client, redirect URI and PKCE verifier must be the ones
// the code was issued for.
func (s *Server) authorizationCode(ctx context.Context, r *TokenRequest, info *reqInfo) (*TokenResponse, error) {
	info.claimed = r.ClientID
	switch {
	case r.Code == "":
		return nil, errInvalidRequest("code is required")
	case r.ClientID == "":
		return nil, errInvalidRequest("client_id is required")
	case r.CodeVerifier == "":
		return nil, errInvalidRequest("code_verifier is required (PKCE)")
	}
	g, err := s.spend(ctx, GrantKindCode, r.Code, info, "an authorization code was used twice")
	if err != nil {
		return nil, err
	}
	switch {
	case g.ClientID != r.ClientID:
		return nil, errInvalidGrant(nil, "the code was issued to another client")
	case g.RedirectURI != r.RedirectURI:
		return nil, errInvalidGrant(nil, "redirect_uri is not the one the code was issued for")
	case !pkceVerifier.MatchString(r.CodeVerifier):
		return nil, errInvalidGrant(nil, "code_verifier must be 43 to 128 unreserved characters")
	case subtle.ConstantTimeCompare([]byte(s256(r.CodeVerifier)), []byte(g.Challenge)) != 1:
		return nil, errInvalidGrant(nil, "code_verifier does not match the code_challenge")
	case r.Resource != "" && r.Resource != g.Resource:
		return nil, newError(CodeInvalidTarget, 400, nil, "resource is not the one the person consented to")
	}
	return s.issueFromGrant(ctx, r, info, g)
}

// refreshToken serves grant_type=refresh_token (OAuth 2.1 §4.3): refresh
// tokens rotate, each usable once; one presented again revokes its task,
// ending the whole family.
func (s *Server) refreshToken(ctx context.Context, r *TokenRequest, info *reqInfo) (*TokenResponse, error) {
	info.claimed = r.ClientID
	if r.RefreshToken == "" {
		return nil, errInvalidRequest("refresh_token is required")
	}
	g, err := s.spend(ctx, GrantKindRefresh, r.RefreshToken, info, "a rotated refresh token was used again")
	if err != nil {
		return nil, err
	}
	switch {
	case g.ClientID != r.ClientID:
		return nil, errInvalidGrant(nil, "the refresh token was issued to another client")
	case r.Resource != "" && r.Resource != g.Resource:
		return nil, newError(CodeInvalidTarget, 400, nil, "resource is not the one the person consented to")
	}
	if r.Scope != "" {
		sc, err := narrowScope(g.Scope, r.Scope)
		if err != nil {
			return nil, err
		}
		g.Scope = sc.String()
	}
	return s.issueFromGrant(ctx, r, info, g)
}

// spend spends a code or refresh token. A grant spent before revokes its
// task: whoever holds the other copy is not to be trusted.
func (s *Server) spend(ctx context.Context, kind GrantKind, secret string, info *reqInfo, why string) (*Grant, error) {
	g, err := s.cfg.Grants.SpendGrant(ctx, kind, GrantHash(secret), s.cfg.Now())
	if g != nil {
		info.task, info.agent = string(g.Task), g.Agent.String()
	}
	switch {
	case errors.Is(err, ErrGrantNotFound):
		return nil, errInvalidGrant(err, "the %s is unknown or expired", grantName(kind))
	case errors.Is(err, ErrGrantSpent):
		info.details["replayed"] = string(kind)
		s.revokeForReplay(ctx, g, why)
		return nil, errInvalidGrant(err, "the %s was already used; the task it started is revoked", grantName(kind))
	case err != nil:
		return nil, errUnavailable(err)
	}
	return g, nil
}

func grantName(k GrantKind) string {
	if k == GrantKindCode {
		return "authorization code"
	}
	return "refresh token"
}

// revokeForReplay revokes the task of a replayed grant and everything it
// holds.
func (s *Server) revokeForReplay(ctx context.Context, g *Grant, why string) {
	id, agent := g.Task, g.Agent.String()
	_, err := s.lifecycle.Stop(ctx, lifecycle.Stop{
		Known: []task.ID{id},
		Store: func(ctx context.Context, at time.Time) ([]task.ID, error) {
			return s.cfg.Tasks.FinishTask(ctx, id, task.StatusRevoked, why, at)
		},
		Event: func(fid task.ID) audit.Event {
			ev := audit.Event{Type: audit.TypeTaskRevoked, Task: string(fid), Reason: why, Point: auditPoint}
			if fid == id {
				ev.Agent = agent
			} else {
				ev.Details = map[string]string{"cascade_from": string(id)}
			}
			return ev
		},
	})
	if err != nil && !errors.Is(err, task.ErrNotActive) {
		s.log.ErrorContext(ctx, "revoking the task of a replayed grant failed", "task", id, "err", err)
	}
}

// issueFromGrant issues a task token for the grant's task, with a new
// refresh token of the same family that lives as long as the task.
func (s *Server) issueFromGrant(ctx context.Context, r *TokenRequest, info *reqInfo, g *Grant) (*TokenResponse, error) {
	t, err := s.activeTask(ctx, g.Task)
	if err != nil {
		return nil, err
	}
	agent, err := s.activeAgent(ctx, t.Agent.String(), "the grant")
	if err != nil {
		return nil, err
	}
	info.obo, info.chain = t.OnBehalfOf, idStrings(t.Actors)
	info.details["client_id"] = audit.Clip(g.ClientID, 256)
	jkt, err := s.dpopAtTokenEndpoint(ctx, r)
	if err != nil {
		return nil, err
	}
	if jkt, err = boundKey(agent, jkt); err != nil {
		return nil, err
	}
	scope, err := task.ParseScope(g.Scope)
	if err != nil {
		return nil, errInvalidGrant(err, "the grant's scope is malformed")
	}
	now := s.cfg.Now()
	refresh := newSecret("mrt_")
	next := &Grant{Kind: GrantKindRefresh, Hash: GrantHash(refresh), Family: g.Family, Task: t.ID, Agent: agent.ID,
		ClientID: g.ClientID, Resource: g.Resource, Scope: g.Scope, CreatedAt: now, ExpiresAt: t.ExpiresAt}
	if err := s.cfg.Grants.AddGrant(ctx, next); err != nil {
		return nil, errUnavailable(err)
	}
	resp, err := s.issueTask(ctx, info, t, agent, scope, g.Resource, jkt)
	if err != nil {
		return nil, err
	}
	resp.RefreshToken = refresh
	resp.IssuedTokenType = ""
	return resp, nil
}

// s256 is the PKCE S256 transform (RFC 7636 §4.2).
func s256(verifier string) string {
	h := sha256.Sum256([]byte(verifier))
	return base64.RawURLEncoding.EncodeToString(h[:])
}
