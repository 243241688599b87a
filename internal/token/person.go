package token

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4"
)

// Person claims a federated issuer may name its people by.
const (
	PersonClaimEmail   = "email"
	PersonClaimSubject = "sub"
)

// NamespacePersonToken is the Store.UseOnce namespace of the jtis of
// people's tokens presented to start a task: each starts at most one.
const NamespacePersonToken = "person_token"

// maxPrincipalLen bounds a principal taken from a person's token.
const maxPrincipalLen = 320

// personToken returns raw parsed, and its issuer, when it is a JWT from a
// federated issuer that names people (FederatedIssuer.PersonClaim): the
// subject_token of a task a person asks an agent to do (RFC 8693 §4.1, the
// agent's token as actor_token). The issuer is read unverified here, only
// to route the request; startForPerson verifies everything.
func (s *Server) personToken(raw string) (*parsedAssertion, *jwksSource, bool) {
	p, err := parseAssertion(raw, FederatedAlgorithms)
	if err != nil {
		return nil, nil, false
	}
	src, ok := s.fed[p.unverified.Issuer]
	return p, src, ok && src.cfg.PersonClaim != ""
}

// startForPerson serves a token exchange whose subject_token is a person's
// token (an OIDC ID token or JWT access token of a federated issuer that
// names people) and whose actor_token is an agent token: the person asks
// the agent to start a task, and the person — not the agent's owner, not
// anything the agent states — is its principal. The person's token is
// single-use for this purpose.
func (s *Server) startForPerson(ctx context.Context, r *TokenRequest, info *reqInfo, p *parsedAssertion, src *jwksSource) (*TokenResponse, error) {
	switch {
	case r.SubjectTokenType != TokenTypeIDToken && !isAccessTokenTypeURI(r.SubjectTokenType):
		return nil, errInvalidRequest("subject_token_type must be %s, %s or %s", TokenTypeIDToken, TokenTypeJWT, TokenTypeAccessToken)
	case !isAccessTokenTypeURI(r.ActorTokenType):
		return nil, errInvalidRequest("actor_token_type must be %s", TokenTypeAccessToken)
	case r.RequestedTokenType != "" && r.RequestedTokenType != TokenTypeAccessToken:
		return nil, errInvalidRequest("requested_token_type must be %s", TokenTypeAccessToken)
	}
	person, err := s.verifyPerson(ctx, p, src)
	if err != nil {
		return nil, err
	}
	principal := person.principal
	info.details["principal_issuer"] = person.issuer
	if r.TaskID != "" {
		return nil, errInvalidRequest("a person's token starts a new task; task_id cannot be given")
	}
	if r.OnBehalfOf != "" && r.OnBehalfOf != principal {
		return nil, errInvalidRequest("on_behalf_of must be the person whose token is the subject_token, or absent")
	}
	aud, err := s.audience(r)
	if err != nil {
		return nil, err
	}
	act, err := s.verifier.verify(ctx, VerifyRequest{Token: r.ActorToken, Audiences: []string{s.cfg.Issuer}, Use: UseAgent}, verifyOpts{skipDPoP: true})
	if err != nil {
		return nil, asGrantError(err, "actor_token")
	}
	info.claimed = act.claims.ClientID
	proofJKT, err := s.dpopAtTokenEndpoint(ctx, r)
	if err != nil {
		return nil, err
	}
	if jkt := act.claims.JKT(); jkt != "" && proofJKT != jkt {
		return nil, errInvalidDPoP(nil, "actor_token is DPoP-bound: a DPoP proof by its key is required")
	}
	agent, err := s.activeAgent(ctx, act.claims.ClientID, "actor_token")
	if err != nil {
		return nil, err
	}
	info.agent = agent.ID.String()
	if err := s.optionalClientAuth(ctx, r, agent.ID); err != nil {
		return nil, err
	}
	// Spent only once everything else holds: a refused request leaves the
	// person's token for a corrected one.
	err = s.cfg.Tokens.UseOnce(ctx, NamespacePersonToken, person.issuer+" "+person.jti, person.expiry.Add(s.cfg.Skew))
	if errors.Is(err, ErrReplay) {
		return nil, errInvalidGrant(err, "subject_token was already used to start a task")
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	return s.startTask(ctx, r, info, agent, aud, proofJKT, principal)
}

// verifiedPerson is a verified person's token.
type verifiedPerson struct {
	principal, issuer, jti string
	expiry                 time.Time
}

// verifyPerson verifies p, a person's token from src (personToken): the
// principal it names, its issuer, jti and expiry. Errors are *Error.
func (s *Server) verifyPerson(ctx context.Context, p *parsedAssertion, src *jwksSource) (*verifiedPerson, error) {
	var principal string
	key, err := src.key(ctx, p.header.KeyID)
	if err != nil {
		if e := (*Error)(nil); errors.As(err, &e) {
			return nil, e
		}
		return nil, errInvalidGrant(err, "subject_token is not signed by a key of its issuer")
	}
	if err := checkFederatedKey(key.Key, jose.SignatureAlgorithm(p.header.Algorithm)); err != nil {
		return nil, errInvalidGrant(err, "subject_token algorithm does not match the issuer's key")
	}
	c, err := p.verify(key.Key)
	if err != nil {
		return nil, errInvalidGrant(err, "subject_token: %s", err.Error())
	}
	if c.Issuer != src.cfg.Issuer || c.Subject == "" {
		return nil, errInvalidGrant(nil, "subject_token lacks iss or sub")
	}
	if !c.Audience.Contains(src.cfg.Audience) {
		return nil, errInvalidGrant(nil, "subject_token aud does not name this server")
	}
	now := s.cfg.Now()
	if err := c.checkTimes(now, s.cfg.Skew, 0); err != nil {
		return nil, errInvalidGrant(err, "subject_token: %s", err.Error())
	}
	if c.ID == "" || len(c.ID) > MaxJTILen {
		return nil, errInvalidGrant(nil, "subject_token needs a jti: a person's token starts one task")
	}
	var named struct {
		Email         string `json:"email"`
		EmailVerified *bool  `json:"email_verified"`
	}
	if err := p.tok.UnsafeClaimsWithoutVerification(&named); err != nil { // verified above
		return nil, errInvalidGrant(err, "subject_token claims are malformed")
	}
	switch src.cfg.PersonClaim {
	case PersonClaimEmail:
		if named.EmailVerified != nil && !*named.EmailVerified {
			return nil, errInvalidGrant(nil, "subject_token's email is not verified")
		}
		principal = named.Email
	default:
		principal = c.Subject
	}
	if err := checkPrincipal(principal); err != nil {
		return nil, errInvalidGrant(err, "subject_token's %s claim cannot name a principal", src.cfg.PersonClaim)
	}
	return &verifiedPerson{principal: principal, issuer: c.Issuer, jti: c.ID, expiry: c.Expiry.Time()}, nil
}

// checkPrincipal refuses a principal that is empty, too long, not UTF-8,
// has control characters or spaces, or could be read as a task principal.
func checkPrincipal(p string) error {
	switch {
	case p == "" || len(p) > maxPrincipalLen:
		return fmt.Errorf("principal must be 1 to %d bytes", maxPrincipalLen)
	case !utf8.ValidString(p):
		return errors.New("principal is not UTF-8")
	case strings.HasPrefix(p, "task:"):
		return errors.New("principal cannot name a task")
	case strings.IndexFunc(p, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0:
		return errors.New("principal has spaces or control characters")
	}
	return nil
}
