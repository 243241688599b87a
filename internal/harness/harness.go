// Package harness drives a running mandate server through its public
// interfaces, as an agent and its admin would: it registers an agent over
// the admin socket and starts tasks over OAuth (a client_credentials grant
// authenticated with private_key_jwt, RFC 7523, then an RFC 8693 token
// exchange). The load and soak harnesses (cmd/mcpload, cmd/mandatesoak)
// use it.
package harness

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// Agent is a registered agent and the key it authenticates with.
type Agent struct {
	ID    string // its SPIFFE ID
	KeyID string
	Key   ed25519.PrivateKey
}

// AdminClient is an HTTP client for the admin API on the server's local
// socket (requests go to http://mandate/admin/v1/...).
func AdminClient(socket string) *http.Client {
	return AdminClientAt(&net.UnixAddr{Name: socket, Net: "unix"})
}

// Registration is what RegisterAgent registers.
type Registration struct {
	Name, Owner, Escalation string
	Tier                    string // assist, supervised or autonomous
	// Entitle is the agent's entitlement scope (patterns such as
	// "tool.call:echo/*"); without it the agent cannot start tasks by
	// itself. MaxSensitivity and MaxTaskTTL (a Go duration) complete the
	// entitlement; empty, they are "internal" and "1h".
	Entitle                    []string
	MaxSensitivity, MaxTaskTTL string
}

// RegisterAgent registers an agent with a fresh Ed25519 key through the
// admin API.
func RegisterAgent(ctx context.Context, admin *http.Client, r Registration) (*Agent, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	a := &Agent{KeyID: r.Name + "-k1", Key: priv}
	var out struct {
		ID string `json:"id"`
	}
	body := map[string]any{
		"name": r.Name, "owner": r.Owner, "escalation": r.Escalation, "tier": r.Tier,
		"keys": []jose.JSONWebKey{{Key: pub, KeyID: a.KeyID, Algorithm: "EdDSA", Use: "sig"}},
	}
	if len(r.Entitle) > 0 {
		sens, ttl := r.MaxSensitivity, r.MaxTaskTTL
		if sens == "" {
			sens = "internal"
		}
		if ttl == "" {
			ttl = "1h"
		}
		body["entitlement"] = map[string]any{"scope": r.Entitle, "max_sensitivity": sens, "max_task_ttl": ttl}
	}
	if err := postJSON(ctx, admin, "http://mandate/admin/v1/agents", body, &out); err != nil {
		return nil, fmt.Errorf("register agent: %w", err)
	}
	a.ID = out.ID
	return a, nil
}

// TokenEndpoint reads the token endpoint from the RFC 8414 metadata of
// the authorization server at issuer.
func TokenEndpoint(ctx context.Context, hc *http.Client, issuer string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, issuer+"/.well-known/oauth-authorization-server", nil)
	if err != nil {
		return "", err
	}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := DoJSON(hc, req, &meta); err != nil {
		return "", fmt.Errorf("authorization server metadata: %w", err)
	}
	return meta.TokenEndpoint, nil
}

// Token gets an agent token: a client_credentials grant authenticated with
// a private_key_jwt assertion signed by the agent's key.
func (a *Agent) Token(ctx context.Context, hc *http.Client, tokenURL string) (string, error) {
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: a.Key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", a.KeyID))
	if err != nil {
		return "", err
	}
	now := time.Now()
	assertion, err := josejwt.Signed(sig).Claims(josejwt.Claims{
		Issuer: a.ID, Subject: a.ID, Audience: josejwt.Audience{tokenURL},
		ID: rand.Text(), IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		return "", err
	}
	tok, err := accessToken(ctx, hc, tokenURL, url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	})
	if err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	return tok, nil
}

// Task is what StartTask asks for.
type Task struct {
	Scope, Purpose, OnBehalfOf string
	// MaxActions is the task's action budget; zero means none.
	MaxActions int64
	// Resource is the RFC 8707 resource the token is for (a gateway
	// endpoint's resource URL); empty means the issuer.
	Resource string
}

// StartTask starts a task with an RFC 8693 exchange of an agent token and
// returns the task token.
func StartTask(ctx context.Context, hc *http.Client, tokenURL, agentToken string, t Task) (string, error) {
	form := url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {agentToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"scope":              {t.Scope},
		"purpose":            {t.Purpose},
		"on_behalf_of":       {t.OnBehalfOf},
	}
	if t.MaxActions > 0 {
		form.Set("max_actions", strconv.FormatInt(t.MaxActions, 10))
	}
	if t.Resource != "" {
		form.Set("resource", t.Resource)
	}
	tok, err := accessToken(ctx, hc, tokenURL, form)
	if err != nil {
		return "", fmt.Errorf("task token: %w", err)
	}
	return tok, nil
}

func accessToken(ctx context.Context, hc *http.Client, tokenURL string, form url.Values) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if err := DoJSON(hc, req, &out); err != nil {
		return "", err
	}
	return out.AccessToken, nil
}

func postJSON(ctx context.Context, hc *http.Client, u string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return DoJSON(hc, req, out)
}

// DoJSON sends req and decodes a successful JSON answer into out (nil:
// discarded); any other status is an error carrying the answer's body.
func DoJSON(hc *http.Client, req *http.Request, out any) error {
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL.Path, resp.Status, bytes.TrimSpace(b))
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(b, out)
}
