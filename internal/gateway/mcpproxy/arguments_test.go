package mcpproxy_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/mcpproxytest"
)

// obliging is the unit-test decider with an obligation on every allow.
type obliging struct {
	mcpproxytest.Decider
	kind string
}

func (d obliging) Decide(ctx context.Context, r mcpproxy.Request) (mcpproxy.Decision, error) {
	dec, err := d.Decider.Decide(ctx, r)
	if dec.Effect == mcpproxy.Allow {
		dec.Obligations = append(dec.Obligations, mcpproxy.Obligation{Kind: d.kind})
	}
	return dec, err
}

// The ledger keeps a call's arguments as their keyed digest; with the
// full_arguments obligation it keeps them redacted: a configured field's
// value is absent and its keyed hash is there instead.
func TestArgumentsInTheLedger(t *testing.T) {
	t.Parallel()
	const secret = "hunter2-correct-horse"
	args := []byte(`{"text":"` + secret + `"}`)
	redactor := audit.NewRedactor([]byte("installation key"), []string{"text"})
	wantDigest, err := redactor.Digest(args)
	if err != nil {
		t.Fatal(err)
	}
	plain := sha256.Sum256(args)
	for _, tc := range []struct {
		name string
		full bool
	}{{"digest only", false}, {"full_arguments", true}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := newGoUpstream(t)
			e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, func(c *mcpproxy.Config) {
				c.Redactor = redactor
				if tc.full {
					c.Decider = obliging{kind: mcpproxy.ObligationFullArguments}
				}
			})
			cs := connect(t, e, "/mcp/go", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:go/echo"))
			if _, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": secret}}); err != nil {
				t.Fatal(err)
			}
			evs := e.rec.waitEvents(audit.TypeMCPResult, 1)
			ev := evs[0]
			if ev.ArgsDigest != wantDigest || strings.Contains(ev.ArgsDigest, hex.EncodeToString(plain[:])) {
				t.Errorf("args_digest = %q, want the keyed %q", ev.ArgsDigest, wantDigest)
			}
			if _, ok := ev.Details["arguments_sha256"]; ok {
				t.Error("an unkeyed digest of the arguments is recorded")
			}
			switch {
			case !tc.full && ev.Args != nil:
				t.Errorf("args recorded without the obligation: %s", ev.Args)
			case tc.full && !bytes.Contains(ev.Args, []byte(`"text":"`+audit.HMACPrefix)):
				t.Errorf("args = %s, want text as its keyed hash", ev.Args)
			}
			for _, ev := range e.rec.all() {
				b, err := audit.Canonical(&ev)
				if err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(b, []byte(secret)) {
					t.Errorf("the redacted value is in the ledger: %s", b)
				}
			}
		})
	}
}
