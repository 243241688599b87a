package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// Tool pinning is the toolpin package's: the gateway hands it each
// upstream's whole listing (toolpin.Pins.Observe) and serves only the
// tools it approves. What is pinned is what the gateway serves: the tool
// as the SDK decoded it, encoded again exactly as tools/list sends it
// downstream.

// pinTool is t as toolpin pins it: every member of its JSON encoding
// (toolpin.ParseTool). It fails for a tool whose encoding has a member
// toolpin does not pin (an SDK that learnt a new one); the gateway
// quarantines such a tool rather than serve what no pin covers.
func pinTool(t *mcp.Tool) (toolpin.Tool, error) {
	b, err := json.Marshal(t)
	if err != nil {
		return toolpin.Tool{}, fmt.Errorf("mcpproxy: encode tool %q: %w", t.Name, err)
	}
	pt, err := toolpin.ParseTool(b)
	if err != nil {
		return toolpin.Tool{}, fmt.Errorf("mcpproxy: tool %q: %w", t.Name, err)
	}
	return pt, nil
}

// collisions reports, once per name and set of upstreams, that upstreams
// offer tools under one exposed name (neither is served).
type collisions struct {
	audit audit.Recorder
	log   *slog.Logger
	mu    sync.Mutex
	seen  map[string]bool
}

func (c *collisions) report(ctx context.Context, name string, upstreams []string) {
	key := name + "\x00" + strings.Join(upstreams, ",")
	c.mu.Lock()
	if c.seen == nil {
		c.seen = map[string]bool{}
	}
	seen := c.seen[key]
	c.seen[key] = true
	c.mu.Unlock()
	if seen {
		return
	}
	c.log.Warn("tool name collision across upstreams", "tool", name, "upstreams", upstreams)
	_ = c.audit.Record(context.WithoutCancel(ctx), audit.Event{
		Type: audit.TypeToolCollision, Actor: "mandate", Resource: name, Point: "mcp",
		Reason:  fmt.Sprintf("upstreams %s offer a tool named %q", strings.Join(upstreams, ", "), name),
		Details: map[string]string{"tool": name, "upstreams": strings.Join(upstreams, ",")},
	})
}
