package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// A sessionless (MCP 2026-07-28) client is asked for a held call's
// approval in band: the call is not held on the gateway but answered at
// once with an input_required result whose input request is a URL-mode
// elicitation of the approval page, and a requestState sealed to the
// task, the call and the approval request. The client shows the person
// the page and retries; the retry is decided again like any call — the
// pipeline finds the approval once it is granted, or asks again.

// An InBandAsker (an ApprovalWaiter, optionally) opens or finds the
// approval request of a held call and says where the person decides it,
// for clients asked in band instead of held. ok false: ask nothing (the
// gateway then holds the call, Wait).
type InBandAsker interface {
	AskInBand(ctx context.Context, r Request, d Decision) (ib InBand, ok bool, err error)
}

// InBand is an in-band approval request: the page (URL) and a message for
// the person, and the approval request's id.
type InBand struct {
	URL, Message, ID string
}

// inBandApproval is govern's answer for a call asked in band: the caller
// answers it with the input_required result (heldResult).
type inBandApproval struct{ InBand }

func (e *inBandApproval) Error() string { return "approval required: asked in band at " + e.URL }

// heldState prefixes the sealed requestState of a call asked in band.
const heldState = "held:"

type inBandKey struct{}

// withInBand marks ctx as a call whose client can be asked in band.
func withInBand(ctx context.Context) context.Context {
	return context.WithValue(ctx, inBandKey{}, true)
}

func inBandFrom(ctx context.Context) bool { v, _ := ctx.Value(inBandKey{}).(bool); return v }

// takesURLElicitation reports whether client capabilities caps (a request's
// _meta) include URL-mode elicitation.
func takesURLElicitation(caps json.RawMessage) bool {
	_, ok := wire.Members(wire.Members(caps)["elicitation"])["url"]
	return ok
}

// metaTakesURLElicitation is takesURLElicitation for a request's decoded
// _meta (the SDK path), read without encoding it again.
func metaTakesURLElicitation(meta mcp.Meta) bool {
	caps, _ := meta[mcp.MetaKeyClientCapabilities].(map[string]any)
	elicitation, _ := caps["elicitation"].(map[string]any)
	_, ok := elicitation["url"]
	return ok
}

// heldResult is the input_required result of a call (method, name as the
// client named it) asked in band.
func (s *session) heldResult(method, name string, ib InBand) json.RawMessage {
	return mustJSON(struct {
		ResultType    string                     `json:"resultType"`
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		RequestState  string                     `json:"requestState"`
	}{
		ResultType: "input_required",
		InputRequests: map[string]json.RawMessage{"approval": mustJSON(struct {
			Method string            `json:"method"`
			Params *mcp.ElicitParams `json:"params"`
		}{"elicitation/create", &mcp.ElicitParams{Mode: "url", Message: ib.Message, URL: ib.URL, ElicitationID: ib.ID}})},
		RequestState: s.sealState(heldState+method, name, ib.ID),
	})
}

// openHeld reports whether state is the sealed requestState of a call of
// this task asked in band (method, name as the client names it): its retry
// carries the person's answer, which is not an approval; the call is
// decided again.
func (s *session) openHeld(method, name, state string) bool {
	if !s.stateless || state == "" {
		return false
	}
	id, ok := s.openState(heldState+method, name, state)
	return ok && id != ""
}

// heldToolResult is heldResult as the SDK path's tools/call answers it.
func (s *session) heldToolResult(name string, ib InBand) (*mcp.CallToolResult, error) {
	var res mcp.CallToolResult
	if err := json.Unmarshal(s.heldResult("tools/call", name, ib), &res); err != nil {
		return nil, fmt.Errorf("in-band approval: %w", err)
	}
	res.Content = []mcp.Content{}
	return &res, nil
}
