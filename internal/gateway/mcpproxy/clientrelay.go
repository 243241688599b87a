//lint:file-ignore SA1019 relaying deprecated-but-current protocol features is the point
package mcpproxy

import (
	"context"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// What the downstream client sends that goes on to the upstreams without
// a decision: its roots, resource subscriptions, completion requests and
// the progress of its own answers.

func (s *session) initialized(ctx context.Context, _ *mcp.InitializedRequest) {
	go s.syncRoots(context.WithoutCancel(ctx))
}

// syncRoots mirrors the downstream client's roots to every upstream.
func (s *session) syncRoots(ctx context.Context) {
	s.mu.Lock()
	ss := s.ss
	s.mu.Unlock()
	if ss == nil {
		return
	}
	ip := ss.InitializeParams()
	if ip == nil || ip.Capabilities == nil || (ip.Capabilities.RootsV2 == nil && !ip.Capabilities.Roots.ListChanged) {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	res, err := ss.ListRoots(ctx, nil)
	if err != nil {
		return
	}
	for _, u := range s.ups {
		u.mu.Lock()
		c, old := u.client, u.roots
		u.roots = nil
		for _, r := range res.Roots {
			u.roots = append(u.roots, r.URI)
		}
		u.mu.Unlock()
		if c == nil {
			continue
		}
		c.RemoveRoots(old...)
		c.AddRoots(res.Roots...)
	}
}

func (s *session) subscribe(ctx context.Context, r *mcp.SubscribeRequest) error {
	return s.onResourceUpstream(ctx, r.Params.URI, func(ctx context.Context, u *upConn, cs *mcp.ClientSession) error {
		return cs.Subscribe(ctx, &mcp.SubscribeParams{Meta: u.upstreamMeta(r.Params.Meta), URI: r.Params.URI})
	})
}

func (s *session) unsubscribe(ctx context.Context, r *mcp.UnsubscribeRequest) error {
	return s.onResourceUpstream(ctx, r.Params.URI, func(ctx context.Context, u *upConn, cs *mcp.ClientSession) error {
		return cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{Meta: u.upstreamMeta(r.Params.Meta), URI: r.Params.URI})
	})
}

// onResourceUpstream runs f on the session of the upstream serving uri.
func (s *session) onResourceUpstream(ctx context.Context, uri string, f func(context.Context, *upConn, *mcp.ClientSession) error) error {
	u, err := s.resourceUpstream(ctx, uri)
	if err != nil {
		return err
	}
	cs, err := u.get(ctx)
	if err != nil {
		return s.gw.errorFor(err, u.cfg.Name)
	}
	return s.gw.errorFor(u.call(ctx, cs, func(ctx context.Context) error { return f(ctx, u, cs) }), u.cfg.Name)
}

func (s *session) complete(ctx context.Context, r *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
	p := *r.Params
	var u *upConn
	if p.Ref != nil && p.Ref.Type == "ref/prompt" {
		if s.upstream == "" {
			up, name, ok := s.split(p.Ref.Name)
			if !ok {
				return nil, invalidParams("unknown prompt %q", p.Ref.Name)
			}
			ref := *p.Ref
			ref.Name = name
			p.Ref = &ref
			u = up
		} else {
			u = s.ups[0]
		}
	} else if p.Ref != nil {
		up, err := s.resourceUpstream(ctx, p.Ref.URI)
		if err != nil {
			return nil, err
		}
		u = up
	} else {
		return nil, invalidParams("completion needs a ref")
	}
	cs, err := u.get(ctx)
	if err != nil {
		return nil, s.gw.errorFor(err, u.cfg.Name)
	}
	p.Meta = u.upstreamMeta(p.Meta)
	var res *mcp.CompleteResult
	err = u.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.Complete(ctx, &p)
		return err
	})
	return res, s.gw.errorFor(err, u.cfg.Name)
}

// clientProgress relays progress the downstream client reports (on a
// sampling or elicitation request) to every upstream.
func (s *session) clientProgress(ctx context.Context, r *mcp.ProgressNotificationServerRequest) {
	for _, u := range s.ups {
		u.mu.Lock()
		cs := u.cs
		u.mu.Unlock()
		if cs != nil {
			_ = cs.NotifyProgress(ctx, r.Params)
		}
	}
}
