//lint:file-ignore SA1019 relaying deprecated-but-current protocol features (sampling) is the point

package mcpproxy

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// A 2025-11-25 upstream asks for input with a request in the middle of a
// call (elicitation, sampling), and waits for the answer; a sessionless
// (2026-07-28) client can be asked only with an input_required result,
// which it answers by retrying the call. So on a task session a call to
// such an upstream (any governed call on the raw relay, a tool call on
// the SDK path) runs on its own, parked when the upstream asks, while its
// client comes and goes: the
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

// parkable declares, on a task session's client, the capabilities its
// calls may ask sessionless clients for: elicitation (form) and sampling
// as far as the task's first request declared them (an upstream of the
// session revision learns them once, at its handshake; each client's own
// are checked again when the upstream asks: parkedCall.ask), with
// handlers that hand what the upstream asks to the session's running
// parked call (the SDK path's, askRunning), and refuse it when there is
// none.
func (s *session) parkable(o *mcp.ClientOptions, u *upConn) {
	s.mu.Lock()
	askable := s.askable
	s.mu.Unlock()
	o.Capabilities = &mcp.ClientCapabilities{}
	if askable["elicitation"] {
		o.Capabilities.Elicitation = &mcp.ElicitationCapabilities{Form: &mcp.FormElicitationCapabilities{}}
		o.ElicitationHandler = func(ctx context.Context, r *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			var res mcp.ElicitResult
			if err := s.askRunning(ctx, u, "elicitation/create", r.Params, &res); err != nil {
				return nil, err
			}
			return &res, nil
		}
	}
	if askable["sampling"] {
		o.Capabilities.Sampling = &mcp.SamplingCapabilities{}
		o.CreateMessageHandler = func(ctx context.Context, r *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			var res mcp.CreateMessageResult
			if err := s.askRunning(ctx, u, "sampling/createMessage", r.Params, &res); err != nil {
				return nil, err
			}
			return &res, nil
		}
	}
}

var errNoOneToAsk = errors.New("a sessionless (MCP 2026-07-28) client can be asked for input only during one of its calls")

// parkedState is the call name domain under which a parked call's token
// is sealed (sealState): never mistaken for an upstream's state.
const parkedState = "parked "

// A parkedCall is a call that may park.
type parkedCall struct {
	token        string                     // names it in the client's requestState
	method, name string                     // the call, as the client named it
	args         json.RawMessage            // its canonical arguments
	caps         map[string]json.RawMessage // the client's capabilities, from its first attempt's _meta
	cancel       context.CancelFunc
	asks         chan *wire.Message   // the upstream's requests for input
	answer       chan *wire.Message   // the client's answer to the one asked
	done         chan exchangeOutcome // the exchange's end
	asked        *wire.Message        // the request the client was asked, if any
	taken        atomic.Bool          // a retry holds it
}

type exchangeOutcome struct {
	res   *wire.Message       // the raw relay's
	typed *mcp.CallToolResult // the SDK path's
	err   error
}

// errInputRequired is the outcome of an attempt answered with
// input_required: the call goes on, at the client's next retry.
var errInputRequired = errors.New("input required")

// relayParkable runs call m on its own, so that it can outlive this
// request if the upstream asks for input, and answers with what comes
// first (await).
func (s *session) relayParkable(ctx context.Context, out *downstream, u *upConn, m *wire.Message, params json.RawMessage, h http.Header) (bool, error) {
	if !s.gw.enter() {
		return false, rpcError(CodeUpstreamUnavailable, "the gateway is shutting down", errorData{RetryAfter: 5})
	}
	fields := wire.Members(m.Params)
	args, _ := canonicalArguments(fields["arguments"])
	pc, pctx := s.newParked(ctx, m.Method, callName(m.Method, fields), args, wire.Members(fields["_meta"])[mcp.MetaKeyClientCapabilities])
	go func() {
		defer s.gw.wg.Done()
		defer pc.cancel()
		up := &downstream{w: discard{}, sessionless: true, parked: pc, scrub: &s.scrub}
		res, err := s.exchange(pctx, u, m, params, h, up)
		pc.done <- exchangeOutcome{res: res, err: err}
		s.mu.Lock()
		delete(s.parked, pc.token)
		s.mu.Unlock()
	}()
	return s.await(ctx, out, u, m, pc)
}

// newParked starts the bookkeeping of a call that may park (method and
// name as the client named it, its canonical arguments, the client's
// capabilities from its request's _meta), and returns it with the
// context its upstream call runs under: the gateway's lifetime, not the
// request's, until pc.cancel.
func (s *session) newParked(ctx context.Context, method, name string, args, caps json.RawMessage) (*parkedCall, context.Context) {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	pctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(s.gw.ctx, cancel)
	return &parkedCall{
		token: fmt.Sprintf("%x", b), method: method, name: name, args: args, caps: wire.Members(caps),
		cancel: func() { stop(); cancel() },
		asks:   make(chan *wire.Message, 1), answer: make(chan *wire.Message, 1), done: make(chan exchangeOutcome, 1),
	}, pctx
}

// maxParked bounds the calls of one task session that wait for their
// client's retry: each holds an upstream call open.
const maxParked = 64

// park registers pc, whose upstream asked q, for the client's retry; or
// returns why it cannot wait (the session closed, or too many of its calls
// wait already), and the call ends.
func (s *session) park(pc *parkedCall, q *wire.Message) error {
	pc.asked = q
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("%w: the session ended", errUpstreamDown)
	case len(s.parked) >= maxParked:
		return rpcError(CodeRateLimited, fmt.Sprintf("%d calls of this task already wait for its answers; answer them first", maxParked), errorData{RetryAfter: 1})
	}
	if s.parked == nil {
		s.parked = map[string]*parkedCall{}
	}
	s.parked[pc.token] = pc
	pc.taken.Store(false)
	return nil
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
func (s *session) await(ctx context.Context, out *downstream, u *upConn, m *wire.Message, pc *parkedCall) (bool, error) {
	select {
	case q := <-pc.asks:
		if err := s.park(pc, q); err != nil {
			pc.cancel()
			<-pc.done
			return s.answerCall(out, u, m, nil, err)
		}
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
		return nil, s.refuseRetry(ctx, a, method, name, "the call this retry continues has ended, or is being continued by another",
			"the call this requestState continues has ended or is in progress; start it again")
	}
	if args, err := canonicalArguments(fields["arguments"]); err != nil || string(args) != string(pc.args) {
		pc.taken.Store(false)
		const why = "a retry must carry the arguments of the call it continues"
		return nil, s.refuseRetry(ctx, a, method, name, why, why)
	}
	return pc, nil
}

// resume continues parked call pc with the client's answer, in retry m
// (admitted), and answers with what comes next.
func (s *session) resume(ctx context.Context, out *downstream, u *upConn, m *wire.Message, pc *parkedCall, fields map[string]json.RawMessage) (bool, error) {
	answer, ok := wire.Members(fields["inputResponses"])[inputKey(pc.asked)]
	if !ok {
		// Not answered: ask again.
		pc.asks <- pc.asked
		return s.await(ctx, out, u, m, pc)
	}
	pc.answer <- &wire.Message{JSONRPC: "2.0", Result: answer}
	return s.await(ctx, out, u, m, pc)
}

// discard is the ResponseWriter of a parked call's exchange: what the
// upstream streams besides its requests for input (progress, logging)
// has no stream to go to while the call is parked.
type discard struct{}

func (discard) Header() http.Header         { return http.Header{} }
func (discard) Write(b []byte) (int, error) { return len(b), nil }
func (discard) WriteHeader(int)             {}

// The SDK path (a stdio upstream of the session revision) parks a call
// the same way: the call runs on its own; the upstream's request for
// input reaches the gateway's client handlers (parkable), which hand it
// to the running call most recently started on the session and wait for
// the client's answer.

// callParkable runs a tools/call of tool e (named so by the client, with
// _meta meta and canonical arguments args) on cs for a sessionless
// client, parking it if the upstream asks for input, and returns what
// comes first.
func (s *session) callParkable(ctx context.Context, e *toolEntry, cs *mcp.ClientSession, name string, meta mcp.Meta, args json.RawMessage) (*mcp.CallToolResult, error) {
	if !s.gw.enter() {
		return nil, rpcError(CodeUpstreamUnavailable, "the gateway is shutting down", errorData{RetryAfter: 5})
	}
	pc, pctx := s.newParked(ctx, "tools/call", name, args, wire.Members(mustJSON(meta))[mcp.MetaKeyClientCapabilities])
	send := any(args)
	if args == nil {
		send = map[string]any{}
	}
	s.mu.Lock()
	s.running = append(s.running, pc)
	s.mu.Unlock()
	go func() {
		defer s.gw.wg.Done()
		defer pc.cancel()
		var res *mcp.CallToolResult
		err := e.up.call(pctx, cs, func(ctx context.Context) (err error) {
			res, err = cs.CallTool(ctx, &mcp.CallToolParams{Meta: e.up.upstreamMeta(meta), Name: e.tool.Name, Arguments: send})
			return err
		})
		pc.done <- exchangeOutcome{typed: res, err: err}
		s.mu.Lock()
		delete(s.parked, pc.token)
		s.running = slices.DeleteFunc(s.running, func(x *parkedCall) bool { return x == pc })
		s.mu.Unlock()
	}()
	return s.awaitTyped(ctx, e, pc)
}

// awaitTyped is await for the SDK path.
func (s *session) awaitTyped(ctx context.Context, e *toolEntry, pc *parkedCall) (*mcp.CallToolResult, error) {
	select {
	case q := <-pc.asks:
		if err := s.park(pc, q); err != nil {
			pc.cancel()
			<-pc.done
			return nil, s.gw.errorFor(err, e.up.cfg.Name)
		}
		var res mcp.CallToolResult
		if err := json.Unmarshal(s.inputRequired(pc, q), &res); err != nil {
			pc.cancel()
			return nil, err
		}
		res.Content = []mcp.Content{}
		return &res, errInputRequired
	case o := <-pc.done:
		if o.err != nil {
			return nil, s.gw.errorFor(o.err, e.up.cfg.Name)
		}
		return o.typed, nil
	case <-ctx.Done():
		pc.cancel()
		<-pc.done
		return nil, ctx.Err()
	}
}

// resumeTyped is resume for the SDK path: answers, the client's
// inputResponses, continue parked call pc.
func (s *session) resumeTyped(ctx context.Context, e *toolEntry, pc *parkedCall, answers mcp.InputResponseMap) (*mcp.CallToolResult, error) {
	if a, ok := answers[inputKey(pc.asked)]; ok {
		b, err := json.Marshal(a)
		if err != nil {
			pc.cancel()
			return nil, err
		}
		pc.answer <- &wire.Message{JSONRPC: "2.0", Result: b}
	} else {
		pc.asks <- pc.asked // not answered: ask again
	}
	return s.awaitTyped(ctx, e, pc)
}

// askRunning hands an upstream's request for input, which reached the
// task session's client outside the raw relay, to the session's most
// recently started running parked call, and returns the client's answer
// decoded into result.
func (s *session) askRunning(ctx context.Context, u *upConn, method string, params any, result any) error {
	s.mu.Lock()
	var pc *parkedCall
	if n := len(s.running); n > 0 {
		pc = s.running[n-1]
	}
	s.mu.Unlock()
	if pc == nil {
		return errNoOneToAsk
	}
	q := &wire.Message{JSONRPC: "2.0", ID: s.gw.relayID(), Method: method, Params: mustJSON(params)}
	s.asking()
	a, err := pc.ask(ctx, q, u.timeout())
	s.answered()
	if err != nil {
		return err
	}
	if a.Error != nil {
		var je jsonrpc.Error
		_ = json.Unmarshal(a.Error, &je)
		return &je
	}
	return json.Unmarshal(a.Result, result)
}
