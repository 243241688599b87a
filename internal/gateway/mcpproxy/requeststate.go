package mcpproxy

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"strings"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// A sessionless upstream that needs input answers a call with
// input_required and an opaque requestState, which the client echoes
// when it retries (MCP 2026-07-28, multi-round-trip requests). Behind the
// gateway, every task's requests reach an HTTP upstream as the gateway's:
// the upstream cannot tell one task's state from another's. So the
// gateway binds each state it hands out to the task, the endpoint and the
// call it was given for (an HMAC under a key of its own), and a retry
// must bring back a state bound so: another task's, another call's, or
// one the client made up is refused before the retry is decided, and is
// recorded. The key lives as long as the gateway: after a restart a
// client's pending retry is refused, and it starts the call again.

// statePrefix marks a requestState the gateway sealed.
const statePrefix = "mandate."

// stateMAC is the binding of state to the session's task and endpoint
// and to the call (method and name, as the client names them).
func (s *session) stateMAC(method, name, state string) string {
	m := hmac.New(sha256.New, s.gw.stateKey[:])
	for _, part := range []string{s.owner, s.endpoint, method, name, state} {
		m.Write([]byte(part))
		m.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:18])
}

// sealState is the requestState the client gets for an upstream's state.
func (s *session) sealState(method, name, state string) string {
	if state == "" {
		return ""
	}
	return statePrefix + s.stateMAC(method, name, state) + "." + state
}

// openState returns the upstream's state that sealed carries, and
// whether sealed was sealed for this session's task and endpoint and
// this call.
func (s *session) openState(method, name, sealed string) (string, bool) {
	if sealed == "" {
		return "", true
	}
	rest, ok := strings.CutPrefix(sealed, statePrefix)
	if !ok {
		return "", false
	}
	mac, state, ok := strings.Cut(rest, ".")
	if !ok || !hmac.Equal([]byte(mac), []byte(s.stateMAC(method, name, state))) {
		return "", false
	}
	return state, true
}

// openRetry and sealRetry are openState and sealState on a task session,
// and pass states as they are on a 2025-11-25 session (whose client never
// sees an upstream's: the gateway's upstream client answers input
// requests itself).
func (s *session) openRetry(state, method, name string) (string, bool) {
	if !s.stateless {
		return state, true
	}
	return s.openState(method, name, state)
}

func (s *session) sealRetry(state, method, name string) string {
	if !s.stateless {
		return state
	}
	return s.sealState(method, name, state)
}

// openStateMember replaces a raw-relayed retry's requestState member (if
// any) by the upstream's state, or returns the error to answer with if it
// is not one the gateway sealed for this task and call (a refusal,
// recorded).
func (s *session) openStateMember(ctx context.Context, a *authed, method string, fields map[string]json.RawMessage) error {
	raw, ok := fields["requestState"]
	if !ok {
		return nil
	}
	name := callName(method, fields)
	var sealed string
	if json.Unmarshal(raw, &sealed) != nil {
		return s.badState(ctx, a, method, name)
	}
	state, ok := s.openState(method, name, sealed)
	if !ok {
		return s.badState(ctx, a, method, name)
	}
	fields["requestState"] = wire.String(state)
	return nil
}

// callName is what a governed call's params name: the tool or prompt
// (as the client names it), or the resource's URI.
func callName(method string, fields map[string]json.RawMessage) string {
	key := "name"
	if method == "resources/read" {
		key = "uri"
	}
	name, _ := wire.StringMember(fields, key)
	return name
}

// badState records a retry whose requestState the gateway did not seal
// for it, and returns the error to answer with.
func (s *session) badState(ctx context.Context, a *authed, method, name string) error {
	return s.refuseRetry(ctx, a, method, name, "requestState was not issued for this task and call",
		"requestState was not issued by this gateway for this task and call")
}

// refuseRetry records a retry of call method/name refused before its
// decision, for reason, and returns the error (invalid params) telling
// the client why.
func (s *session) refuseRetry(ctx context.Context, a *authed, method, name, reason, msg string) error {
	s.gw.refused(ctx, s, Request{Principal: a.p, Action: actionOf[method], Name: name, Resource: name}, reason)
	return invalidParams("%s: %s", method, msg)
}

// actionOf names each governed method's action.
var actionOf = map[string]string{"tools/call": ActionToolCall, "resources/read": ActionResourceRead, "prompts/get": ActionPromptGet}

// sealStateMember seals the requestState of a raw-relayed result (if
// any) for the call it answers, whose params are params.
func (s *session) sealStateMember(method string, params, result json.RawMessage) json.RawMessage {
	if !bytes.Contains(result, []byte(`"requestState"`)) {
		return result
	}
	fields := wire.Members(result)
	var state string
	if fields == nil || json.Unmarshal(fields["requestState"], &state) != nil {
		return result
	}
	fields["requestState"] = wire.String(s.sealState(method, callName(method, wire.Members(params)), state))
	b, err := json.Marshal(fields)
	if err != nil {
		return result
	}
	return b
}
