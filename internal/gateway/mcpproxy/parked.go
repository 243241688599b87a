//lint:file-ignore SA1019 relaying deprecated-but-current protocol features (sampling) is the point

package mcpproxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// A 2025-11-25 upstream asks for input with a request in the middle of a
// call (elicitation, sampling, roots), and waits for the answer; a
// sessionless (2026-07-28) client can be asked only with an
// input_required result, which it answers by retrying the call. So on a
// task session a call to such an upstream over HTTP runs on its own,
// parked when the upstream asks, while its client comes and goes: the
// upstream's request reaches the client as an input_required result whose
// requestState names the parked call (sealed for the task, the call and
// its arguments); the client's retry, decided and recorded like any call,
// carries the answer, which goes upstream, and waits for what comes next:
// another request, or the result. A retry that is denied cancels the
// call; one nobody makes within the call timeout cancels it too.

// inputMethods are the upstream requests a parked call relays as input
// requests (MCP 2026-07-28's InputRequest kinds), with the client
// capability each needs.
var inputMethods = map[string]string{"elicitation/create": "elicitation", "sampling/createMessage": "sampling"}

// parkable declares, on a task session's client for an HTTP upstream of
// the session revision, the capabilities its calls may ask sessionless
// clients for (the upstream learns them once, at its handshake; each
// client's own are checked when the upstream asks: parkedCall.ask). The
// handlers answer what the upstream asks outside a raw-relayed call (on
// its own stream, say): no one can be asked there.
func parkable(o *mcp.ClientOptions) {
	o.Capabilities = &mcp.ClientCapabilities{
		Elicitation: &mcp.ElicitationCapabilities{Form: &mcp.FormElicitationCapabilities{}},
		Sampling:    &mcp.SamplingCapabilities{},
	}
	o.ElicitationHandler = func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
		return nil, errNoOneToAsk
	}
	o.CreateMessageHandler = func(context.Context, *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
		return nil, errNoOneToAsk
	}
}

var errNoOneToAsk = errors.New("a sessionless (MCP 2026-07-28) client can be asked for input only during one of its calls")

// parkedState is the call name domain under which a parked call's token
// is sealed (sealState): never mistaken for an upstream's state.
const parkedState = "parked "

// A parkedCall is a call that may park.
type parkedCall struct {
	token  string                     // names it in the client's requestState
	method string                     // the call, as the client named it
	name   string                     //
	args   json.RawMessage            // its canonical arguments
	caps   map[string]json.RawMessage // the client's capabilities, from the first attempt's _meta
	cancel context.CancelFunc
	asks   chan *wire.Message   // the upstream's requests for input
	answer chan *wire.Message   // the client's answer to the one asked
	done   chan exchangeOutcome // the exchange's end
	asked  *wire.Message        // the request the client was asked, if any
	taken  atomic.Bool          // a retry holds it
}

type exchangeOutcome struct {
	res *wire.Message
	err error
}

// errInputRequired is the outcome of an attempt answered with
// input_required: the call goes on, at the client's next retry.
var errInputRequired = errors.New("input required")

// relayParkable runs call m on its own, so that it can outlive this
// request if the upstream asks for input, and answers with what comes
// first (await).
func (s *session) relayParkable(ctx context.Context, w http.ResponseWriter, u *upConn, m *wire.Message, params json.RawMessage, h http.Header) (bool, error) {
	if !s.gw.enter() {
		return false, rpcError(CodeUpstreamUnavailable, "the gateway is shutting down", errorData{RetryAfter: 5})
	}
	fields := wire.Members(m.Params)
	args, _ := canonicalArguments(fields["arguments"])
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(s.gw.ctx, cancel)
	pc := &parkedCall{
		token: fmt.Sprintf("%x", b), method: m.Method, name: callName(m.Method, fields), args: args, cancel: cancel,
		caps: wire.Members(wire.Members(fields["_meta"])[mcp.MetaKeyClientCapabilities]),
		asks: make(chan *wire.Message, 1), answer: make(chan *wire.Message, 1), done: make(chan exchangeOutcome, 1),
	}
	go func() {
		defer s.gw.wg.Done()
		defer stop()
		defer cancel()
		out := &downstream{w: discard{}, sessionless: true, parked: pc}
		res, err := s.exchange(pctx, u, m, params, h, out)
		pc.done <- exchangeOutcome{res, err}
		s.mu.Lock()
		delete(s.parked, pc.token)
		s.mu.Unlock()
	}()
	return s.await(ctx, w, u, m, pc)
}

// ask hands the upstream's request q to the client and waits, at most
// timeout, for its answer; an error if the client did not declare the
// capability q needs.
func (pc *parkedCall) ask(ctx context.Context, q *wire.Message, timeout time.Duration) (*wire.Message, error) {
	if _, ok := pc.caps[inputMethods[q.Method]]; !ok {
		return wire.ErrorMessage(q.ID, &jsonrpc.Error{Code: jsonrpc.CodeMethodNotFound,
			Message: fmt.Sprintf("%s: the client did not declare the %s capability", q.Method, inputMethods[q.Method])}), nil
	}
	pc.asks <- q
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-pc.answer:
		return a, nil
	case <-t.C:
		return nil, errors.New("the client did not answer the upstream's request for input in time")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// await answers attempt m of call pc with what comes first: the
// upstream's next request for input (an input_required result; the call
// stays parked for the retry) or the call's end.
func (s *session) await(ctx context.Context, w http.ResponseWriter, u *upConn, m *wire.Message, pc *parkedCall) (bool, error) {
	out := s.downstream(w)
	select {
	case q := <-pc.asks:
		pc.asked = q
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			pc.cancel()
			o := <-pc.done
			return s.answerCall(out, u, m, o.res, o.err)
		}
		if s.parked == nil {
			s.parked = map[string]*parkedCall{}
		}
		s.parked[pc.token] = pc
		s.mu.Unlock()
		pc.taken.Store(false)
		out.final(&wire.Message{ID: m.ID, Result: s.inputRequired(pc, q)})
		return false, errInputRequired
	case o := <-pc.done:
		return s.answerCall(out, u, m, o.res, o.err)
	case <-ctx.Done():
		// The client went away before anything was asked of it.
		pc.cancel()
		o := <-pc.done
		if o.err == nil {
			o.err = context.Canceled
		}
		return false, o.err
	}
}

// inputRequired is the result asking the client for q on behalf of pc.
func (s *session) inputRequired(pc *parkedCall, q *wire.Message) json.RawMessage {
	b, _ := json.Marshal(struct {
		ResultType    string                     `json:"resultType"`
		InputRequests map[string]json.RawMessage `json:"inputRequests"`
		RequestState  string                     `json:"requestState"`
	}{
		ResultType: "input_required",
		InputRequests: map[string]json.RawMessage{inputKey(q): mustJSON(struct {
			Method string          `json:"method"`
			Params json.RawMessage `json:"params,omitempty"`
		}{q.Method, q.Params})},
		RequestState: s.sealState(parkedState+pc.method, pc.name, pc.token),
	})
	return b
}

// inputKey names the upstream's request q among the input requests.
func inputKey(q *wire.Message) string {
	k, _ := wire.IDKey(q.ID)
	return "upstream-" + k
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// takeParked returns the parked call a retry's requestState names, taken
// for this retry, or nil if it names none (it may be an upstream's). A
// state that names a parked call of another call, or arguments that are
// not the call's, is refused (and recorded).
func (s *session) takeParked(ctx context.Context, a *authed, method string, fields map[string]json.RawMessage) (*parkedCall, error) {
	var sealed string
	if json.Unmarshal(fields["requestState"], &sealed) != nil {
		return nil, nil
	}
	name := callName(method, fields)
	token, ok := s.openState(parkedState+method, name, sealed)
	if !ok || token == "" {
		return nil, nil
	}
	s.mu.Lock()
	pc := s.parked[token]
	s.mu.Unlock()
	if pc == nil || !pc.taken.CompareAndSwap(false, true) {
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: actionOf[method], Name: name, Resource: name}, "the call this retry continues has ended, or is being continued by another")
		return nil, invalidParams("%s: the call this requestState continues has ended or is in progress; start it again", method)
	}
	if args, err := canonicalArguments(fields["arguments"]); err != nil || string(args) != string(pc.args) {
		pc.taken.Store(false)
		s.gw.refused(ctx, s, Request{Principal: a.p, Action: actionOf[method], Name: name, Resource: name}, "a retry must carry the arguments of the call it continues")
		return nil, invalidParams("%s: a retry must carry the arguments of the call it continues", method)
	}
	return pc, nil
}

// resume continues parked call pc with the client's answer, in retry m
// (admitted), and answers with what comes next.
func (s *session) resume(ctx context.Context, w http.ResponseWriter, u *upConn, m *wire.Message, pc *parkedCall, fields map[string]json.RawMessage) (bool, error) {
	answer, ok := wire.Members(fields["inputResponses"])[inputKey(pc.asked)]
	if !ok {
		// Not answered: ask again.
		pc.asks <- pc.asked
		return s.await(ctx, w, u, m, pc)
	}
	pc.answer <- &wire.Message{JSONRPC: "2.0", Result: answer}
	return s.await(ctx, w, u, m, pc)
}

// discard is the ResponseWriter of a parked call's exchange: what the
// upstream streams besides its requests for input (progress, logging)
// has no stream to go to while the call is parked.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}
