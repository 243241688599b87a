package mcpproxy

import (
	"context"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// A held call (one waiting for its approval) tells its client why it
// waits with progress notifications, where the client asked for progress
// (the request's _meta.progressToken): Request.Progress, which govern
// takes from the call's context; and, on a 2025-11-25 session whose
// client takes URL-mode elicitations, it can point the person at the
// approval page in band: Request.AskPerson (askPerson).

type progressKey struct{}

// withProgress returns ctx carrying notify as the call's Request.Progress.
func withProgress(ctx context.Context, notify func(string)) context.Context {
	return context.WithValue(ctx, progressKey{}, notify)
}

func progressFrom(ctx context.Context) func(string) {
	f, _ := ctx.Value(progressKey{}).(func(string))
	return f
}

// rawProgress is a raw-relayed call's notifier: progress notifications on
// out, the call's response stream, for the progress token of the call's
// _meta (nil without one).
func rawProgress(out *downstream, fields map[string]json.RawMessage) func(string) {
	token, ok := wire.Members(fields["_meta"])["progressToken"]
	if !ok {
		return nil
	}
	if _, ok := wire.IDKey(token); !ok {
		return nil // a progress token is a string or an integer
	}
	var n int
	return func(message string) {
		n++
		params, _ := json.Marshal(map[string]any{"progressToken": token, "progress": n, "message": message})
		_ = out.send(&wire.Message{JSONRPC: "2.0", Method: "notifications/progress", Params: params})
	}
}

// sdkProgress is an SDK-path call's notifier, for the progress token of
// its params' _meta (nil without one).
func sdkProgress(ctx context.Context, ss *mcp.ServerSession, meta mcp.Meta) func(string) {
	token := progressToken(meta)
	if token == nil || ss == nil {
		return nil
	}
	var n float64
	return func(message string) {
		n++
		_ = ss.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: token, Progress: n, Message: message})
	}
}

// askPerson is a session's Request.AskPerson for a call under ctx: a
// URL-mode elicitation on the downstream session, sent without waiting
// for its answer (the call waits for the approval, not for the client),
// or nil where there is none to send it on (a task session's sessionless
// clients, a client that takes no URL elicitation).
func (s *session) askPerson(ctx context.Context) func(url, message, id string) {
	s.mu.Lock()
	ss, stateless := s.ss, s.stateless
	s.mu.Unlock()
	if stateless || ss == nil {
		return nil
	}
	ip := ss.InitializeParams()
	if ip == nil || ip.Capabilities == nil || ip.Capabilities.Elicitation == nil || ip.Capabilities.Elicitation.URL == nil {
		return nil
	}
	return func(url, message, id string) {
		go func() {
			_, _ = ss.Elicit(ctx, &mcp.ElicitParams{Mode: "url", Message: message, URL: url, ElicitationID: id})
		}()
	}
}
