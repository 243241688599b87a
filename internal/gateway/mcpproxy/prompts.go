package mcpproxy

import (
	"context"
	"encoding/json"
	"iter"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
)

// Prompts: listing them, admitting prompts/get (both paths) and relaying
// it on the SDK path.

type promptEntry struct {
	up   *upConn
	name string
}

func (s *session) listPrompts(ctx context.Context, req *mcp.ListPromptsRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	if req.Params != nil && req.Params.Cursor != "" {
		return nil, invalidParams("invalid cursor")
	}
	res := &mcp.ListPromptsResult{Cacheable: perTask, Prompts: []*mcp.Prompt{}}
	idx := map[string]*promptEntry{}
	for _, u := range s.ups {
		ps, ok, err := listUpstream(ctx, s, u, func(ctx context.Context, cs *mcp.ClientSession) iter.Seq2[*mcp.Prompt, error] {
			return cs.Prompts(ctx, nil)
		})
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		for _, p := range ps {
			d, err := s.gw.cfg.Decider.Decide(ctx, Request{
				Credential: a.cred, Principal: a.p, Action: ActionPromptGet, Upstream: u.cfg.Name,
				Name: p.Name, Resource: u.cfg.Name + "/" + p.Name, Preview: true,
			})
			if err != nil || d.Effect == Deny {
				continue
			}
			name := s.exposed(u, p.Name)
			idx[name] = &promptEntry{up: u, name: p.Name}
			if name != p.Name {
				c := *p
				c.Name = name
				p = &c
			}
			res.Prompts = append(res.Prompts, p)
		}
	}
	s.mu.Lock()
	s.prompts = idx
	s.mu.Unlock()
	return res, nil
}

// admitPrompt admits a prompts/get of the prompt exposed as exposed: it
// returns the upstream, the prompt's name there and the outcome recorder.
func (s *session) admitPrompt(ctx context.Context, a *authed, exposed string, arguments map[string]string) (*upConn, string, outcomeFunc, error) {
	u, name, ok := s.split(exposed)
	if !ok {
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: ActionPromptGet, Name: exposed, Resource: exposed}, "unknown prompt")
		return nil, "", nil, invalidParams("unknown prompt %q", exposed)
	}
	var args json.RawMessage
	if arguments != nil {
		raw, _ := json.Marshal(arguments)
		args, _ = audit.CanonicalJSON(raw)
	}
	done, err := s.gw.govern(ctx, s, Request{
		Credential: a.cred, Principal: a.p, Action: ActionPromptGet, Upstream: u.cfg.Name,
		Name: name, Resource: u.cfg.Name + "/" + name, Arguments: args,
	})
	if err != nil {
		return nil, "", nil, err
	}
	return u, name, done, nil
}

// getPrompt is the SDK path of prompts/get (stdio upstreams).
func (s *session) getPrompt(ctx context.Context, req *mcp.GetPromptRequest) (mcp.Result, error) {
	a := principalFrom(req.Extra)
	if a == nil {
		return nil, rpcError(CodeUnauthenticated, "no credential", errorData{})
	}
	state, ok := s.openRetry(req.Params.RequestState, "prompts/get", req.Params.Name)
	if !ok {
		return nil, s.badState(ctx, a, "prompts/get", req.Params.Name)
	}
	admitCtx := ctx
	if notify := sdkProgress(ctx, req.Session, req.Params.Meta); notify != nil {
		admitCtx = withProgress(ctx, notify) // for a prompt held for approval
	}
	u, name, done, err := s.admitPrompt(admitCtx, a, req.Params.Name, req.Params.Arguments)
	if err != nil {
		return nil, err
	}
	defer s.track(ctx, req.Session, progressToken(req.Params.Meta))()
	cs, err := u.get(ctx)
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	p := upstreamParams(u, req.Params)
	p.Name, p.RequestState = name, state
	var res *mcp.GetPromptResult
	err = u.call(ctx, cs, func(ctx context.Context) (err error) {
		res, err = cs.GetPrompt(ctx, p)
		return err
	})
	if err != nil {
		return nil, done(ctx, false, s.gw.errorFor(err, u.cfg.Name))
	}
	res.RequestState = s.sealRetry(res.RequestState, "prompts/get", req.Params.Name)
	return res, done(ctx, false, s.gw.checkSize(res))
}
