package mcpproxy

import (
	"context"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Resources: listing them and their templates, finding the upstream that
// serves a URI, admitting resources/read (both paths) and relaying it on
// the SDK path.

func (s *session) listResources(ctx context.Context, req *mcp.ListResourcesRequest) (mcp.Result, error) {
	if s.upstream != "" {
		u := s.ups[0]
		cs, err := u.get(ctx)
		if err != nil {
			return nil, s.gw.errorFor(err, u.cfg.Name)
		}
		var res *mcp.ListResourcesResult
		err = u.call(ctx, cs, func(ctx context.Context) (err error) {
			res, err = cs.ListResources(ctx, upstreamParams(u, req.Params))
			return err
		})
		if err != nil {
			return nil, s.gw.errorFor(err, u.cfg.Name)
		}
		res.Cacheable = perTask
		return res, nil
	}
	if req.Params != nil && req.Params.Cursor != "" {
		return nil, invalidParams("invalid cursor")
	}
	idx := map[string]*upConn{}
	res := &mcp.ListResourcesResult{Cacheable: perTask, Resources: []*mcp.Resource{}}
	for _, u := range s.ups {
		cs, err := u.get(ctx)
		if err != nil || !hasResources(u) {
			continue
		}
		_ = u.call(ctx, cs, func(ctx context.Context) error {
			for r, err := range cs.Resources(ctx, nil) {
				if err != nil {
					return err
				}
				if _, dup := idx[r.URI]; !dup {
					idx[r.URI] = u
					res.Resources = append(res.Resources, r)
				}
			}
			return nil
		})
	}
	s.mu.Lock()
	s.resources = idx
	s.mu.Unlock()
	return res, nil
}

func hasResources(u *upConn) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.init != nil && u.init.Capabilities != nil && u.init.Capabilities.Resources != nil
}

func (s *session) listTemplates(ctx context.Context, req *mcp.ListResourceTemplatesRequest) (mcp.Result, error) {
	res := &mcp.ListResourceTemplatesResult{Cacheable: perTask, ResourceTemplates: []*mcp.ResourceTemplate{}}
	if s.upstream != "" {
		u := s.ups[0]
		cs, err := u.get(ctx)
		if err != nil {
			return nil, s.gw.errorFor(err, u.cfg.Name)
		}
		err = u.call(ctx, cs, func(ctx context.Context) (err error) {
			res, err = cs.ListResourceTemplates(ctx, upstreamParams(u, req.Params))
			return err
		})
		if err != nil {
			return nil, s.gw.errorFor(err, u.cfg.Name)
		}
		res.Cacheable = perTask
		return res, nil
	}
	for _, u := range s.ups {
		cs, err := u.get(ctx)
		if err != nil || !hasResources(u) {
			continue
		}
		_ = u.call(ctx, cs, func(ctx context.Context) error {
			for t, err := range cs.ResourceTemplates(ctx, nil) {
				if err != nil {
					return err
				}
				res.ResourceTemplates = append(res.ResourceTemplates, t)
			}
			return nil
		})
	}
	return res, nil
}

// resourceUpstream finds the upstream serving uri.
func (s *session) resourceUpstream(ctx context.Context, uri string) (*upConn, error) {
	if s.upstream != "" {
		return s.ups[0], nil
	}
	s.mu.Lock()
	u := s.resources[uri]
	s.mu.Unlock()
	if u != nil {
		return u, nil
	}
	var with []*upConn
	for _, c := range s.ups {
		if _, err := c.get(ctx); err == nil && hasResources(c) {
			with = append(with, c)
		}
	}
	if len(with) == 1 {
		return with[0], nil
	}
	return nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf("resource %q is not known on the aggregated endpoint; list resources first or use an upstream's endpoint", uri)}
}

// admitResource admits a resources/read: it finds the upstream serving
// uri and governs the read.
func (s *session) admitResource(ctx context.Context, a *authed, uri string) (*upConn, outcomeFunc, error) {
	u, err := s.resourceUpstream(ctx, uri)
	if err != nil {
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: ActionResourceRead, Name: uri, Resource: uri}, "no upstream serves the resource")
		return nil, nil, err
	}
	done, err := s.gw.govern(ctx, s, Request{
		Credential: a.cred, Principal: a.p, Action: ActionResourceRead,
		Upstream: u.cfg.Name, Name: uri, Resource: uri,
	})
	if err != nil {
		return nil, nil, err
	}
	return u, done, nil
}

// readResource is the SDK path of resources/read (stdio upstreams).
func (s *session) readResource(ctx context.Context, req *mcp.ReadResourceRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	state, ok := s.openRetry(req.Params.RequestState, "resources/read", req.Params.URI)
	if !ok {
		return nil, s.badState(ctx, a, "resources/read", req.Params.URI)
	}
	admitCtx := ctx
	if notify := sdkProgress(ctx, req.Session, req.Params.Meta); notify != nil {
		admitCtx = withProgress(ctx, notify) // for a read held for approval
	}
	u, done, err := s.admitResource(admitCtx, a, req.Params.URI)
	if err != nil {
		return nil, err
	}
	defer s.track(ctx, req.Session, progressToken(req.Params.Meta))()
	cs, err := u.get(ctx)
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	p := upstreamParams(u, req.Params)
	p.RequestState = state
	var res *mcp.ReadResourceResult
	err = u.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.ReadResource(ctx, p)
		return err
	})
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	res.RequestState = s.sealRetry(res.RequestState, "resources/read", req.Params.URI)
	return res, done(ctx, false, s.gw.checkSize(res))
}
