package mcpproxy

import (
	"context"
	"crypto"
	"errors"
	"io"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// BridgeConfig configures Bridge.
type BridgeConfig struct {
	// Endpoint is the gateway endpoint URL (…/mcp or …/mcp/<upstream>).
	Endpoint string
	// Token is the task token: sent as a Bearer credential, or with DPoP
	// proofs by DPoPKey when the token is bound to that key.
	Token   string
	DPoPKey crypto.Signer
	// HTTPClient is the client to use (default http.DefaultClient's
	// transport).
	HTTPClient *http.Client
}

// Bridge serves an MCP client that only speaks stdio (in, out) by relaying
// its messages, unchanged, to a gateway endpoint over Streamable HTTP with
// the task's credential, and the gateway's messages back. It returns when
// either side closes or ctx ends.
func Bridge(ctx context.Context, in io.ReadCloser, out io.WriteCloser, cfg BridgeConfig) error {
	base := http.DefaultTransport
	if cfg.HTTPClient != nil && cfg.HTTPClient.Transport != nil {
		base = cfg.HTTPClient.Transport
	}
	hc := &http.Client{Transport: &credentialTransport{base: base, token: cfg.Token, dpopKey: cfg.DPoPKey}}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	down, err := (&mcp.IOTransport{Reader: in, Writer: out}).Connect(ctx)
	if err != nil {
		return err
	}
	defer down.Close()
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
