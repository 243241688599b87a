package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
)

// Server defaults.
const (
	DefaultAgentTokenTTL   = 5 * time.Minute
	DefaultTaskTokenTTL    = 5 * time.Minute
	DefaultMaxTaskLifetime = 24 * time.Hour
	DefaultTaskTTL         = time.Hour
	// maintenanceEvery is how often Run refreshes keys and prunes state.
	maintenanceEvery = time.Minute
	// auditPoint names the token endpoint on audit events.
	auditPoint = "oauth"
)

// Config configures a Server. Zero durations get defaults.
type Config struct {
	// Issuer is the authorization server's issuer identifier (an https URL
	// in production); required.
	Issuer string
	// Endpoint URLs; each defaults to Issuer plus the standard path
	// (/oauth/token, /oauth/jwks, /oauth/introspect, /oauth/revoke).
	TokenEndpoint         string
	JWKSURI               string
	IntrospectionEndpoint string
	RevocationEndpoint    string
	// TrustDomain is the SPIFFE trust domain of the agents; required.
	TrustDomain string
	// Audiences are the audiences a task token may be issued for (RFC 8693
	// audience / RFC 8707 resource); the first is the default. Default:
	// the issuer. Each other than the issuer must be a canonical resource
	// indicator (CheckResource), e.g. a gateway endpoint's resource URL;
	// a requested audience is matched against them byte for byte.
	Audiences []string

	AgentTokenTTL   time.Duration
	TaskTokenTTL    time.Duration
	MaxTaskLifetime time.Duration
	DefaultTaskTTL  time.Duration
	RotateEvery     time.Duration
	Skew            time.Duration

	// AuthorizationEndpoint is where people are sent to consent (default
	// Issuer + /oauth/authorize); it is advertised only when Grants is
	// set. RegistrationEndpoint (default Issuer + /oauth/register) is
	// advertised when Registration is on.
	AuthorizationEndpoint string
	RegistrationEndpoint  string
	// Grants keeps authorization codes, refresh tokens and registered
	// clients; without it the authorization code flow is off.
	Grants GrantStore
	// Clients are the administrators' rules of which OAuth clients may
	// ask people for a mandate (ClientRule); none: no client may.
	Clients []ClientRule
	// Registration turns on RFC 7591 dynamic client registration.
	Registration bool
	// MetadataFetch configures fetching Client ID Metadata Documents.
	MetadataFetch MetadataFetch
	// CodeTTL is how long an authorization code lives (DefaultCodeTTL).
	CodeTTL time.Duration

	// Federation lists the trusted external issuers for the jwt-bearer grant.
	Federation []FederatedIssuer

	Identities identity.Store
	Tasks      task.Store
	// Entitlements holds each agent's entitlement: the ceiling of every
	// task it starts itself or is delegated; required.
	Entitlements task.EntitlementStore
	Tokens       Store
	Audit        audit.Recorder
	// Sealer seals the signing keys at rest; required.
	Sealer *seal.Keyring

	// Revocations is the shared revocation state; when nil the server
	// creates one and loads it from the stores.
	Revocations *Revocations
	// Lifecycle starts (and, when their start cannot be recorded, stops)
	// the tasks the server creates; the server shares one with the admin
	// API. Nil builds one over Tasks, Audit and Revocations, whose retries
	// Run runs.
	Lifecycle *lifecycle.Service
	// HTTPClient fetches federated JWKS (default: a client with timeouts).
	HTTPClient *http.Client
	Logger     *slog.Logger
	Now        func() time.Time
}

// Server is mandate's authorization server: the token endpoint's grants,
// introspection and revocation, over the domain stores. It is safe for
// concurrent use.
type Server struct {
	cfg  Config
	log  *slog.Logger
	keys *Keyring
	rev  *Revocations
	dpop *DPoPVerifier
	// delegations decides delegations (DecideDelegationsWith).
	delegations atomic.Pointer[DelegationDecider]
	lifecycle   *lifecycle.Service
	// ownLifecycle: lifecycle was built here and Run retries its stops.
	ownLifecycle bool
	verifier     *Verifier
	fed          map[string]*jwksSource
	cimd         *cimdFetcher
}

// Caller is the authenticated party calling introspection or revocation:
// an agent (authenticated by private_key_jwt) or an admin (authenticated by
// the HTTP layer).
type Caller struct {
	Agent identity.ID
	Admin bool
}

// NewServer builds the authorization server: it loads (or creates) the
// signing keys and loads the revocation state.
func NewServer(ctx context.Context, cfg Config) (*Server, error) {
	if cfg.Identities == nil || cfg.Tasks == nil || cfg.Entitlements == nil || cfg.Tokens == nil || cfg.Audit == nil {
		return nil, errors.New("token: server needs identity, task, entitlement and token stores and an audit recorder")
	}
	u, err := url.Parse(cfg.Issuer)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("token: issuer %q must be an absolute http(s) URL without query or fragment", cfg.Issuer)
	}
	if cfg.TrustDomain == "" {
		return nil, errors.New("token: server needs a trust domain")
	}
	base := strings.TrimSuffix(cfg.Issuer, "/")
	def := func(p *string, v string) {
		if *p == "" {
			*p = v
		}
	}
	def(&cfg.TokenEndpoint, base+"/oauth/token")
	def(&cfg.JWKSURI, base+"/oauth/jwks")
	def(&cfg.IntrospectionEndpoint, base+"/oauth/introspect")
	def(&cfg.RevocationEndpoint, base+"/oauth/revoke")
	def(&cfg.AuthorizationEndpoint, base+"/oauth/authorize")
	def(&cfg.RegistrationEndpoint, base+"/oauth/register")
	for i := range cfg.Clients {
		if err := cfg.Clients[i].Validate(); err != nil {
			return nil, fmt.Errorf("token: clients[%d]: %w", i, err)
		}
	}
	if cfg.Grants == nil && (len(cfg.Clients) > 0 || cfg.Registration) {
		return nil, errors.New("token: client rules and registration need a grant store")
	}
	if len(cfg.Audiences) == 0 {
		cfg.Audiences = []string{cfg.Issuer}
	}
	for i, a := range cfg.Audiences {
		if slices.Contains(cfg.Audiences[:i], a) {
			return nil, fmt.Errorf("token: audience %q listed twice", a)
		}
		if a == cfg.Issuer {
			continue
		}
		if err := CheckResource(a); err != nil {
			return nil, fmt.Errorf("token: audience %q: %v", a, err)
		}
	}
	defDur := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	defDur(&cfg.AgentTokenTTL, DefaultAgentTokenTTL)
	defDur(&cfg.TaskTokenTTL, DefaultTaskTokenTTL)
	defDur(&cfg.MaxTaskLifetime, DefaultMaxTaskLifetime)
	defDur(&cfg.DefaultTaskTTL, DefaultTaskTTL)
	defDur(&cfg.Skew, DefaultSkew)
	defDur(&cfg.CodeTTL, DefaultCodeTTL)
	cfg.DefaultTaskTTL = min(cfg.DefaultTaskTTL, cfg.MaxTaskLifetime)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: jwksFetchTimeout, CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	s := &Server{cfg: cfg, log: cfg.Logger, fed: make(map[string]*jwksSource)}
	s.cimd = newCIMDFetcher(cfg.MetadataFetch, cfg.Now, func(ctx context.Context, clientID string, err error) {
		ev := audit.Event{Type: audit.TypeClientRefused, Decision: audit.DecisionDeny, Reason: audit.Clip(err.Error(), 512),
			Details: map[string]string{"client_id": audit.Clip(clientID, 256)}}
		if rerr := s.record(ctx, ev); rerr != nil {
			s.log.ErrorContext(ctx, "recording a refused client metadata document failed", "err", rerr)
		}
	})
	for _, f := range cfg.Federation {
		src, err := newJWKSSource(f, cfg.HTTPClient, cfg.Now)
		if err != nil {
			return nil, fmt.Errorf("token: %w", err)
		}
		s.fed[f.Issuer] = src
	}
	s.keys, err = NewKeyring(ctx, KeyringConfig{
		Store: cfg.Tokens, Sealer: cfg.Sealer, RotateEvery: cfg.RotateEvery,
		MaxTokenLifetime: max(cfg.AgentTokenTTL, cfg.TaskTokenTTL),
		Audit:            cfg.Audit, Logger: cfg.Logger, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	s.rev = cfg.Revocations
	if s.rev == nil {
		s.rev = NewRevocations(cfg.Now)
		if err := s.rev.Load(ctx, cfg.Identities, cfg.Tasks, cfg.Tokens, cfg.Now()); err != nil {
			return nil, err
		}
	}
	s.lifecycle = cfg.Lifecycle
	if s.lifecycle == nil {
		if s.lifecycle, err = lifecycle.New(lifecycle.Config{Tasks: cfg.Tasks, Recorder: cfg.Audit, Revoker: s.rev, Now: cfg.Now, Logger: cfg.Logger}); err != nil {
			return nil, err
		}
		s.ownLifecycle = true
	}
	s.dpop = NewDPoPVerifier(DPoPConfig{Store: cfg.Tokens, Now: cfg.Now})
	s.verifier, err = NewVerifier(VerifierConfig{
		Keyring: s.keys, Revocations: s.rev, DPoP: s.dpop,
		Issuer: cfg.Issuer, Audience: cfg.Audiences[0], Skew: cfg.Skew, Now: cfg.Now,
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Keyring returns the signing keys.
func (s *Server) Keyring() *Keyring { return s.keys }

// Verifier returns the verifier every enforcement point uses.
func (s *Server) Verifier() *Verifier { return s.verifier }

// Revocations returns the revocation state the admin service updates.
func (s *Server) Revocations() *Revocations { return s.rev }

// DPoP returns the DPoP proof verifier.
func (s *Server) DPoP() *DPoPVerifier { return s.dpop }

// TokenEndpoint returns the token endpoint URL (the htu of DPoP proofs).
func (s *Server) TokenEndpoint() string { return s.cfg.TokenEndpoint }

// Run refreshes the signing keys (rotating on schedule) and prunes
// one-time identifiers and expired revocations until ctx ends.
func (s *Server) Run(ctx context.Context) error {
	t := time.NewTicker(maintenanceEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			now := s.cfg.Now()
			if err := s.keys.Refresh(ctx); err != nil {
				s.log.ErrorContext(ctx, "signing key refresh failed", "err", err)
			}
			if err := s.cfg.Tokens.PruneUsed(ctx, now); err != nil {
				s.log.ErrorContext(ctx, "pruning used identifiers failed", "err", err)
			}
			if s.cfg.Grants != nil {
				// Spent grants are kept until they expire, so a replay is
				// still recognised as one.
				if err := s.cfg.Grants.PruneGrants(ctx, now); err != nil {
					s.log.ErrorContext(ctx, "pruning grants failed", "err", err)
				}
			}
			s.rev.Prune(now, s.cfg.MaxTaskLifetime+s.cfg.TaskTokenTTL+s.cfg.Skew)
			if s.ownLifecycle {
				s.lifecycle.Retry(ctx)
			}
		}
	}
}

// Metadata returns the RFC 8414 authorization server metadata.
func (s *Server) Metadata() Metadata {
	algs := []string{"EdDSA", "ES256"}
	auth := []string{"private_key_jwt"}
	md := Metadata{
		Issuer:                            s.cfg.Issuer,
		TokenEndpoint:                     s.cfg.TokenEndpoint,
		JWKSURI:                           s.cfg.JWKSURI,
		IntrospectionEndpoint:             s.cfg.IntrospectionEndpoint,
		RevocationEndpoint:                s.cfg.RevocationEndpoint,
		GrantTypesSupported:               []string{GrantClientCredentials, GrantJWTBearer, GrantTokenExchange},
		ResponseTypesSupported:            []string{},
		TokenEndpointAuthMethodsSupported: auth,
		TokenEndpointAuthSigningAlgValuesSupported: algs,
		IntrospectionEndpointAuthMethodsSupported:  auth,
		IntrospectionEndpointAuthSigningAlgValues:  algs,
		RevocationEndpointAuthMethodsSupported:     auth,
		RevocationEndpointAuthSigningAlgValues:     algs,
		DPoPSigningAlgValuesSupported:              algs,
	}
	if s.cfg.Grants != nil {
		md.AuthorizationEndpoint = s.cfg.AuthorizationEndpoint
		md.ResponseTypesSupported = []string{"code"}
		md.GrantTypesSupported = append(md.GrantTypesSupported, GrantAuthorizationCode, GrantRefreshToken)
		md.TokenEndpointAuthMethodsSupported = append(md.TokenEndpointAuthMethodsSupported, "none")
		md.CodeChallengeMethodsSupported = []string{PKCEMethodS256}
		md.ClientIDMetadataDocumentSupported = true
		md.AuthorizationResponseISSParameterSupported = true
		if s.cfg.Registration {
			md.RegistrationEndpoint = s.cfg.RegistrationEndpoint
		}
	}
	return md
}

// reqInfo accumulates what is known about a token request, for its audit
// event.
type reqInfo struct {
	grant   string
	agent   string // verified agent, if any
	claimed string // unverified client identifier, if any
	chain   []string
	task    string
	obo     string
	details map[string]string
}

// Token serves a token endpoint request. Errors are *Error; every outcome
// is recorded through the audit recorder, and no token is issued unless
// its event was recorded.
func (s *Server) Token(ctx context.Context, r *TokenRequest) (*TokenResponse, error) {
	info := &reqInfo{grant: r.GrantType, details: map[string]string{}}
	var resp *TokenResponse
	var err error
	switch r.GrantType {
	case GrantClientCredentials:
		resp, err = s.clientCredentials(ctx, r, info)
	case GrantJWTBearer:
		resp, err = s.jwtBearer(ctx, r, info)
	case GrantTokenExchange:
		resp, err = s.tokenExchange(ctx, r, info)
	case GrantAuthorizationCode, GrantRefreshToken:
		if s.cfg.Grants == nil {
			err = newError(CodeUnsupportedGrantType, http.StatusBadRequest, nil, "grant type is not supported")
		} else if r.GrantType == GrantAuthorizationCode {
			resp, err = s.authorizationCode(ctx, r, info)
		} else {
			resp, err = s.refreshToken(ctx, r, info)
		}
	case "":
		err = errInvalidRequest("grant_type is required")
	default:
		err = newError(CodeUnsupportedGrantType, http.StatusBadRequest, nil, "grant type is not supported")
	}
	if err != nil {
		return nil, s.refuse(ctx, info, err)
	}
	return resp, nil
}

// refuse records a token.refused event and returns the OAuth error.
func (s *Server) refuse(ctx context.Context, info *reqInfo, err error) error {
	e := AsError(err)
	level := slog.LevelInfo
	if e.Code == CodeTemporarilyUnavailable || e.Code == CodeServerError {
		level = slog.LevelError
	}
	s.log.Log(ctx, level, "token refused", "grant_type", audit.Clip(info.grant, 128), "agent", info.agent, "code", e.Code, "err", err)
	ev := audit.Event{
		Time: s.cfg.Now(), Type: audit.TypeTokenRefused, Actor: info.agent, Agent: info.agent,
		Chain: info.chain, Task: info.task, OnBehalfOf: info.obo, Decision: audit.DecisionDeny,
		Reason: e.Description, Point: auditPoint, Details: info.details,
	}
	ev.Details["grant_type"] = audit.Clip(info.grant, 128)
	ev.Details["error"] = e.Code
	if info.agent == "" && info.claimed != "" {
		ev.Details["claimed_client_id"] = audit.Clip(info.claimed, 256)
	}
	if rerr := s.cfg.Audit.Record(ctx, ev); rerr != nil {
		// The request is refused either way; only the record is missing.
		s.log.ErrorContext(ctx, "recording token refusal failed", "err", rerr)
	}
	return e
}

// record writes an event that must be durable before a token is issued.
func (s *Server) record(ctx context.Context, ev audit.Event) error {
	ev.Point = auditPoint
	if ev.Time.IsZero() {
		ev.Time = s.cfg.Now()
	}
	if err := s.cfg.Audit.Record(ctx, ev); err != nil {
		return errUnavailable(fmt.Errorf("audit: %w", err))
	}
	return nil
}

// issue signs claims, records token.issued and builds the response. The
// token is returned only if the event was recorded.
func (s *Server) issue(ctx context.Context, info *reqInfo, c *Claims) (*TokenResponse, error) {
	raw, err := s.keys.Sign(c)
	if err != nil {
		return nil, errUnavailable(err)
	}
	d := map[string]string{"grant_type": info.grant, "jti": c.ID, "token_use": string(c.Use),
		"expires_at": c.Expiry.Time().UTC().Format(time.RFC3339)}
	if c.Scope != "" {
		d["scope"] = c.Scope
	}
	if jkt := c.JKT(); jkt != "" {
		d["dpop_jkt"] = jkt
	}
	if err := s.record(ctx, audit.Event{
		Type: audit.TypeTokenIssued, Actor: c.ClientID, Agent: c.ClientID, Chain: info.chain,
		Task: c.TaskID, OnBehalfOf: info.obo, Decision: audit.DecisionAllow, Details: d,
	}); err != nil {
		return nil, err
	}
	typ := TokenTypeBearer
	if c.Cnf != nil {
		typ = TokenTypeDPoP
	}
	return &TokenResponse{
		AccessToken: raw, IssuedTokenType: TokenTypeAccessToken, TokenType: typ,
		ExpiresIn: int64(c.Expiry.Time().Sub(s.cfg.Now()).Round(time.Second) / time.Second), Scope: c.Scope,
	}, nil
}

// AuthenticateClient verifies a private_key_jwt client assertion (RFC 7523
// §2.2): iss = sub = client_id = an active agent's SPIFFE ID, aud naming
// this server's issuer or one of its endpoints (token, introspection,
// revocation), exp at most five minutes ahead, a
// jti never seen before, signed by one of the agent's registered keys
// (EdDSA or ES256). Errors are *Error with code invalid_client (or
// temporarily_unavailable).
func (s *Server) AuthenticateClient(ctx context.Context, clientID, assertionType, assertion string) (*identity.Agent, error) {
	if assertionType != ClientAssertionJWT {
		if assertionType == "" && assertion == "" {
			return nil, errInvalidClient(nil, "client authentication is required (private_key_jwt)")
		}
		return nil, errInvalidClient(nil, "client_assertion_type must be %s", ClientAssertionJWT)
	}
	p, err := parseAssertion(assertion, SignatureAlgorithms)
	if err != nil {
		return nil, errInvalidClient(err, "%s", err.Error())
	}
	sub := p.unverified.Subject
	if p.unverified.Issuer != sub {
		return nil, errInvalidClient(nil, "client assertion iss and sub must both be the client ID")
	}
	if clientID != "" && clientID != sub {
		return nil, errInvalidClient(nil, "client_id does not match the client assertion")
	}
	id, err := identity.ParseID(sub)
	if err != nil || id.TrustDomain() != s.cfg.TrustDomain {
		return nil, errInvalidClient(err, "client ID is not an agent of this trust domain")
	}
	agent, err := s.cfg.Identities.GetAgent(ctx, id)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, errInvalidClient(err, "unknown client")
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	if !agent.Active() {
		return nil, errInvalidClient(nil, "client is %s", agent.Status)
	}
	key, ok := agent.Key(p.header.KeyID)
	if !ok {
		return nil, errInvalidClient(nil, "client assertion is not signed by a registered key (kid)")
	}
	if err := checkKeyAlg(key.Key, jose.SignatureAlgorithm(p.header.Algorithm)); err != nil {
		return nil, errInvalidClient(err, "client assertion algorithm does not match the key")
	}
	c, err := p.verify(key.Key)
	if err != nil {
		return nil, errInvalidClient(err, "%s", err.Error())
	}
	if c.Issuer != agent.ID.String() || c.Subject != agent.ID.String() {
		return nil, errInvalidClient(nil, "client assertion iss and sub must both be the client ID")
	}
	if !slices.ContainsFunc([]string{s.cfg.Issuer, s.cfg.TokenEndpoint, s.cfg.IntrospectionEndpoint, s.cfg.RevocationEndpoint}, c.Audience.Contains) {
		return nil, errInvalidClient(nil, "client assertion aud must name this server")
	}
	now := s.cfg.Now()
	if err := c.checkTimes(now, s.cfg.Skew, MaxAssertionLifetime); err != nil {
		return nil, errInvalidClient(err, "%s", err.Error())
	}
	if c.ID == "" || len(c.ID) > MaxJTILen {
		return nil, errInvalidClient(nil, "client assertion needs a jti")
	}
	err = s.cfg.Tokens.UseOnce(ctx, NamespaceClientAssertion, agent.ID.String()+" "+c.ID, c.Expiry.Time().Add(s.cfg.Skew))
	if errors.Is(err, ErrReplay) {
		return nil, errInvalidClient(err, "client assertion jti was already used")
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	return agent, nil
}

// dpopAtTokenEndpoint verifies the request's DPoP proof, if any, and
// returns its key thumbprint.
func (s *Server) dpopAtTokenEndpoint(ctx context.Context, r *TokenRequest) (string, error) {
	if r.DPoPProof == "" {
		return "", nil
	}
	return s.dpop.Verify(ctx, DPoPRequest{Proof: r.DPoPProof, Method: http.MethodPost, URL: s.cfg.TokenEndpoint})
}

func (s *Server) clientCredentials(ctx context.Context, r *TokenRequest, info *reqInfo) (*TokenResponse, error) {
	info.claimed = r.ClientID
	agent, err := s.AuthenticateClient(ctx, r.ClientID, r.ClientAssertionType, r.ClientAssertion)
	if err != nil {
		return nil, err
	}
	info.agent = agent.ID.String()
	return s.issueAgentToken(ctx, r, info, agent)
}

func (s *Server) issueAgentToken(ctx context.Context, r *TokenRequest, info *reqInfo, agent *identity.Agent) (*TokenResponse, error) {
	jkt, err := s.dpopAtTokenEndpoint(ctx, r)
	if err != nil {
		return nil, err
	}
	if jkt == "" && agent.RequireDPoP {
		return nil, errInvalidDPoP(nil, "this agent must present a DPoP proof")
	}
	now := s.cfg.Now()
	id := agent.ID.String()
	c := &Claims{
		Issuer: s.cfg.Issuer, Subject: id, Audience: jwt.Audience{s.cfg.Issuer},
		Expiry: jwt.NewNumericDate(now.Add(s.cfg.AgentTokenTTL)), IssuedAt: jwt.NewNumericDate(now),
		NotBefore: jwt.NewNumericDate(now), ID: newJTI(), ClientID: id, Tier: string(agent.Tier), Use: UseAgent,
	}
	if jkt != "" {
		c.Cnf = &Confirmation{JKT: jkt}
	}
	return s.issue(ctx, info, c)
}

func (s *Server) jwtBearer(ctx context.Context, r *TokenRequest, info *reqInfo) (*TokenResponse, error) {
	p, err := parseAssertion(r.Assertion, FederatedAlgorithms)
	if err != nil {
		return nil, errInvalidGrant(err, "%s", err.Error())
	}
	info.claimed = p.unverified.Subject
	src, ok := s.fed[p.unverified.Issuer]
	if !ok {
		return nil, errInvalidGrant(nil, "assertion issuer is not trusted")
	}
	key, err := src.key(ctx, p.header.KeyID)
	if err != nil {
		if e := (*Error)(nil); errors.As(err, &e) {
			return nil, e
		}
		return nil, errInvalidGrant(err, "assertion is not signed by a key of its issuer")
	}
	if err := checkFederatedKey(key.Key, jose.SignatureAlgorithm(p.header.Algorithm)); err != nil {
		return nil, errInvalidGrant(err, "assertion algorithm does not match the issuer's key")
	}
	c, err := p.verify(key.Key)
	if err != nil {
		return nil, errInvalidGrant(err, "%s", err.Error())
	}
	if c.Issuer != src.cfg.Issuer || c.Subject == "" {
		return nil, errInvalidGrant(nil, "assertion lacks iss or sub")
	}
	if !c.Audience.Contains(src.cfg.Audience) {
		return nil, errInvalidGrant(nil, "assertion aud does not name this server")
	}
	if err := c.checkTimes(s.cfg.Now(), s.cfg.Skew, 0); err != nil {
		return nil, errInvalidGrant(err, "%s", err.Error())
	}
	// Federated tokens (Kubernetes service-account tokens, CI OIDC tokens)
	// are reused by design for their lifetime, so their jti is not
	// replay-checked; the issued token is short-lived.
	agent, err := s.cfg.Identities.FindFederated(ctx, c.Issuer, c.Subject)
	if errors.Is(err, identity.ErrNotFound) {
		return nil, errInvalidGrant(err, "no agent trusts this federated identity")
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	info.agent = agent.ID.String()
	info.details["federated_issuer"] = c.Issuer
	if !agent.Active() {
		return nil, errInvalidGrant(nil, "agent is %s", agent.Status)
	}
	if err := s.optionalClientAuth(ctx, r, agent.ID); err != nil {
		return nil, err
	}
	return s.issueAgentToken(ctx, r, info, agent)
}

// optionalClientAuth authenticates the client when the request carries
// client authentication (RFC 8693 §2.1 and RFC 7523 §2.1 leave it
// optional); the client must then be one of want.
func (s *Server) optionalClientAuth(ctx context.Context, r *TokenRequest, want ...identity.ID) error {
	if r.ClientAssertion == "" && r.ClientAssertionType == "" {
		return nil
	}
	agent, err := s.AuthenticateClient(ctx, r.ClientID, r.ClientAssertionType, r.ClientAssertion)
	if err != nil {
		return err
	}
	if !slices.Contains(want, agent.ID) {
		return errInvalidGrant(nil, "the authenticated client is not a party to this grant")
	}
	return nil
}
