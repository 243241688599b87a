package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/mandatehq/mandate/internal/fault"
)

// The gateway's JSON-RPC errors: their codes, the data they carry, and
// how an upstream's failures map to them.

// JSON-RPC error codes of the gateway, in the implementation-defined
// server error range. Each error's data member is an object with a
// "reasons" array (readable explanations) and, where a retry can succeed,
// "retry_after" in seconds.
const (
	// CodeDenied: the decision pipeline denied the call.
	CodeDenied = -32010
	// CodeApprovalRequired: the call needs a human approval that was not
	// given (or no approver is configured).
	CodeApprovalRequired = -32011
	// CodeRateLimited: a per-agent or per-tool rate limit; retry later.
	CodeRateLimited = -32012
	// CodeBudgetExceeded: the task's call budget is spent.
	CodeBudgetExceeded = -32013
	// CodeQuarantined: the tool's definition changed since it was
	// approved; an admin must approve it (mandate tool approve).
	CodeQuarantined = -32014
	// CodeUpstreamUnavailable: the upstream could not be reached or
	// crashed; retry later.
	CodeUpstreamUnavailable = -32015
	// CodeUpstreamTimeout: the upstream did not answer in time.
	CodeUpstreamTimeout = -32016
	// CodeTooLarge: the upstream's result exceeds the size limit.
	CodeTooLarge = -32017
	// CodeUnauthenticated: the request carried no usable credential
	// (only when a session's credential is missing at call time).
	CodeUnauthenticated = -32018
	// CodeUnavailable: the gateway's own store or ledger is unavailable
	// (tools cannot be pinned or checked); retry after retry_after. On
	// the gateway's own answers (see front) the HTTP status is 503 with
	// Retry-After.
	CodeUnavailable = -32019
)

// unavailable logs why what could not be done and returns the
// CodeUnavailable error the caller is answered with, which names no
// cause.
func (g *Gateway) unavailable(what string, err error) *jsonrpc.Error {
	g.log.Error(what+" unavailable", "err", err)
	after, _ := strconv.Atoi(fault.RetryAfter)
	return rpcError(CodeUnavailable, what+" is temporarily unavailable; retry later", errorData{RetryAfter: after})
}

// errorData is the data member of the gateway's JSON-RPC errors.
type errorData struct {
	Reasons    []string `json:"reasons,omitempty"`
	RetryAfter int      `json:"retry_after,omitempty"`
	Upstream   string   `json:"upstream,omitempty"`
	Digest     string   `json:"digest,omitempty"`
}

func rpcError(code int64, msg string, d errorData) *jsonrpc.Error {
	return &jsonrpc.Error{Code: code, Message: msg, Data: jsonData(d)}
}

func retrySeconds(d time.Duration) int { return max(1, int((d+time.Second-1)/time.Second)) }

// errorFor maps an upstream-side error to the JSON-RPC error sent
// downstream: upstream JSON-RPC errors pass through unchanged.
func (g *Gateway) errorFor(err error, upstream string) error {
	if err == nil {
		return nil
	}
	var we *jsonrpc.Error
	if errors.As(err, &we) {
		return we
	}
	var re *retryError
	if errors.As(err, &re) {
		return rpcError(CodeUpstreamUnavailable, re.Error(), errorData{RetryAfter: retrySeconds(re.after), Upstream: upstream})
	}
	var te *timeoutError
	if errors.As(err, &te) {
		return rpcError(CodeUpstreamTimeout, te.Error(), errorData{Upstream: te.upstream})
	}
	if errors.Is(err, context.Canceled) {
		return err
	}
	if errors.Is(err, errUpstreamDown) {
		return rpcError(CodeUpstreamUnavailable, err.Error(), errorData{RetryAfter: 1, Upstream: upstream})
	}
	g.log.Error("mcp relay failed", "upstream", upstream, "err", err)
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "internal error"}
}

func invalidParams(format string, args ...any) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: fmt.Sprintf(format, args...)}
}
