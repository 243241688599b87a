// Package mcpproxytest provides what tests, benchmarks and the load
// generator need to run the MCP gateway against mandate's real
// authorization server: a token.Server over a SQLite store that registers
// agents and issues task tokens, a real access pipeline with the shipped
// default policies (Authority.Pipeline) and the gateway's Authenticator
// over it, and a small Decider built only from the task's scope and the
// agent's tier. For measuring the gateway it also has a lean upstream
// (EchoServer, and SDKEchoServer for a Go SDK one) and a lean client
// (LeanClient), both cheap enough not to dominate what they measure.
// For acceptance tests it installs and runs the real MCP parts: the
// pinned npm packages (NPMDeps), the Go SDK's conformance server
// (StartEverything) and the official conformance suite (RunConformance).
//
// The Decider is not a policy engine: it is the honest minimum (scope
// patterns and tier rules) for unit tests and measurements of the
// gateway that say so; what mandate serve runs is the pipeline.
package mcpproxytest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task"
	"github.com/mandatehq/mandate/internal/token"
)

// TrustDomain is the trust domain of the agents Authority registers.
const TrustDomain = "example.org"

// Authority is a real mandate authorization server over SQLite.
type Authority struct {
	Backend store.Backend
	Tokens  *token.Server
	// Audit is the tamper-evident ledger over the same store.
	Audit  *audit.Ledger
	Issuer string
	// Path is the SQLite database file (tests delete it to lose the store).
	Path string
}

// NewAuthority opens a SQLite store in dir and starts a token server
// whose issuer (and default task token audience) is issuer; resources are
// the further audiences it issues task tokens for (RFC 8707), a
// gateway's mcpproxy.Resources as mandate serve wires them.
func NewAuthority(ctx context.Context, dir, issuer string, resources ...string) (*Authority, error) {
	path := filepath.Join(dir, "mandate.db")
	b, err := store.Open(ctx, path)
	if err != nil {
		return nil, err
	}
	rec, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: b, Sealer: sealtest.Keyring(), CheckpointInterval: -1})
	if err != nil {
		b.Close()
		return nil, err
	}
	ts, err := token.NewServer(ctx, token.Config{
		Sealer: sealtest.Keyring(),
		Issuer: issuer, TrustDomain: TrustDomain,
		Identities: b, Tasks: b, Entitlements: b, Tokens: b, Audit: rec,
		TaskTokenTTL: 30 * time.Minute,
		Audiences:    append([]string{issuer}, resources...),
	})
	if err != nil {
		b.Close()
		return nil, err
	}
	return &Authority{Backend: b, Tokens: ts, Audit: rec, Issuer: issuer, Path: path}, nil
}

// Close closes the store.
func (a *Authority) Close() error { return a.Backend.Close() }

// Agent is a registered agent and its private key.
type Agent struct {
	ID  identity.ID
	Key ed25519.PrivateKey
	kid string
}

// Register creates an active agent of the given tier, entitled to any
// task.
func (a *Authority) Register(ctx context.Context, name string, tier identity.Tier) (*Agent, error) {
	id, err := identity.NewID(TrustDomain, name)
	if err != nil {
		return nil, err
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := name + "-k1"
	now := time.Now().UTC()
	ag := &identity.Agent{
		ID: id, Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: tier,
		Status: identity.StatusActive, Keys: []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: "EdDSA", Use: "sig"}},
		CreatedAt: now, UpdatedAt: now,
	}
	if err := a.Backend.CreateAgent(ctx, ag); err != nil {
		return nil, err
	}
	// Entitled to any task, so that it can start its own (the gateway's
	// tests narrow each task's scope instead).
	all, err := task.ParseScope("*")
	if err != nil {
		return nil, err
	}
	if _, err := a.Backend.SetEntitlement(ctx, id, &task.Entitlement{Scope: all, MaxSensitivity: task.SensitivityRestricted, MaxTaskTTL: token.DefaultMaxTaskLifetime}, now); err != nil {
		return nil, err
	}
	return &Agent{ID: id, Key: priv, kid: kid}, nil
}

// TaskToken starts a task for ag with the given scope (space-separated
// patterns) and returns its Bearer task token, the way an agent does:
// client_credentials with private_key_jwt, then token exchange.
func (a *Authority) TaskToken(ctx context.Context, ag *Agent, scope, purpose string) (string, error) {
	return a.taskTokenFor(ctx, ag, scope, purpose, "", nil)
}

// TaskTokenDPoP is TaskToken for a token bound to dpopKey (RFC 9449).
func (a *Authority) TaskTokenDPoP(ctx context.Context, ag *Agent, scope, purpose string, dpopKey ed25519.PrivateKey) (string, error) {
	return a.taskTokenFor(ctx, ag, scope, purpose, "", dpopKey)
}

// TaskTokenFor is TaskToken for a token whose audience is resource (RFC
// 8707 resource parameter), bound to dpopKey unless it is nil.
func (a *Authority) TaskTokenFor(ctx context.Context, ag *Agent, scope, purpose, resource string, dpopKey ed25519.PrivateKey) (string, error) {
	return a.taskTokenFor(ctx, ag, scope, purpose, resource, dpopKey)
}

// DPoPProof is an RFC 9449 proof by key for method and URL, bound to
// accessToken when it is not empty.
func DPoPProof(key ed25519.PrivateKey, method, u, accessToken string) (string, error) {
	return mcpbridge.DPoPProof(key, method, u, accessToken)
}

func (a *Authority) taskTokenFor(ctx context.Context, ag *Agent, scope, purpose, resource string, dpopKey ed25519.PrivateKey) (string, error) {
	proof := func() string {
		if dpopKey == nil {
			return ""
		}
		p, _ := DPoPProof(dpopKey, "POST", a.Tokens.TokenEndpoint(), "")
		return p
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: ag.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", ag.kid))
	if err != nil {
		return "", err
	}
	now := time.Now()
	assertion, err := josejwt.Signed(sig).Claims(josejwt.Claims{
		Issuer: ag.ID.String(), Subject: ag.ID.String(), Audience: josejwt.Audience{a.Tokens.TokenEndpoint()},
		ID: rand.Text(), IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		return "", err
	}
	at, err := a.Tokens.Token(ctx, &token.TokenRequest{
		GrantType: token.GrantClientCredentials, ClientAssertionType: token.ClientAssertionJWT, ClientAssertion: assertion,
		DPoPProof: proof(),
	})
	if err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	tt, err := a.Tokens.Token(ctx, &token.TokenRequest{
		GrantType: token.GrantTokenExchange, SubjectToken: at.AccessToken, SubjectTokenType: token.TokenTypeAccessToken,
		Scope: scope, Purpose: purpose, OnBehalfOf: "alice@example.com", DPoPProof: proof(), Resource: resource,
	})
	if err != nil {
		return "", fmt.Errorf("task token: %w", err)
	}
	return tt.AccessToken, nil
}

// Pipeline returns a real access pipeline over the authority's store and
// token verifier, deciding with mandate's shipped default policies.
// Fields cfg sets are kept (Limits, Classifier, Recorder, ...); without a
// Recorder it records into the authority's ledger.
func (a *Authority) Pipeline(cfg access.Config) (*access.Pipeline, error) {
	set, err := policy.Compile(policy.DefaultSources())
	if err != nil {
		return nil, err
	}
	cfg.Verifier, cfg.Revocations = a.Tokens.Verifier(), a.Tokens.Revocations()
	cfg.Tasks, cfg.Agents = a.Backend, a.Backend
	if cfg.Engine == nil {
		cfg.Engine = policy.NewEngine(set, nil)
	}
	if cfg.Recorder == nil {
		cfg.Recorder = a.Audit
	}
	return access.New(cfg)
}

// Authenticator returns the gateway's Authenticator over a pipeline of
// the authority recording into rec (the ledger if nil): a refused
// credential is a recorded decision, as in mandate serve.
func (a *Authority) Authenticator(rec audit.Recorder) (mcpproxy.Authenticator, error) {
	p, err := a.Pipeline(access.Config{Recorder: rec})
	if err != nil {
		return nil, err
	}
	return mcpproxy.NewPipeline(p), nil
}

// Decider decides from the task's scope and the agent's tier alone, for
// unit tests of the gateway that say so (the access pipeline is the
// decider of mandate serve; see Authority.Pipeline). The risk class is
// policy's one classifier's, from the tool's annotations. Outside the
// scope is denied; an assist agent may only read; a
// supervised agent needs approval for anything but reads; an autonomous
// agent may do what its scope allows. Errors and unknown tiers deny.
type Decider struct{}

var _ mcpproxy.Decider = Decider{}

// scopes caches parsed scopes by their string form (tokens repeat them on
// every call).
var scopes sync.Map

func parseScope(s string) (task.Scope, error) {
	if sc, ok := scopes.Load(s); ok {
		return sc.(task.Scope), nil
	}
	sc, err := task.ParseScope(s)
	if err == nil {
		scopes.Store(s, sc)
	}
	return sc, err
}

// Decide implements mcpproxy.Decider.
func (Decider) Decide(_ context.Context, r mcpproxy.Request) (mcpproxy.Decision, error) {
	p := r.Principal
	if p == nil {
		return mcpproxy.Decision{}, errors.New("no principal")
	}
	var ann *policy.ToolAnnotations
	if len(r.Annotations) > 0 {
		ann = new(policy.ToolAnnotations)
		if json.Unmarshal(r.Annotations, ann) != nil {
			ann = nil
		}
	}
	risk := (*policy.Classifier)(nil).Classify(r.Action, r.Resource, ann).Risk
	deny := func(format string, args ...any) (mcpproxy.Decision, error) {
		return mcpproxy.Decision{Effect: mcpproxy.Deny, Risk: risk, Reasons: []string{fmt.Sprintf(format, args...)}}, nil
	}
	sc, err := parseScope(p.Scope)
	if err != nil {
		return deny("task scope is invalid")
	}
	if !sc.Allows(r.Action, r.Resource) {
		return deny("task scope does not allow %s on %s", r.Action, r.Resource)
	}
	switch identity.Tier(p.Tier) {
	case identity.TierAssist:
		if risk != policy.RiskRead {
			return deny("assist agents may only read; %s is a %s action", r.Resource, risk)
		}
	case identity.TierSupervised:
		if risk != policy.RiskRead {
			return mcpproxy.Decision{Effect: mcpproxy.ApprovalRequired, Reasons: []string{fmt.Sprintf("supervised agents need approval for %s actions", risk)}, Risk: risk}, nil
		}
	case identity.TierAutonomous:
	default:
		return deny("unknown agent tier %q", p.Tier)
	}
	return mcpproxy.Decision{Effect: mcpproxy.Allow, Risk: risk, Reasons: []string{"task scope allows " + r.Action + " on " + r.Resource}}, nil
}
