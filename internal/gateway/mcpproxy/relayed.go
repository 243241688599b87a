package mcpproxy

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// relayedRequest is an upstream's request passed to the downstream client
// under a relay id, waiting for the client's answer.
type relayedRequest struct {
	u    *upConn
	cs   *mcp.ClientSession
	orig json.RawMessage
}

// relayIDPrefix begins the string ids the gateway gives the messages it
// relays raw: its own requests to upstreams, and upstreams' requests it
// passes to downstream clients. The SDK numbers its requests with
// integers, so these ids cannot collide with the ids of the requests the
// gateway's SDK sessions send on the same sessions.
const relayIDPrefix = "mandate-"

// relayID returns a fresh relay id as a JSON string.
func (g *Gateway) relayID() json.RawMessage {
	n := g.relaySeq.Add(1)
	b := make([]byte, 0, len(relayIDPrefix)+22)
	b = append(b, '"')
	b = append(b, relayIDPrefix...)
	b = strconv.AppendUint(b, n, 10)
	return append(b, '"')
}

// relayRequest registers an upstream's request to the downstream client
// and returns the relay id it goes out under.
func (s *session) relayRequest(c *rawCall, orig json.RawMessage) json.RawMessage {
	id := s.gw.relayID()
	k, _ := wire.IDKey(id)
	s.mu.Lock()
	if s.relayed == nil {
		s.relayed = map[string]*relayedRequest{}
	}
	s.relayed[k] = &relayedRequest{u: c.u, cs: c.cs, orig: orig}
	s.mu.Unlock()
	s.asking()
	c.relayed = append(c.relayed, k)
	if ok, found := wire.IDKey(orig); found {
		if c.relayIDs == nil {
			c.relayIDs = map[string]json.RawMessage{}
		}
		c.relayIDs[ok] = id
	}
	return id
}

// cancelsRelayed rewrites an upstream's notifications/cancelled for a
// request it sent on c's stream to name the relay id the downstream client
// knows that request by. It reports false for any other cancellation:
// the id it names is no request of the client's (passed on as it is, it
// could cancel an unrelated one the client is serving).
func (s *session) cancelsRelayed(c *rawCall, m *wire.Message) bool {
	var p map[string]json.RawMessage
	if json.Unmarshal(m.Params, &p) != nil {
		return false
	}
	k, ok := wire.IDKey(p["requestId"])
	id := c.relayIDs[k]
	if !ok || id == nil {
		return false
	}
	p["requestId"] = id
	m.Params, _ = json.Marshal(p)
	// The client's answer, if it comes, has nowhere to go.
	rk, _ := wire.IDKey(id)
	s.mu.Lock()
	_, waiting := s.relayed[rk]
	delete(s.relayed, rk)
	s.mu.Unlock()
	if waiting {
		s.answered()
	}
	return true
}

// answerRelayed routes the downstream client's answer to a relayed
// upstream request back to that upstream. Answers to other requests are
// the SDK's.
func (s *session) answerRelayed(w http.ResponseWriter, r *http.Request, m *wire.Message) bool {
	k, ok := wire.IDKey(m.ID)
	if !ok || !strings.HasPrefix(k, "s"+relayIDPrefix) {
		return false
	}
	if m.Result != nil && m.Error != nil {
		writeMessage(w, http.StatusBadRequest, wire.ErrorMessage(nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidRequest, Message: "invalid response: it has both a result and an error"}))
		return true
	}
	m.Params = nil // a response has none; only what JSON-RPC defines goes upstream
	s.mu.Lock()
	p := s.relayed[k]
	delete(s.relayed, k)
	s.mu.Unlock()
	if p != nil {
		s.answered()
	}
	if p == nil {
		// The call it belonged to has ended; the answer has nowhere to go.
		w.WriteHeader(http.StatusAccepted)
		return true
	}
	m.ID = p.orig
	ctx, cancel := context.WithTimeout(r.Context(), p.u.timeout())
	defer cancel()
	if err := s.gw.sendUpstream(ctx, p.u, p.cs, m); err != nil {
		writeMessage(w, http.StatusBadGateway, wire.ErrorMessage(nil, rpcError(CodeUpstreamUnavailable,
			fmt.Sprintf("the answer could not be passed to upstream %q: %v", p.u.cfg.Name, err), errorData{Upstream: p.u.cfg.Name})))
		return true
	}
	w.WriteHeader(http.StatusAccepted)
	return true
}

// cancelRelayed cancels a call in flight on the raw relay; cancellations
// of other requests are the SDK's.
func (s *session) cancelRelayed(w http.ResponseWriter, m *wire.Message) bool {
	var p struct {
		RequestID json.RawMessage `json:"requestId"`
		Reason    string          `json:"reason"`
	}
	if json.Unmarshal(m.Params, &p) != nil {
		return false
	}
	k, ok := wire.IDKey(p.RequestID)
	if !ok {
		return false
	}
	s.mu.Lock()
	c := s.raw[k]
	s.mu.Unlock()
	if c == nil {
		return false
	}
	c.reason.Store(&p.Reason)
	c.cancelled.Store(true)
	c.cancel()
	w.WriteHeader(http.StatusAccepted)
	return true
}

// addRaw registers c under its downstream id; false if that id is in use.
// (On a task session, where each request has a stream of its own and
// clients' ids may repeat, under its relay id.)
func (s *session) addRaw(c *rawCall) bool {
	id := c.down
	if s.stateless {
		id = c.up
	}
	k, ok := wire.IDKey(id)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.raw == nil {
		s.raw = map[string]*rawCall{}
	}
	if s.raw[k] != nil {
		return false
	}
	s.raw[k], c.key = c, k
	return true
}

// removeRaw forgets c and the upstream requests it relayed, cancelling
// (on out, before c's response) those the downstream client has not
// answered: their answers would have nowhere to go. (An upstream may well
// cancel them itself, but after its response: the Go SDK does.)
func (s *session) removeRaw(c *rawCall, out *downstream) {
	var pending []string
	s.mu.Lock()
	delete(s.raw, c.key)
	for _, r := range c.relayed {
		if s.relayed[r] != nil {
			pending = append(pending, r)
		}
		delete(s.relayed, r)
	}
	s.mu.Unlock()
	for range pending {
		s.answered()
	}
	for _, r := range pending {
		params, _ := json.Marshal(struct {
			RequestID string `json:"requestId"`
			Reason    string `json:"reason"`
		}{strings.TrimPrefix(r, "s"), "the call it was made for has ended"})
		if out.send(&wire.Message{Method: "notifications/cancelled", Params: params}) != nil {
			return
		}
	}
}
