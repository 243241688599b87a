//lint:file-ignore SA1019 relaying deprecated-but-current protocol features is the point
package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// What upstreams send to the downstream client: their requests
// (sampling, elicitation) and notifications (progress, logging,
// list_changed, resource updates), each sent on the stream of the
// downstream request it belongs to.

// clientOptions are the options of the client that speaks to upstream u:
// the downstream client's capabilities, and handlers that relay what the
// upstream sends to the downstream client.
func (s *session) clientOptions(u *upConn) *mcp.ClientOptions {
	o := &mcp.ClientOptions{
		Logger:                     s.gw.log,
		ToolListChangedHandler:     func(context.Context, *mcp.ToolListChangedRequest) { s.listChanged("tools") },
		PromptListChangedHandler:   func(context.Context, *mcp.PromptListChangedRequest) { s.listChanged("prompts") },
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { s.listChanged("resources") },
		ResourceUpdatedHandler: func(ctx context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			_ = s.server.ResourceUpdated(ctx, r.Params)
		},
		LoggingMessageHandler: func(ctx context.Context, r *mcp.LoggingMessageRequest) {
			defer u.order.handled.Add(1)
			if rctx, ss := s.relayTarget(ctx, nil); ss != nil {
				if p, ok := cleanParams(&s.scrub, r.Params); ok {
					_ = ss.Log(rctx, p)
				}
			}
		},
		ProgressNotificationHandler: func(ctx context.Context, r *mcp.ProgressNotificationClientRequest) {
			defer u.order.handled.Add(1)
			if rctx, ss := s.relayTarget(ctx, r.Params.ProgressToken); ss != nil {
				if p, ok := cleanParams(&s.scrub, r.Params); ok {
					_ = ss.NotifyProgress(rctx, p)
				}
			}
		},
		Capabilities: &mcp.ClientCapabilities{},
		// A sessionless client asks for input itself: an upstream's
		// input_required results go to it as they are, and its retries,
		// each decided, come back (see callTool).
		MultiRoundTrip: &mcp.MultiRoundTripOptions{Disabled: s.stateless},
	}
	if s.stateless {
		s.parkable(o, u)
		return o
	}
	s.mu.Lock()
	caps := s.clientCaps
	s.mu.Unlock()
	if caps != nil {
		c := *caps
		o.Capabilities = &c
		if caps.Sampling != nil {
			o.CreateMessageHandler = func(ctx context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
				rctx, ss := s.relayTarget(ctx, nil)
				p, ok := cleanParams(&s.scrub, r.Params)
				if !ok {
					return nil, errWithheld
				}
				return ss.CreateMessage(rctx, p)
			}
		}
		if caps.Elicitation != nil {
			o.ElicitationHandler = func(ctx context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
				rctx, ss := s.relayTarget(ctx, nil)
				p, ok := cleanParams(&s.scrub, r.Params)
				if !ok {
					return nil, errWithheld
				}
				return ss.Elicit(rctx, p)
			}
		}
	}
	return o
}

// relayRequests passes an upstream's sampling and elicitation requests to
// the downstream client as they are: the downstream client (not the
// gateway's SDK client) validates them and their results.
func (s *session) relayRequests(next mcp.MethodHandler) mcp.MethodHandler {
	return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
		rctx, ss := s.relayTarget(ctx, nil)
		if ss == nil || s.stateless {
			// A sessionless client is asked by the handlers (parkable).
			return next(ctx, method, req)
		}
		// While the client answers, the session's calls stop counting
		// upstream time (see callClock).
		switch method {
		case "elicitation/create":
			s.asking()
			defer s.answered()
			return ss.Elicit(rctx, req.GetParams().(*mcp.ElicitParams))
		case "sampling/createMessage":
			if p, ok := req.GetParams().(*mcp.CreateMessageParams); ok {
				s.asking()
				defer s.answered()
				return ss.CreateMessage(rctx, p)
			}
		}
		return next(ctx, method, req)
	}
}

// listChanged tells the downstream client that a list changed. The SDK
// sends list_changed notifications when a server's features change, so a
// placeholder feature is added and removed (the two changes are debounced
// into one notification; the placeholder is never listed, because the
// gateway answers list requests itself).
func (s *session) listChanged(kind string) {
	s.mu.Lock()
	switch kind {
	case "tools":
		s.tools = nil
	case "prompts":
		s.prompts = nil
	case "resources":
		s.resources = nil
	}
	s.mu.Unlock()
	const ph = "mandate.list_changed"
	switch kind {
	case "tools":
		s.server.AddTool(&mcp.Tool{Name: ph, InputSchema: json.RawMessage(`{"type":"object"}`)}, func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, errors.New("placeholder")
		})
		s.server.RemoveTools(ph)
	case "prompts":
		s.server.AddPrompt(&mcp.Prompt{Name: ph}, func(context.Context, *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return nil, errors.New("placeholder")
		})
		s.server.RemovePrompts(ph)
	case "resources":
		s.server.AddResource(&mcp.Resource{Name: ph, URI: "mandate:list-changed"}, func(context.Context, *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return nil, errors.New("placeholder")
		})
		s.server.RemoveResources("mandate:list-changed")
	}
}

// track registers an in-flight downstream request so that what upstreams
// send while serving it goes back on its stream.
func (s *session) track(ctx context.Context, ss *mcp.ServerSession, token any) func() {
	f := &inflight{ctx: ctx, ss: ss, token: token}
	s.mu.Lock()
	s.inflight = append(s.inflight, f)
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		s.inflight = slices.DeleteFunc(s.inflight, func(x *inflight) bool { return x == f })
		s.mu.Unlock()
	}
}

// relayTarget picks the downstream request a message from an upstream
// belongs to: the one with the message's progress token, else the most
// recent in-flight request. It returns the session to send on (the
// request's own, on a task session, whose requests each have one) and a
// context with that request's values (so the SDK sends on its stream)
// and ctx's cancellation.
func (s *session) relayTarget(ctx context.Context, token any) (context.Context, *mcp.ServerSession) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pick *inflight
	for i := len(s.inflight) - 1; i >= 0; i-- {
		f := s.inflight[i]
		if token != nil && fmt.Sprint(f.token) == fmt.Sprint(token) {
			pick = f
			break
		}
		if pick == nil {
			pick = f
		}
	}
	if pick == nil {
		return ctx, s.ss
	}
	ss := pick.ss
	if ss == nil {
		ss = s.ss
	}
	return valuesFrom{Context: ctx, values: pick.ctx}, ss
}

type valuesFrom struct {
	context.Context
	values context.Context
}

func (c valuesFrom) Value(k any) any {
	if v := c.values.Value(k); v != nil {
		return v
	}
	return c.Context.Value(k)
}

func progressToken(m mcp.Meta) any {
	if m == nil {
		return nil
	}
	return m["progressToken"]
}
