package token

import (
	"context"
	"slices"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// Introspect answers an RFC 7662 introspection request from an
// authenticated caller. Any failure — a malformed, expired, revoked or
// foreign token, or one the caller has no part in — gives {"active":
// false}. An agent may introspect only tokens naming it as client or
// actor; an admin may introspect any token. A DPoP-bound token is reported
// with its cnf, for the resource server to check the proof.
func (s *Server) Introspect(ctx context.Context, caller Caller, raw string) *Introspection {
	inactive := &Introspection{Active: false}
	if !caller.Admin && caller.Agent.IsZero() {
		return inactive
	}
	t, err := s.verifier.verify(ctx, VerifyRequest{Token: raw}, verifyOpts{anyAudience: true, skipDPoP: true})
	if err != nil {
		return inactive
	}
	c := t.claims
	if !caller.Admin && !slices.Contains(t.agents, caller.Agent.String()) {
		return inactive
	}
	typ := TokenTypeBearer
	if c.Cnf != nil {
		typ = TokenTypeDPoP
	}
	out := &Introspection{
		Active: true, Scope: c.Scope, ClientID: c.ClientID, Subject: c.Subject,
		Expiry: c.Expiry.Time().Unix(), IssuedAt: c.IssuedAt.Time().Unix(), Issuer: c.Issuer,
		Audience: []string(c.Audience), JTI: c.ID, TokenType: typ, TokenUse: c.Use,
		TaskID: c.TaskID, Tier: c.Tier, Act: c.Act, Cnf: c.Cnf,
	}
	if c.NotBefore != nil {
		out.NotBefore = c.NotBefore.Time().Unix()
	}
	return out
}

// Revoke serves an RFC 7009 revocation request from an authenticated
// caller: the token's jti is revoked at once, here and in the store. Only
// the token's own client or an admin may revoke it. An invalid, expired or
// unknown token is not an error (RFC 7009 §2.2). Errors are *Error:
// unauthorized_client for someone else's token, temporarily_unavailable
// when the revocation or its audit event cannot be stored.
func (s *Server) Revoke(ctx context.Context, caller Caller, raw string) error {
	if !caller.Admin && caller.Agent.IsZero() {
		return errInvalidClient(nil, "client authentication is required")
	}
	t, err := s.verifier.verify(ctx, VerifyRequest{Token: raw}, verifyOpts{anyAudience: true, skipDPoP: true, skipRevocation: true})
	if err != nil {
		if e := AsError(err); e.Code == CodeTemporarilyUnavailable {
			return e
		}
		return nil
	}
	c := t.claims
	actor := "admin"
	if !caller.Admin {
		if caller.Agent.String() != c.ClientID {
			return newError(CodeUnauthorizedClient, 400, nil, "only the token's own client or an admin may revoke it")
		}
		actor = caller.Agent.String()
	}
	exp := c.Expiry.Time().Add(s.cfg.Skew)
	s.rev.RevokeJTI(c.ID, exp)
	if err := s.cfg.Tokens.RevokeToken(ctx, c.ID, exp); err != nil {
		// Revoked in this process already; other replicas need the store.
		return errUnavailable(err)
	}
	err = s.cfg.Audit.Record(ctx, audit.Event{
		Time: s.cfg.Now(), Type: audit.TypeTokenRevoked, Actor: actor, Agent: c.ClientID,
		Chain: c.Act.Chain(), Task: c.TaskID, Point: auditPoint,
		Details: map[string]string{"jti": c.ID, "token_use": string(c.Use), "expires_at": c.Expiry.Time().UTC().Format(time.RFC3339)},
	})
	if err != nil {
		s.log.ErrorContext(ctx, "recording token revocation failed", "jti", c.ID, "err", err)
		return errUnavailable(err)
	}
	return nil
}
