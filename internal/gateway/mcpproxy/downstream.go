package mcpproxy

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy/internal/wire"
)

// downstream writes what a relayed call sends back: the response alone as
// application/json, or, once anything has come before it, every message
// as a text/event-stream. To a sessionless client, a protocol error alone
// is answered with its HTTP status (MCP 2026-07-28: 404 for an unknown
// method, 400 for invalid params, an unsupported revision or a missing
// client capability), as the SDK's stateless handler answers.
type downstream struct {
	w           http.ResponseWriter
	sessionless bool
	parked      *parkedCall // set for a call that may park (parked.go)
	scrub       *scrubber   // the session's delivered secrets (secrets.go)
	streaming   bool
	wrote       bool
}

func (s *session) downstream(w http.ResponseWriter) *downstream {
	return &downstream{w: w, sessionless: s.stateless, scrub: &s.scrub}
}

// encode returns m as it goes to the client: without the session's
// secret values. A message that cannot be cleaned is not relayed: a
// response becomes an error saying why, anything else is dropped (nil).
func (d *downstream) encode(m *wire.Message) []byte {
	b := m.Encode()
	if !d.scrub.active() {
		return b
	}
	if clean, ok := d.scrub.json(b); ok {
		return clean
	}
	if !m.IsResponse() {
		return nil
	}
	return wire.ErrorMessage(m.ID, &jsonrpc.Error{Code: jsonrpc.CodeInternalError,
		Message: "the upstream's answer held a secret delivered to it, which the gateway could not remove: withheld"}).Encode()
}

// errorStatus is the HTTP status of a sessionless client's response m:
// 200 unless it is a protocol error.
func (d *downstream) errorStatus(m *wire.Message) int {
	if !d.sessionless || m.Error == nil {
		return http.StatusOK
	}
	var e struct {
		Code int64 `json:"code"`
	}
	_ = json.Unmarshal(m.Error, &e)
	switch e.Code {
	case jsonrpc.CodeMethodNotFound:
		return http.StatusNotFound
	case jsonrpc.CodeInvalidParams, mcp.CodeUnsupportedProtocolVersion, mcp.CodeMissingRequiredClientCapabilities:
		return http.StatusBadRequest
	}
	return http.StatusOK
}

func (d *downstream) send(m *wire.Message) error {
	if !d.streaming {
		h := d.w.Header()
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
		d.w.WriteHeader(http.StatusOK)
		d.streaming, d.wrote = true, true
	}
	b := d.encode(m)
	if b == nil {
		return nil
	}
	buf := make([]byte, 0, len(b)+24)
	buf = append(buf, "event: message\ndata: "...)
	buf = append(buf, b...)
	buf = append(buf, "\n\n"...)
	if _, err := d.w.Write(buf); err != nil {
		return err
	}
	return http.NewResponseController(d.w).Flush()
}

// final writes the response that ends the call.
func (d *downstream) final(m *wire.Message) {
	if d.streaming {
		_ = d.send(m)
		return
	}
	d.wrote = true
	writeEncoded(d.w, d.errorStatus(m), d.encode(m))
}

// fail ends the call with err (nothing is written for a client that is
// gone). CodeUnavailable, when nothing has been sent yet, is an HTTP 503
// with Retry-After: the gateway itself cannot serve the request now.
func (d *downstream) fail(id json.RawMessage, err error) {
	var je *jsonrpc.Error
	if !errors.As(err, &je) {
		if errors.Is(err, context.Canceled) {
			return
		}
		je = &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
	}
	if je.Code == CodeUnavailable && !d.streaming {
		d.wrote = true
		d.w.Header().Set("Retry-After", fault.RetryAfter)
		writeMessage(d.w, http.StatusServiceUnavailable, wire.ErrorMessage(id, je))
		return
	}
	d.final(wire.ErrorMessage(id, je))
}

// end closes a call that gets no response (the client cancelled it).
func (d *downstream) end() {
	if !d.wrote {
		// A request is answered with JSON or a stream; a cancelled one
		// gets a stream that ends without its response.
		d.w.Header().Set("Content-Type", "text/event-stream")
		d.w.WriteHeader(http.StatusOK)
	}
}
