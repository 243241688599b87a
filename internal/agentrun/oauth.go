package agentrun

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/resource"
	"github.com/mandatehq/mandate/internal/token"
)

// Limits on what is read from files and the server.
const (
	// MaxKeyFile is the largest agent key file read.
	MaxKeyFile = 64 << 10
	// MaxPersonTokenFile is the largest person's token file read.
	MaxPersonTokenFile = 64 << 10
	// maxAnswer bounds an OAuth answer read.
	maxAnswer = 1 << 20
	// maxShown bounds the server's error text shown.
	maxShown = 512
)

// Credential is an agent's private key, as registered with mandate (its
// public half, with the same kid).
type Credential struct {
	Agent string // the agent's SPIFFE ID
	KeyID string
	Key   crypto.Signer // Ed25519 or ECDSA P-256
}

// ReadKey reads an agent's private JWK (Ed25519 or P-256, with a kid)
// from path.
func ReadKey(path string) (kid string, key crypto.Signer, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", nil, fmt.Errorf("agent key: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxKeyFile+1))
	if err != nil {
		return "", nil, fmt.Errorf("agent key: %w", err)
	}
	if len(b) > MaxKeyFile {
		return "", nil, fmt.Errorf("agent key %s: larger than %d bytes", path, MaxKeyFile)
	}
	var k jose.JSONWebKey
	if err := k.UnmarshalJSON(b); err != nil {
		return "", nil, fmt.Errorf("agent key %s: not a JWK: %v", path, err)
	}
	if k.IsPublic() {
		return "", nil, fmt.Errorf("agent key %s: a public key; mandate run needs the agent's private key (the file registered is its public half)", path)
	}
	if k.KeyID == "" {
		return "", nil, fmt.Errorf("agent key %s: no kid: the key must carry the kid it was registered with", path)
	}
	if _, err := signingAlg(k.Key); err != nil {
		return "", nil, fmt.Errorf("agent key %s: %v", path, err)
	}
	return k.KeyID, k.Key.(crypto.Signer), nil
}

// signingAlg is the JOSE algorithm of an agent key.
func signingAlg(key any) (jose.SignatureAlgorithm, error) {
	switch k := key.(type) {
	case ed25519.PrivateKey:
		return jose.EdDSA, nil
	case *ecdsa.PrivateKey:
		if k.Curve.Params().Name == "P-256" {
			return jose.ES256, nil
		}
	}
	return "", errors.New("agent keys are Ed25519 or ECDSA P-256 private keys")
}

// OAuthError is an OAuth error answer (RFC 6749 §5.2).
type OAuthError struct {
	Status      int
	Code        string
	Description string
}

func (e *OAuthError) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("the server answered %d", e.Status)
	}
	return fmt.Sprintf("%s: %s", e.Code, e.Description)
}

// oauthClient speaks OAuth to a mandate server as an agent.
type oauthClient struct {
	hc      *http.Client
	cred    Credential
	dpop    crypto.Signer // the key tokens are bound to; nil: unbound
	meta    token.Metadata
	timeout time.Duration
}

// discover reads the server's RFC 8414 metadata.
func (c *oauthClient) discover(ctx context.Context, server string) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := strings.TrimSuffix(server, "/") + "/.well-known/oauth-authorization-server"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("server URL: %v", err)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("the server cannot be reached: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("authorization server metadata: %s", resp.Status)
	}
	if err := json.Unmarshal(b, &c.meta); err != nil {
		return fmt.Errorf("authorization server metadata: %v", err)
	}
	if c.meta.TokenEndpoint == "" || c.meta.RevocationEndpoint == "" {
		return errors.New("authorization server metadata names no token or revocation endpoint")
	}
	return nil
}

// assertion is a fresh private_key_jwt client assertion for aud.
func (c *oauthClient) assertion(aud string) (string, error) {
	alg, err := signingAlg(c.cred.Key)
	if err != nil {
		return "", err
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: c.cred.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", c.cred.KeyID))
	if err != nil {
		return "", err
	}
	now := time.Now()
	return jwt.Signed(sig).Claims(jwt.Claims{
		Issuer: c.cred.Agent, Subject: c.cred.Agent, Audience: jwt.Audience{aud}, ID: rand.Text(),
		IssuedAt: jwt.NewNumericDate(now), Expiry: jwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
}

// issued is a token the server issued and when it expires.
type issued struct {
	Token   string
	Expires time.Time
	TTL     time.Duration
}

// tokenRequest posts form, authenticated as the agent, to the token
// endpoint (with a DPoP proof when tokens are bound).
func (c *oauthClient) tokenRequest(ctx context.Context, form url.Values) (*issued, error) {
	var out struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	start := time.Now()
	if err := c.post(ctx, c.meta.TokenEndpoint, form, true, &out); err != nil {
		return nil, err
	}
	if out.AccessToken == "" || out.ExpiresIn <= 0 || strings.ContainsAny(out.AccessToken, " \t\r\n") {
		return nil, errors.New("the token endpoint answered no usable token")
	}
	ttl := time.Duration(out.ExpiresIn) * time.Second
	return &issued{Token: out.AccessToken, Expires: start.Add(ttl), TTL: ttl}, nil
}

// post sends form to endpoint with a client assertion for it; out, if
// not nil, receives the JSON answer.
func (c *oauthClient) post(ctx context.Context, endpoint string, form url.Values, dpop bool, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	as, err := c.assertion(endpoint)
	if err != nil {
		return err
	}
	form.Set("client_assertion_type", token.ClientAssertionJWT)
	form.Set("client_assertion", as)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if dpop && c.dpop != nil {
		proof, err := mcpbridge.DPoPProof(c.dpop, http.MethodPost, endpoint, "")
		if err != nil {
			return err
		}
		req.Header.Set("DPoP", proof)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("the server cannot be reached: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return fmt.Errorf("reading the server's answer: %v", err)
	}
	if len(b) > maxAnswer {
		return fmt.Errorf("the server's answer is larger than %d bytes", maxAnswer)
	}
	if resp.StatusCode != http.StatusOK {
		e := &OAuthError{Status: resp.StatusCode}
		var body struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
		}
		if json.Unmarshal(b, &body) == nil {
			e.Code, e.Description = body.Error, resource.Quote(clip(body.Description))
		}
		return e
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the server's answer does not decode: %v", err)
	}
	return nil
}

func clip(s string) string {
	if len(s) > maxShown {
		return s[:maxShown]
	}
	return s
}

// agentToken gets an agent token (client_credentials).
func (c *oauthClient) agentToken(ctx context.Context) (*issued, error) {
	t, err := c.tokenRequest(ctx, url.Values{"grant_type": {token.GrantClientCredentials}})
	if err != nil {
		return nil, fmt.Errorf("agent token: %w", explain(err))
	}
	return t, nil
}

// TaskRequest is the task Run starts.
type TaskRequest struct {
	Purpose string
	// Scope is the space-separated scope patterns.
	Scope string
	// TTL is the task's lifetime; zero is the server's default brought
	// down to the entitlement's ceiling.
	TTL         time.Duration
	Sensitivity string
	// OnBehalfOf, if set, is checked by the server: the agent's owner, or
	// the person PersonToken proves.
	OnBehalfOf string
	// PersonToken is a person's ID token (or JWT access token) from an
	// issuer the server trusts to name people (federation.issuers with
	// person_claim): the task runs on that person's behalf.
	PersonToken string
}

// startTask exchanges an agent token for a new task's token.
func (c *oauthClient) startTask(ctx context.Context, agentTok string, t TaskRequest) (*issued, error) {
	form := url.Values{
		"grant_type":         {token.GrantTokenExchange},
		"subject_token":      {agentTok},
		"subject_token_type": {token.TokenTypeAccessToken},
		"scope":              {t.Scope},
		"purpose":            {t.Purpose},
	}
	if t.PersonToken != "" {
		form.Set("subject_token", t.PersonToken)
		form.Set("subject_token_type", token.TokenTypeIDToken)
		form.Set("actor_token", agentTok)
		form.Set("actor_token_type", token.TokenTypeAccessToken)
	}
	if t.OnBehalfOf != "" {
		form.Set("on_behalf_of", t.OnBehalfOf)
	}
	if t.TTL > 0 {
		form.Set("task_ttl", strconv.FormatInt(int64((t.TTL+time.Second-1)/time.Second), 10))
	}
	if t.Sensitivity != "" {
		form.Set("sensitivity", t.Sensitivity)
	}
	tok, err := c.tokenRequest(ctx, form)
	if err != nil {
		return nil, fmt.Errorf("starting the task: %w", explain(err))
	}
	return tok, nil
}

// renew exchanges the current task token for a fresh one of the same task.
func (c *oauthClient) renew(ctx context.Context, taskTok string) (*issued, error) {
	return c.tokenRequest(ctx, url.Values{
		"grant_type":         {token.GrantTokenExchange},
		"subject_token":      {taskTok},
		"subject_token_type": {token.TokenTypeAccessToken},
	})
}

// endTask ends the task taskTok is for (RFC 7009 revocation with
// end_task) and returns its status now: "ended", or the status it had
// stopped with before. An answer that does not say the task is over is
// an error.
func (c *oauthClient) endTask(ctx context.Context, taskTok, reason string) (string, error) {
	var out token.EndedTask
	err := c.post(ctx, c.meta.RevocationEndpoint, url.Values{"token": {taskTok}, "end_task": {"true"}, "reason": {reason}}, false, &out)
	if err != nil {
		return "", err
	}
	if out.Status == "" || out.Status == "active" {
		return "", fmt.Errorf("the server did not confirm that the task ended (answer status %s): it may not support ending tasks by their agent", resource.Quote(string(out.Status)))
	}
	return string(out.Status), nil
}

// explain adds to an OAuth refusal what to configure.
func explain(err error) error {
	var oe *OAuthError
	if !errors.As(err, &oe) {
		return err
	}
	var hint string
	switch d := oe.Description; {
	case oe.Code == token.CodeInvalidDPoPProof && strings.Contains(d, "must present a DPoP proof"):
		hint = "this agent requires DPoP: run with --dpop"
	case strings.Contains(d, "on_behalf_of is not the agent's to choose"):
		hint = "a task runs on behalf of the agent's owner unless a person's token proves who asked: give --person-token FILE (an ID token from an issuer in the server's federation.issuers with person_claim), or leave --on-behalf-of out"
	case oe.Code == token.CodeInvalidClient:
		hint = "check --agent (and --trust-domain) and that --key is the private half of a key registered for the agent, with its kid"
	case oe.Code == token.CodeUnauthorizedClient && strings.Contains(d, "no entitlement"):
		hint = "give the agent an entitlement: mandate agent update NAME --entitle … --max-sensitivity … --max-task-ttl …"
	case oe.Code == token.CodeInvalidScope:
		hint = "--scope must lie within the agent's entitlement (mandate agent show NAME)"
	}
	if hint == "" {
		return err
	}
	return fmt.Errorf("%w (%s)", err, hint)
}

// ReadPersonToken reads a person's token from path.
func ReadPersonToken(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("person token: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxPersonTokenFile+1))
	if err != nil {
		return "", fmt.Errorf("person token: %w", err)
	}
	if len(b) > MaxPersonTokenFile {
		return "", fmt.Errorf("person token %s: larger than %d bytes", path, MaxPersonTokenFile)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") || strings.Count(tok, ".") != 2 {
		return "", fmt.Errorf("person token %s does not hold one JWT", path)
	}
	return tok, nil
}
