package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/server"
)

// The task the load runs as.
const (
	loadScope   = "tool.call:echo/*"
	loadPurpose = "load test"
	trustDomain = "example.org"
)

// gateway is a running gateway in front of the upstream, and a task token
// that may call its echo tool.
type gateway struct {
	url   string // the upstream's endpoint on the gateway
	token string
	close func()
}

// serve runs h on a fresh loopback listener.
func serve(h http.Handler) (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(l)
	return "http://" + l.Addr().String(), func() { srv.Close() }, nil
}

// startServer runs mandate's server in-process, as `mandate serve` builds
// it, with the upstream at upURL as MCP upstream "echo": a temporary data
// directory, the SQLite store and audit ledger, the access pipeline with
// the default Cedar policies. It registers an autonomous agent over the
// admin socket and starts a task the way an agent does, over OAuth; the
// task and its token last at least for the run (up to a day).
func startServer(ctx context.Context, upURL string, run time.Duration) (_ *gateway, err error) {
	// A short path: unix socket paths are limited to ~104 bytes.
	dir, err := os.MkdirTemp("", "mcpload-")
	if err != nil {
		return nil, err
	}
	cleanup := []func(){func() { os.RemoveAll(dir) }}
	stop := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.TrustDomain = trustDomain
	cfg.MCP.Upstreams = []server.MCPUpstream{{Name: "echo", URL: upURL}}
	life := min(max(cfg.Tokens.TaskTTL, run+time.Minute), 24*time.Hour)
	cfg.Tokens.TaskTTL = life
	cfg.Tasks.DefaultTTL = max(cfg.Tasks.DefaultTTL, life)
	cfg.Tasks.MaxTTL = max(cfg.Tasks.MaxTTL, life)
	srv, err := server.New(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(runCtx) }()
	cleanup = append(cleanup, func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				fmt.Fprintf(os.Stderr, "mcpload: server: %v\n", err)
			}
		case <-time.After(15 * time.Second):
			fmt.Fprintln(os.Stderr, "mcpload: server did not stop")
		}
	})

	sock := srv.SocketPath()
	admin := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	kid := "load-k1"
	var agent struct {
		ID string `json:"id"`
	}
	if err := postJSON(ctx, admin, "http://mandate/admin/v1/agents", map[string]any{
		"name": "load", "owner": "alice@example.com", "escalation": "oncall@example.com", "tier": string(identity.TierAutonomous),
		"keys": []jose.JSONWebKey{{Key: pub, KeyID: kid, Algorithm: "EdDSA", Use: "sig"}},
	}, &agent); err != nil {
		return nil, fmt.Errorf("register agent: %w", err)
	}
	tok, err := taskToken(ctx, srv.PublicURL(), agent.ID, kid, priv)
	if err != nil {
		return nil, err
	}
	return &gateway{url: srv.PublicURL() + "/mcp/echo", token: tok, close: stop}, nil
}

// taskToken starts a task over OAuth the way an agent does: a
// client_credentials grant authenticated with private_key_jwt, then a
// token exchange for a task token with loadScope.
func taskToken(ctx context.Context, issuer, agentID, kid string, key ed25519.PrivateKey) (string, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	var meta struct {
		TokenEndpoint string `json:"token_endpoint"`
	}
	if err := getJSON(ctx, hc, issuer+"/.well-known/oauth-authorization-server", &meta); err != nil {
		return "", fmt.Errorf("authorization server metadata: %w", err)
	}
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.EdDSA, Key: key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", kid))
	if err != nil {
		return "", err
	}
	now := time.Now()
	assertion, err := josejwt.Signed(sig).Claims(josejwt.Claims{
		Issuer: agentID, Subject: agentID, Audience: josejwt.Audience{meta.TokenEndpoint},
		ID: rand.Text(), IssuedAt: josejwt.NewNumericDate(now), Expiry: josejwt.NewNumericDate(now.Add(time.Minute)),
	}).Serialize()
	if err != nil {
		return "", err
	}
	var at, tt struct {
		AccessToken string `json:"access_token"`
	}
	if err := postForm(ctx, hc, meta.TokenEndpoint, url.Values{
		"grant_type":            {"client_credentials"},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {assertion},
	}, &at); err != nil {
		return "", fmt.Errorf("agent token: %w", err)
	}
	if err := postForm(ctx, hc, meta.TokenEndpoint, url.Values{
		"grant_type":         {"urn:ietf:params:oauth:grant-type:token-exchange"},
		"subject_token":      {at.AccessToken},
		"subject_token_type": {"urn:ietf:params:oauth:token-type:access_token"},
		"scope":              {loadScope},
		"purpose":            {loadPurpose},
		"on_behalf_of":       {"alice@example.com"},
	}, &tt); err != nil {
		return "", fmt.Errorf("task token: %w", err)
	}
	return tt.AccessToken, nil
}

func getJSON(ctx context.Context, hc *http.Client, u string, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	return doJSON(hc, req, out)
}

func postJSON(ctx context.Context, hc *http.Client, u string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(string(b)))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	return doJSON(hc, req, out)
}

func postForm(ctx context.Context, hc *http.Client, u string, form url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, strings.NewReader(form.Encode()))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return doJSON(hc, req, out)
}

func doJSON(hc *http.Client, req *http.Request, out any) error {
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
		return fmt.Errorf("%s %s: %s: %s", req.Method, req.URL, resp.Status, b)
	}
	return json.Unmarshal(b, out)
}

// startBare runs the gateway alone (mcpproxy.New) in front of the upstream
// at upURL, with mcpproxytest's authority (token server over SQLite),
// its scope/tier decider instead of the access pipeline, and an audit
// recorder that only counts: the relay's own cost, without policy
// evaluation or the durable ledger. (Its task tokens last 30 minutes.)
func startBare(ctx context.Context, upURL string, _ time.Duration) (_ *gateway, err error) {
	dir, err := os.MkdirTemp("", "mcpload-")
	if err != nil {
		return nil, err
	}
	var cleanup []func()
	stop := func() {
		for i := len(cleanup) - 1; i >= 0; i-- {
			cleanup[i]()
		}
		os.RemoveAll(dir)
	}
	defer func() {
		if err != nil {
			stop()
		}
	}()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	base := "http://" + l.Addr().String()
	a, err := mcpproxytest.NewAuthority(ctx, dir, base)
	if err != nil {
		l.Close()
		return nil, err
	}
	cleanup = append(cleanup, func() { a.Close() })
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams:     []mcpproxy.Upstream{{Name: "echo", URL: upURL}},
		Authenticator: mcpproxytest.Authenticator{Verifier: a.Tokens.Verifier()},
		Decider:       mcpproxytest.Decider{}, Audit: &countRecorder{}, PublicURL: base,
	})
	if err != nil {
		l.Close()
		return nil, err
	}
	cleanup = append(cleanup, func() { gw.Close() })
	hs := &http.Server{Handler: gw}
	go hs.Serve(l)
	cleanup = append(cleanup, func() { hs.Close() })
	ag, err := a.Register(ctx, "load", identity.TierAutonomous)
	if err != nil {
		return nil, err
	}
	tok, err := a.TaskToken(ctx, ag, loadScope, loadPurpose)
	if err != nil {
		return nil, err
	}
	return &gateway{url: base + "/mcp/echo", token: tok, close: stop}, nil
}

// countRecorder is an audit.Recorder that only counts events.
type countRecorder struct{ n atomic.Int64 }

func (c *countRecorder) Record(context.Context, audit.Event) error { c.n.Add(1); return nil }
