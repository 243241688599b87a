package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Calling upstreams on the SDK path: every upstream or one, under the
// upstream's timeout, with the params as sent upstream, and the size
// limit on what comes back.

// each runs f against every upstream's session.
func (s *session) each(ctx context.Context, f func(context.Context, *mcp.ClientSession) error) error {
	for _, u := range s.ups {
		cs, err := u.get(ctx)
		if err != nil {
			if s.upstream == "" {
				continue
			}
			return s.gw.errorFor(err, u.cfg.Name)
		}
		if err := u.call(ctx, cs, func(ctx context.Context) error { return f(ctx, cs) }); err != nil {
			return s.gw.errorFor(err, u.cfg.Name)
		}
	}
	return nil
}

// call runs f with the upstream's timeout (see callClock); a transport
// failure drops the session so the next call reconnects.
func (u *upConn) call(ctx context.Context, cs *mcp.ClientSession, f func(context.Context) error) error {
	d := u.timeout()
	cctx, stop := u.s.startClock(ctx, d)
	defer stop()
	err := f(cctx)
	u.order.barrier()
	if err == nil {
		return nil
	}
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return err
	}
	if timedOut(cctx) && ctx.Err() == nil {
		// The SDK cancels the call upstream. A stdio server that does not
		// answer in time may be stuck: it is restarted. An HTTP server's
		// session stays, as on the raw relay (dropping it now could end
		// the session before the cancellation arrives).
		if !u.http() {
			u.drop(cs)
		}
		return &timeoutError{upstream: u.cfg.Name, after: d}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	u.drop(cs)
	return fmt.Errorf("%w: upstream %q: %v", errUpstreamDown, u.cfg.Name, err)
}

type timeoutError struct {
	upstream string
	after    time.Duration
}

func (e *timeoutError) Error() string {
	return fmt.Sprintf("upstream %q did not answer within %s", e.upstream, e.after)
}

// upstreamParams are a request's params as sent to upstream u: a copy,
// with the _meta upstreamMeta makes of theirs.
func upstreamParams[T any, P interface {
	*T
	mcp.Params
}](u *upConn, p P) P {
	if p == nil {
		return nil
	}
	c := P(new(T))
	*c = *p
	c.SetMeta(u.upstreamMeta(p.GetMeta()))
	return c
}

func (g *Gateway) checkSize(res mcp.Result) error {
	b, err := json.Marshal(res)
	if err != nil {
		return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "result not encodable"}
	}
	if len(b) > g.cfg.Limits.MaxResultBytes {
		return rpcError(CodeTooLarge, fmt.Sprintf("upstream result of %d bytes exceeds the gateway's limit of %d", len(b), g.cfg.Limits.MaxResultBytes), errorData{})
	}
	return nil
}
