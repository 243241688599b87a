// Package identity defines agents: the governed workload identities that
// mandate issues credentials to. An agent is never a shared human account: it
// has its own SPIFFE ID, an accountable human owner, an escalation contact, a
// trust tier and the credentials it proves itself with (public keys for
// private_key_jwt, or federated trust in an external OIDC issuer).
//
// The package owns the Agent type, its validation, the Store contract that
// storage backends implement, and the sentinel errors they return.
package identity

import (
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Tier is an agent's trust tier: how much it may do on its own.
type Tier string

// The trust tiers, from least to most autonomous.
const (
	// TierAssist agents may only read and draft.
	TierAssist Tier = "assist"
	// TierSupervised agents may write with approval.
	TierSupervised Tier = "supervised"
	// TierAutonomous agents may act within their task scope; high-impact
	// actions still need step-up approval.
	TierAutonomous Tier = "autonomous"
)

// ParseTier parses s as a Tier.
func ParseTier(s string) (Tier, error) {
	switch t := Tier(s); t {
	case TierAssist, TierSupervised, TierAutonomous:
		return t, nil
	}
	return "", fmt.Errorf("%w: unknown tier %q (want assist, supervised or autonomous)", ErrInvalid, s)
}

// Status is an agent's lifecycle state.
type Status string

// Agent statuses. Only active agents can authenticate or hold live tokens.
const (
	StatusActive    Status = "active"
	StatusSuspended Status = "suspended"
	StatusRetired   Status = "retired"
)

// Limits on agent fields.
const (
	MaxLabels         = 64
	MaxLabelLen       = 256
	MaxKeys           = 16
	MaxFederations    = 16
	MaxContactLen     = 320
	MaxDescriptionLen = 1024
)

// Sentinel errors returned by this package and by Store implementations.
var (
	// ErrNotFound: no agent with that ID (or federated subject).
	ErrNotFound = errors.New("agent not found")
	// ErrExists: an agent with that ID is already registered.
	ErrExists = errors.New("agent already exists")
	// ErrInvalid: the agent record fails validation.
	ErrInvalid = errors.New("invalid agent")
	// ErrInactive: the agent is suspended or retired.
	ErrInactive = errors.New("agent is not active")
	// ErrKeyExists: the agent already has a key with that kid.
	ErrKeyExists = errors.New("agent already has a key with that kid")
	// ErrKeyNotFound: the agent has no key with that kid.
	ErrKeyNotFound = errors.New("agent has no key with that kid")
	// ErrFederationTaken: another agent already trusts that issuer and subject.
	ErrFederationTaken = errors.New("federated identity already bound to another agent")
)

// Federation is trust in an identity asserted by an external OIDC issuer (a
// Kubernetes service-account token, a CI OIDC token): a JWT from Issuer whose
// sub claim is Subject authenticates the agent, which then needs no stored
// secret at all. The issuer itself must be configured on the server.
type Federation struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

// Credentials are what an agent can authenticate with.
type Credentials struct {
	Keys        []jose.JSONWebKey
	Federations []Federation
}

// Agent is a registered workload identity.
type Agent struct {
	ID          ID                `json:"id"`
	Description string            `json:"description,omitempty"`
	Owner       string            `json:"owner"`
	Escalation  string            `json:"escalation"`
	Tier        Tier              `json:"tier"`
	Status      Status            `json:"status"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Keys are the public keys the agent signs private_key_jwt client
	// assertions with. Each has a unique kid; only Ed25519 and P-256 keys
	// are accepted.
	Keys        []jose.JSONWebKey `json:"keys,omitempty"`
	Federations []Federation      `json:"federations,omitempty"`
	// RequireDPoP makes the token endpoint refuse to issue this agent any
	// token that is not DPoP-bound.
	RequireDPoP bool `json:"require_dpop,omitempty"`
	// Taint is the highest data sensitivity (a task.Sensitivity) any of
	// the agent's tasks has been exposed to within the configured window,
	// in force until TaintUntil: a task the agent starts before then
	// starts with this taint. It is system state, raised only through
	// task.Store.RaiseTaint; CreateAgent ignores it.
	Taint      string    `json:"taint,omitempty"`
	TaintUntil time.Time `json:"taint_until,omitzero"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// TaintAt returns the agent's taint in force at now: Taint before
// TaintUntil, none after.
func (a *Agent) TaintAt(now time.Time) string {
	if a.Taint != "" && now.Before(a.TaintUntil) {
		return a.Taint
	}
	return ""
}

// Active reports whether the agent may authenticate.
func (a *Agent) Active() bool { return a.Status == StatusActive }

// Key returns the agent's public key with the given kid. With an empty kid
// it returns the only key if there is exactly one.
func (a *Agent) Key(kid string) (jose.JSONWebKey, bool) {
	if kid == "" && len(a.Keys) == 1 {
		return a.Keys[0], true
	}
	for _, k := range a.Keys {
		if kid != "" && k.KeyID == kid {
			return k, true
		}
	}
	return jose.JSONWebKey{}, false
}

var labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,126}[A-Za-z0-9])?$`)

// Validate checks the fields a caller supplies at registration: the ID, the
// accountable owner and escalation contact, tier, labels and credentials.
// Errors wrap ErrInvalid and name the offending field.
func (a *Agent) Validate() error {
	if a.ID.IsZero() {
		return fmt.Errorf("%w: id is required", ErrInvalid)
	}
	if strings.TrimSpace(a.Owner) == "" {
		return fmt.Errorf("%w: owner is required: every agent needs an accountable human owner", ErrInvalid)
	}
	if strings.TrimSpace(a.Escalation) == "" {
		return fmt.Errorf("%w: escalation contact is required", ErrInvalid)
	}
	if len(a.Owner) > MaxContactLen || len(a.Escalation) > MaxContactLen {
		return fmt.Errorf("%w: owner and escalation must be at most %d bytes", ErrInvalid, MaxContactLen)
	}
	if len(a.Description) > MaxDescriptionLen {
		return fmt.Errorf("%w: description must be at most %d bytes", ErrInvalid, MaxDescriptionLen)
	}
	if _, err := ParseTier(string(a.Tier)); err != nil {
		return err
	}
	switch a.Status {
	case StatusActive, StatusSuspended, StatusRetired:
	default:
		return fmt.Errorf("%w: unknown status %q", ErrInvalid, a.Status)
	}
	if len(a.Labels) > MaxLabels {
		return fmt.Errorf("%w: at most %d labels", ErrInvalid, MaxLabels)
	}
	for k, v := range a.Labels {
		if !labelKeyRE.MatchString(k) {
			return fmt.Errorf("%w: label key %q must be 1-128 letters, digits, '.', '_', '/' or '-'", ErrInvalid, k)
		}
		if len(v) > MaxLabelLen {
			return fmt.Errorf("%w: label %q value longer than %d bytes", ErrInvalid, k, MaxLabelLen)
		}
	}
	if len(a.Keys) > MaxKeys {
		return fmt.Errorf("%w: at most %d keys", ErrInvalid, MaxKeys)
	}
	kids := make(map[string]bool, len(a.Keys))
	for i, k := range a.Keys {
		if err := ValidatePublicKey(k); err != nil {
			return fmt.Errorf("%w: keys[%d]: %v", ErrInvalid, i, err)
		}
		if kids[k.KeyID] {
			return fmt.Errorf("%w: keys[%d]: duplicate kid %q", ErrInvalid, i, k.KeyID)
		}
		kids[k.KeyID] = true
	}
	if len(a.Federations) > MaxFederations {
		return fmt.Errorf("%w: at most %d federations", ErrInvalid, MaxFederations)
	}
	for i, f := range a.Federations {
		if err := f.Validate(); err != nil {
			return fmt.Errorf("federations[%d]: %w", i, err)
		}
	}
	return nil
}

// Validate checks that the issuer is an absolute http(s) URL and the
// subject is present. Errors wrap ErrInvalid.
func (f Federation) Validate() error {
	u, err := url.Parse(f.Issuer)
	if err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("%w: federation issuer %q must be an absolute http(s) URL", ErrInvalid, f.Issuer)
	}
	if f.Subject == "" || len(f.Subject) > MaxDescriptionLen {
		return fmt.Errorf("%w: federation subject is required (at most %d bytes)", ErrInvalid, MaxDescriptionLen)
	}
	return nil
}

// ValidatePublicKey accepts exactly the key types agents may register: an
// Ed25519 (OKP) or P-256 (EC) public key with a key ID. Private keys are
// refused so that one is never stored by mistake.
func ValidatePublicKey(k jose.JSONWebKey) error {
	if k.KeyID == "" {
		return errors.New("kid is required")
	}
	if !k.IsPublic() {
		return errors.New("a private key was supplied; register the public key only")
	}
	switch pub := k.Key.(type) {
	case ed25519.PublicKey:
		if len(pub) != ed25519.PublicKeySize {
			return errors.New("bad Ed25519 key length")
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.EdDSA) {
			return fmt.Errorf("alg %q does not match an Ed25519 key", k.Algorithm)
		}
	case *ecdsa.PublicKey:
		if pub.Curve != elliptic.P256() {
			return errors.New("only the P-256 curve is accepted for EC keys")
		}
		if k.Algorithm != "" && k.Algorithm != string(jose.ES256) {
			return fmt.Errorf("alg %q does not match a P-256 key", k.Algorithm)
		}
	default:
		return fmt.Errorf("unsupported key type %T: use Ed25519 (OKP) or P-256 (EC)", k.Key)
	}
	if k.Use != "" && k.Use != "sig" {
		return fmt.Errorf("use %q: keys must be signing keys", k.Use)
	}
	return nil
}

// Filter selects agents in Store.ListAgents. Zero fields match everything.
type Filter struct {
	Status Status
	Tier   Tier
	Owner  string
	// Limit caps the number of results; zero means no limit.
	Limit int
}

// Store persists agents. Implementations are safe for concurrent use.
type Store interface {
	// CreateAgent stores a new agent. It returns ErrExists if the ID is
	// taken and ErrFederationTaken if one of its federations is bound to
	// another agent.
	CreateAgent(ctx context.Context, a *Agent) error
	// GetAgent returns the agent with the given ID, or ErrNotFound.
	GetAgent(ctx context.Context, id ID) (*Agent, error)
	// FindFederated returns the agent that trusts subject at issuer, or
	// ErrNotFound.
	FindFederated(ctx context.Context, issuer, subject string) (*Agent, error)
	// ListAgents returns the agents matching f, ordered by ID.
	ListAgents(ctx context.Context, f Filter) ([]*Agent, error)
	// UpdateAgentCredentials replaces an agent's credentials (public keys
	// and federations) with what update returns given the current ones,
	// and sets UpdatedAt, atomically: no concurrent change can be lost
	// between the read and the write. An error from update aborts the
	// change and is returned (wrapped). It returns the updated agent,
	// ErrNotFound, or ErrFederationTaken if a new federation is bound to
	// another agent.
	UpdateAgentCredentials(ctx context.Context, id ID, at time.Time, update func(Credentials) (Credentials, error)) (*Agent, error)
	// SetAgentStatus changes an agent's status and UpdatedAt and returns
	// the updated agent, or ErrNotFound.
	SetAgentStatus(ctx context.Context, id ID, status Status, at time.Time) (*Agent, error)
}
