package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/serveproc"
)

// The task the load runs as.
const (
	loadScope   = "tool.call:echo/*"
	loadPurpose = "load test"
	trustDomain = "example.org"
)

// gateway is `mandate serve` as a child process in front of the upstream,
// and a task token that may call its echo tool.
type gateway struct {
	*serveproc.Server
	url   string // the upstream's endpoint on the gateway
	token string
}

// startGateway runs bin serve with the upstream at upURL as MCP upstream
// "echo" (a temporary data directory, the SQLite store and audit ledger,
// the access pipeline with the default Cedar policies; args are further
// serve flags). It registers an autonomous agent over the admin socket and
// starts a task the way an agent does, over OAuth; the task and its token
// last at least for the run (up to a day). The caller closes it.
func startGateway(ctx context.Context, bin, upURL string, run time.Duration, args []string) (_ *gateway, err error) {
	srv, err := serveproc.Start(ctx, serveproc.Options{
		Bin: bin, TrustDomain: trustDomain, Life: min(run+time.Hour, 24*time.Hour),
		Upstreams: []serveproc.Upstream{{Name: "echo", URL: upURL}}, Args: args,
	})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if cerr := srv.Close(); cerr != nil {
				err = errors.Join(err, fmt.Errorf("stopping mandate serve: %w", cerr))
			}
		}
	}()
	a, err := harness.RegisterAgent(ctx, harness.AdminClient(srv.Socket), harness.Registration{
		Name: "load", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: string(identity.TierAutonomous),
		Entitle: []string{loadScope},
	})
	if err != nil {
		return nil, err
	}
	tok, err := taskToken(ctx, srv.URL, a)
	if err != nil {
		return nil, err
	}
	return &gateway{Server: srv, url: srv.URL + "/mcp/echo", token: tok}, nil
}

// close stops the gateway and reports how it ended on stderr: a harness
// that cannot stop its child says so.
func (g *gateway) close() {
	if err := g.Close(); err != nil {
		fmt.Fprintf(os.Stderr, "mcpload: mandate serve: %v\n", err)
	}
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
