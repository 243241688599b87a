package mcpproxy

import (
	"context"
	"iter"
	"maps"
	"slices"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// What the list methods share: how a client may cache the lists, listing
// an upstream across its pages, and a deterministic order.

// perTask is how a client may cache the lists the gateway serves (MCP
// 2026-07-28, "Caching"): each is the view of one task's session, whose
// upstream it came from and whose decisions shaped it, so only the
// requesting client may keep it, and it is stale at once (pins and
// policies change without notice).
var perTask = mcp.Cacheable{TTLMs: 0, CacheScope: "private"}

// listUpstream collects every item (all pages) that list yields from u,
// within one upstream call. On a per-upstream endpoint a failing upstream
// is the caller's error; on the aggregated endpoint it is skipped
// (ok=false, err=nil) so the others still answer.
func listUpstream[T any](ctx context.Context, s *session, u *upConn, list func(context.Context, *mcp.ClientSession) iter.Seq2[T, error]) (items []T, ok bool, err error) {
	cs, err := u.get(ctx)
	if err == nil {
		err = u.call(ctx, cs, func(ctx context.Context) error {
			items = items[:0]
			for item, err := range list(ctx, cs) {
				if err != nil {
					return err
				}
				items = append(items, item)
			}
			return nil
		})
	}
	switch {
	case err == nil:
		return items, true, nil
	case s.upstream != "":
		return nil, false, s.gw.errorFor(err, u.cfg.Name)
	}
	return nil, false, nil
}

// sortedKeys is used for deterministic iteration in tests and listings.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
