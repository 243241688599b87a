package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/harness"
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

	a, err := harness.RegisterAgent(ctx, harness.AdminClient(srv.SocketPath()), harness.Registration{
		Name: "load", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: string(identity.TierAutonomous),
		Entitle: []string{loadScope},
	})
	if err != nil {
		return nil, err
	}
	tok, err := taskToken(ctx, srv.PublicURL(), a)
	if err != nil {
		return nil, err
	}
	return &gateway{url: srv.PublicURL() + "/mcp/echo", token: tok, close: stop}, nil
}

// taskToken starts a task over OAuth the way an agent does: a
// client_credentials grant authenticated with private_key_jwt, then a
// token exchange for a task token with loadScope.
func taskToken(ctx context.Context, issuer string, a *harness.Agent) (string, error) {
	hc := &http.Client{Timeout: 10 * time.Second}
	tokenURL, err := harness.TokenEndpoint(ctx, hc, issuer)
	if err != nil {
		return "", err
	}
	at, err := a.Token(ctx, hc, tokenURL)
	if err != nil {
		return "", err
	}
	return harness.StartTask(ctx, hc, tokenURL, at, harness.Task{Scope: loadScope, Purpose: loadPurpose, OnBehalfOf: "alice@example.com"})
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
	auth, err := a.Authenticator(&countRecorder{})
	if err != nil {
		l.Close()
		return nil, err
	}
	gw, err := mcpproxy.New(mcpproxy.Config{
		Upstreams:     []mcpproxy.Upstream{{Name: "echo", URL: upURL}},
		Authenticator: auth,
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
