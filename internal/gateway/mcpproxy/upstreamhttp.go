package mcpproxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

func (u *upConn) http() bool { return u.cfg.URL != "" }

func (u *upConn) timeout() time.Duration {
	if u.cfg.Timeout > 0 {
		return u.cfg.Timeout
	}
	return u.s.gw.cfg.Limits.CallTimeout
}

func (u *upConn) protocolVersion() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.init == nil {
		return ""
	}
	return u.init.ProtocolVersion
}

// postUpstream POSTs one JSON-RPC message on the upstream session cs.
func (g *Gateway) postUpstream(ctx context.Context, u *upConn, cs *mcp.ClientSession, body []byte, extra http.Header) (*http.Response, error) {
	h := http.Header{
		"Content-Type": {"application/json"},
		"Accept":       {"application/json, text/event-stream"},
	}
	for k, v := range extra {
		h[k] = v
	}
	return g.upstreamRoundTrip(ctx, u, cs, http.MethodPost, bytes.NewReader(body), h)
}

// upstreamRoundTrip sends a request with header h on the upstream session
// cs: with its session id and negotiated protocol version, through the
// upstream's transport (which adds its configured headers).
func (g *Gateway) upstreamRoundTrip(ctx context.Context, u *upConn, cs *mcp.ClientSession, method string, body io.Reader, h http.Header) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u.cfg.URL, body)
	if err != nil {
		return nil, err
	}
	u.mu.Lock()
	for k, v := range u.headers {
		h.Set(k, v)
	}
	u.mu.Unlock()
	if id := cs.ID(); id != "" {
		h.Set("Mcp-Session-Id", id)
	}
	if v := u.protocolVersion(); v != "" {
		h.Set("Mcp-Protocol-Version", v)
	}
	req.Header = h
	return g.relayers[u.cfg.Name].RoundTrip(req)
}

// sendUpstream POSTs a notification or response, which the upstream
// accepts with 202.
func (g *Gateway) sendUpstream(ctx context.Context, u *upConn, cs *mcp.ClientSession, m *wire.Message) error {
	resp, err := g.postUpstream(ctx, u, cs, m.Encode(), nil)
	if err != nil {
		return err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted && resp.StatusCode != http.StatusOK {
		return fmt.Errorf("upstream %q answered HTTP %d", u.cfg.Name, resp.StatusCode)
	}
	return nil
}

// resumeUpstream reopens an upstream's stream after its event lastID,
// waiting first for the reconnection time the stream asked for (at most
// a few seconds).
func (g *Gateway) resumeUpstream(ctx context.Context, u *upConn, cs *mcp.ClientSession, lastID string, retry time.Duration) (io.ReadCloser, error) {
	if retry > 0 {
		t := time.NewTimer(min(retry, 5*time.Second))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
	resp, err := g.upstreamRoundTrip(ctx, u, cs, http.MethodGet, nil, http.Header{
		"Accept":        {"text/event-stream"},
		"Last-Event-Id": {lastID},
	})
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || mediaType(resp.Header.Get("Content-Type")) != "text/event-stream" {
		resp.Body.Close()
		return nil, fmt.Errorf("resuming the stream after event %q: upstream answered HTTP %d", lastID, resp.StatusCode)
	}
	return resp.Body, nil
}

// readBody reads resp's body, or its first limit+1 bytes if it is longer
// (so that the caller can tell it is too long). A body whose length is
// declared and within limit is read into one allocation of that size
// rather than into a slice that grows (and is copied) as it fills.
func readBody(resp *http.Response, limit int) ([]byte, error) {
	if n := resp.ContentLength; n >= 0 && n <= int64(limit) {
		// net/http's body ends after the declared length.
		b := make([]byte, n)
		if _, err := io.ReadFull(resp.Body, b); err != nil {
			return nil, err
		}
		return b, nil
	}
	return io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
}
