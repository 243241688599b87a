package mcpbridge

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Config configures Run.
type Config struct {
	// Endpoint is the gateway endpoint URL (…/mcp or …/mcp/<upstream>).
	Endpoint string
	// Token is the task token: sent as a Bearer credential, or with DPoP
	// proofs by DPoPKey when the token is bound to that key.
	Token   string
	DPoPKey crypto.Signer
	// HTTPClient's Transport carries the requests (default
	// http.DefaultTransport); the credential is added on top of it.
	HTTPClient *http.Client
}

// Run serves an MCP client that only speaks stdio (in, out) by relaying
// its messages, unchanged, to cfg.Endpoint over Streamable HTTP with the
// task's credential, and the gateway's messages back. It returns nil when
// either side closes or ctx ends, and the error otherwise.
func Run(ctx context.Context, in io.ReadCloser, out io.WriteCloser, cfg Config) error {
	base := http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		base = cfg.HTTPClient.Transport
	}
	hc := &http.Client{Transport: &Transport{Base: base, Token: cfg.Token, DPoPKey: cfg.DPoPKey}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	down, err := (&mcp.IOTransport{Reader: in, Writer: out}).Connect(ctx)
	if err != nil {
		return err
	}
	defer down.Close()
	// MaxRetries -1: a lost gateway stream ends the bridge, so the client
	// sees its server exit instead of calls that hang.
	up, err := (&mcp.StreamableClientTransport{Endpoint: cfg.Endpoint, HTTPClient: hc, MaxRetries: -1}).Connect(ctx)
	if err != nil {
		return err
	}
	defer up.Close()
	errc := make(chan error, 2)
	pump := func(from, to mcp.Connection) {
		for {
			msg, err := from.Read(ctx)
			if err != nil {
				errc <- err
				return
			}
			if err := to.Write(ctx, msg); err != nil {
				errc <- err
				return
			}
		}
	}
	go pump(down, up)
	go pump(up, down)
	err = <-errc
	cancel()
	if errors.Is(err, io.EOF) || errors.Is(err, context.Canceled) || errors.Is(err, mcp.ErrConnectionClosed) {
		return nil
	}
	return err
}
