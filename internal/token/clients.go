package token

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/task"
)

// MaxClientIDLen bounds an OAuth client ID (a Client ID Metadata Document
// URL or a registered client's ID).
const MaxClientIDLen = 1000

// registeredClientPrefix starts the IDs of dynamically registered clients.
const registeredClientPrefix = "mdc_"

// ClientRule is one of the administrators' choices of which OAuth clients
// may ask people for a mandate, and as which agent:
//
//   - ClientID names one client exactly, and Agent the registered agent it
//     acts as (its owner, tier and entitlement are the agent's);
//   - Pattern matches client IDs (path.Match syntax: "*" never crosses a
//     "/"), and Registered matches dynamically registered clients: a
//     matching client without an agent gets one, with tier Tier (default
//     assist), entitlement Entitlement and owner Owner (default: the
//     first person who consents to it).
//
// Rules are tried in order; the first that matches decides.
type ClientRule struct {
	ClientID    string
	Agent       identity.ID
	Pattern     string
	Registered  bool
	Tier        identity.Tier
	Owner       string
	Entitlement *task.Entitlement
}

// Validate checks a rule: exactly one of ClientID, Pattern and
// Registered; Agent with ClientID only; an entitlement for the others.
func (r *ClientRule) Validate() error {
	n := 0
	for _, set := range []bool{r.ClientID != "", r.Pattern != "", r.Registered} {
		if set {
			n++
		}
	}
	switch {
	case n != 1:
		return errors.New("a client rule names exactly one of client_id, client_id_pattern or registered")
	case r.ClientID != "" && r.Agent.IsZero():
		return errors.New("a client rule with client_id needs the agent it acts as")
	case r.ClientID == "" && !r.Agent.IsZero():
		return errors.New("only a client rule with client_id names an agent")
	case r.ClientID != "":
		return nil
	}
	if r.Pattern != "" {
		if _, err := path.Match(r.Pattern, ""); err != nil {
			return fmt.Errorf("client_id_pattern %q: %v", r.Pattern, err)
		}
	}
	if r.Tier != "" {
		if _, err := identity.ParseTier(string(r.Tier)); err != nil {
			return err
		}
	}
	if err := r.Entitlement.Validate(); err != nil {
		return fmt.Errorf("client rule entitlement: %w", err)
	}
	return nil
}

func (r *ClientRule) matches(c *Client) bool {
	switch {
	case r.ClientID != "":
		return r.ClientID == c.ID
	case r.Registered:
		return c.Registered
	}
	ok, _ := path.Match(r.Pattern, c.ID)
	return ok && !c.Registered
}

// Client is an OAuth client that asked to be authorized: what its Client
// ID Metadata Document or registration says about it, and the rule that
// lets it ask.
type Client struct {
	ID           string
	Name         string
	URI          string
	RedirectURIs []string
	// Registered: the client registered dynamically (RFC 7591);
	// otherwise ID is the URL of its metadata document.
	Registered bool
	rule       *ClientRule
}

// ClientError is a refusal of a client before its redirect URI is known
// to be its own: shown to the person on a page, never sent by redirect.
type ClientError struct {
	// Reason is safe to show.
	Reason string
	cause  error
}

func (e *ClientError) Error() string {
	if e.cause != nil {
		return e.Reason + " (" + e.cause.Error() + ")"
	}
	return e.Reason
}

// Unwrap returns the internal cause.
func (e *ClientError) Unwrap() error { return e.cause }

func clientErr(cause error, format string, args ...any) *ClientError {
	return &ClientError{Reason: fmt.Sprintf(format, args...), cause: cause}
}

// ResolveClient finds the client with clientID — fetching its Client ID
// Metadata Document, or loading its registration — and the rule that lets
// it ask. Errors are *ClientError (temporarily unavailable ones too).
func (s *Server) ResolveClient(ctx context.Context, clientID string) (*Client, error) {
	var c *Client
	var err error
	switch {
	case clientID == "":
		return nil, clientErr(nil, "the request names no client (client_id is missing)")
	case len(clientID) > MaxClientIDLen:
		return nil, clientErr(nil, "the client_id is longer than %d bytes", MaxClientIDLen)
	case strings.HasPrefix(clientID, registeredClientPrefix):
		c, err = s.registeredClient(ctx, clientID)
	case strings.HasPrefix(clientID, "https://"), strings.HasPrefix(clientID, "http://"):
		c, err = s.cimd.client(ctx, clientID)
	default:
		return nil, clientErr(nil, "the client_id %q is neither a client metadata document URL nor a client registered here", audit.Clip(clientID, 200))
	}
	if err != nil {
		return nil, err
	}
	for i := range s.cfg.Clients {
		if r := &s.cfg.Clients[i]; r.matches(c) {
			c.rule = r
			return c, nil
		}
	}
	return nil, clientErr(nil, "the administrators of this server have not allowed the client %q to ask for access", audit.Clip(clientID, 200))
}

// clientAgent returns the agent a client acts as, with its entitlement,
// registering it (as the rule says) on first use, owned by owner unless
// the rule names one. Errors are *Error.
func (s *Server) clientAgent(ctx context.Context, c *Client, owner string) (*identity.Agent, *task.Entitlement, error) {
	r := c.rule
	id := r.Agent
	if id.IsZero() {
		sum := sha256.Sum256([]byte(c.ID))
		var err error
		if id, err = identity.NewID(s.cfg.TrustDomain, "oauth-client-"+hex.EncodeToString(sum[:10])); err != nil {
			return nil, nil, errUnavailable(err)
		}
	}
	agent, err := s.cfg.Identities.GetAgent(ctx, id)
	if errors.Is(err, identity.ErrNotFound) && r.Agent.IsZero() {
		agent, err = s.registerClientAgent(ctx, c, id, owner)
	}
	switch {
	case errors.Is(err, identity.ErrNotFound):
		return nil, nil, errUnauthorizedClient(err, "the agent this client is registered as does not exist")
	case err != nil:
		return nil, nil, AsError(err)
	case !agent.Active():
		return nil, nil, errUnauthorizedClient(nil, "the agent this client acts as is %s", agent.Status)
	}
	ent, err := s.cfg.Entitlements.GetEntitlement(ctx, agent.ID)
	if errors.Is(err, task.ErrNoEntitlement) {
		return nil, nil, errUnauthorizedClient(err, "the agent this client acts as has no entitlement")
	} else if err != nil {
		return nil, nil, errUnavailable(err)
	}
	return agent, ent, nil
}

// registerClientAgent registers the agent of a client a pattern or the
// registration rule admits, with its entitlement, and records it.
func (s *Server) registerClientAgent(ctx context.Context, c *Client, id identity.ID, owner string) (*identity.Agent, error) {
	r := c.rule
	if r.Owner != "" {
		owner = r.Owner
	}
	tier := r.Tier
	if tier == "" {
		tier = identity.TierAssist
	}
	now := s.cfg.Now()
	desc := "OAuth client " + c.ID
	if c.Name != "" {
		desc = c.Name + " (" + desc + ")"
	}
	a := &identity.Agent{ID: id, Description: audit.Clip(desc, identity.MaxDescriptionLen), Owner: owner, Escalation: owner,
		Tier: tier, Status: identity.StatusActive, CreatedAt: now, UpdatedAt: now}
	if err := a.Validate(); err != nil {
		return nil, errUnavailable(err)
	}
	err := s.cfg.Identities.CreateAgent(ctx, a)
	if errors.Is(err, identity.ErrExists) { // registered concurrently
		return s.cfg.Identities.GetAgent(ctx, id)
	} else if err != nil {
		return nil, errUnavailable(err)
	}
	if _, err := s.cfg.Entitlements.SetEntitlement(ctx, id, r.Entitlement, now); err != nil {
		return nil, errUnavailable(err)
	}
	if err := s.record(ctx, audit.Event{Type: audit.TypeAgentRegistered, Actor: owner, Agent: id.String(), Decision: audit.DecisionAllow,
		Details: map[string]string{"client_id": audit.Clip(c.ID, 256), "tier": string(tier), "registered_by": "client rule"}}); err != nil {
		return nil, err
	}
	return a, nil
}

// RegisterClient registers a public client dynamically (RFC 7591 §3.1)
// from its JSON metadata and returns the registration response. It
// refuses when registration is off. Errors are *RegistrationError.
func (s *Server) RegisterClient(ctx context.Context, body []byte) (*ClientMetadata, error) {
	if !s.cfg.Registration {
		return nil, &RegistrationError{Code: "access_denied", Description: "dynamic client registration is off on this server", Status: http.StatusForbidden}
	}
	md, err := parseClientMetadata(body, false)
	if err != nil {
		s.recordRegistration(ctx, "", err)
		return nil, err
	}
	now := s.cfg.Now()
	md.ClientID = newSecret(registeredClientPrefix)[:len(registeredClientPrefix)+22]
	md.ClientIDIssuedAt = now.Unix()
	b, err := md.encode()
	if err == nil {
		err = s.cfg.Grants.AddClient(ctx, &RegisteredClient{ClientID: md.ClientID, Metadata: b, CreatedAt: now})
	}
	if err != nil {
		return nil, &RegistrationError{Code: CodeTemporarilyUnavailable, Description: "the client could not be registered", Status: http.StatusServiceUnavailable, cause: err}
	}
	s.recordRegistration(ctx, md.ClientID, nil)
	return md, nil
}

func (s *Server) recordRegistration(ctx context.Context, clientID string, err error) {
	ev := audit.Event{Type: audit.TypeClientRegistered, Decision: audit.DecisionAllow, Time: s.cfg.Now(),
		Details: map[string]string{"client_id": clientID}}
	if err != nil {
		ev.Type, ev.Decision, ev.Reason = audit.TypeClientRefused, audit.DecisionDeny, audit.Clip(err.Error(), 512)
		delete(ev.Details, "client_id")
	}
	if rerr := s.record(ctx, ev); rerr != nil {
		s.log.ErrorContext(ctx, "recording a client registration failed", "err", rerr)
	}
}

func (s *Server) registeredClient(ctx context.Context, clientID string) (*Client, error) {
	rc, err := s.cfg.Grants.GetClient(ctx, clientID)
	if errors.Is(err, ErrClientNotFound) {
		return nil, clientErr(err, "the client %q is not registered here", audit.Clip(clientID, 200))
	} else if err != nil {
		return nil, clientErr(err, "the client's registration cannot be read right now; try again")
	}
	md, err := parseClientMetadata(rc.Metadata, true)
	if err != nil {
		return nil, clientErr(err, "the client's stored registration is unreadable")
	}
	return &Client{ID: clientID, Name: md.ClientName, URI: md.ClientURI, RedirectURIs: md.RedirectURIs, Registered: true}, nil
}

// cacheUntil reads the freshness lifetime of a response from its
// Cache-Control header (RFC 9111 §5.2.2): none for no-store or no-cache,
// max-age bounded by maxAge, otherwise def.
func cacheUntil(now time.Time, h http.Header, def, maxAge time.Duration) time.Time {
	cc := strings.ToLower(h.Get("Cache-Control"))
	age := def
	for _, d := range strings.Split(cc, ",") {
		d = strings.TrimSpace(d)
		switch {
		case d == "no-store" || d == "no-cache" || d == "private":
			return now
		case strings.HasPrefix(d, "max-age="):
			var n int64
			if _, err := fmt.Sscanf(d, "max-age=%d", &n); err == nil && n >= 0 {
				age = time.Duration(min(n, int64(maxAge/time.Second))) * time.Second
			}
		}
	}
	return now.Add(min(age, maxAge))
}
