package mcpproxy_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/token"
)

// rawPost POSTs one JSON-RPC message to path through rt (on session, none
// if "") and returns the response with its body read.
func rawPost(t *testing.T, e *env, rt http.RoundTripper, path, session, body string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if session != "" {
		req.Header.Set("Mcp-Session-Id", session)
		req.Header.Set("Mcp-Protocol-Version", "2025-11-25")
	}
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// rawSession initializes a session on path through rt and returns its id.
func rawSession(t *testing.T, e *env, rt http.RoundTripper, path string) string {
	t.Helper()
	resp, body := rawPost(t, e, rt, path, "", `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`)
	session := resp.Header.Get("Mcp-Session-Id")
	if resp.StatusCode != 200 || session == "" {
		t.Fatalf("initialize = %d %s", resp.StatusCode, body)
	}
	rawPost(t, e, rt, path, session, `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	return session
}

// loseStore deletes the authority's database under the running gateway,
// and has the store notice (as its watcher would).
func loseStore(t *testing.T, e *env) {
	t.Helper()
	path := e.auth.Path
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if err := e.auth.Backend.Ping(t.Context()); !errors.Is(err, fault.ErrUnavailable) {
		t.Fatalf("Ping() after deleting the database = %v, want fault.ErrUnavailable", err)
	}
}

// want503 checks an answer of the gateway that could not do its part:
// 503 with Retry-After, and a body that names no internal cause.
func want503(t *testing.T, what string, resp *http.Response, body string, causes ...string) {
	t.Helper()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != fault.RetryAfter {
		t.Errorf("%s: status %d, Retry-After %q; want 503 and %s", what, resp.StatusCode, resp.Header.Get("Retry-After"), fault.RetryAfter)
	}
	if len(resp.Header.Values("WWW-Authenticate")) != 0 {
		t.Errorf("%s: a challenge %q on a 503: the credential was not refused", what, resp.Header.Values("WWW-Authenticate"))
	}
	for _, c := range causes {
		if strings.Contains(body, c) {
			t.Errorf("%s: body %q tells the internal cause %q", what, body, c)
		}
	}
}

// TestPinningUnavailable: when the pins cannot be read, written or
// recorded (the ledger refuses, the store is lost) no tool is served
// unchecked: tools/list and a first tools/call answer HTTP 503 with
// Retry-After and CodeUnavailable; once the ledger is back, the same
// session lists and calls.
func TestPinningUnavailable(t *testing.T) {
	const path = "/mcp/go"
	t.Run("ledger", func(t *testing.T) {
		up := newPinUpstream(t, echoTool())
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
		rt := bearerClient(taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:go/*")).Transport
		session := rawSession(t, e, rt, path)
		e.rec.mu.Lock()
		e.rec.fail = true
		e.rec.mu.Unlock()
		for _, body := range []string{
			`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`,
			`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`,
		} {
			resp, got := rawPost(t, e, rt, path, session, body)
			want503(t, body, resp, got, audit.ErrUnavailable.Error())
			if !strings.Contains(got, `"code":-32019`) || !strings.Contains(got, `"retry_after":`+fault.RetryAfter) {
				t.Errorf("%s: body %s, want CodeUnavailable with retry_after", body, got)
			}
		}
		if up.calls.Load() != 0 {
			t.Errorf("the upstream ran %d calls of an unpinned tool", up.calls.Load())
		}
		e.rec.mu.Lock()
		e.rec.fail = false
		e.rec.mu.Unlock()
		if resp, got := rawPost(t, e, rt, path, session, `{"jsonrpc":"2.0","id":4,"method":"tools/list"}`); resp.StatusCode != 200 || !strings.Contains(got, `"name":"echo"`) {
			t.Errorf("tools/list with the ledger back = %d %s", resp.StatusCode, got)
		}
		if resp, got := rawPost(t, e, rt, path, session, `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"echo","arguments":{"text":"x"}}}`); resp.StatusCode != 200 || !strings.Contains(got, "ran echo") {
			t.Errorf("tools/call with the ledger back = %d %s", resp.StatusCode, got)
		}
	})
	t.Run("store", func(t *testing.T) {
		up := newPinUpstream(t, echoTool())
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
		rt := bearerClient(taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:go/*")).Transport
		session := rawSession(t, e, rt, path)
		loseStore(t, e)
		resp, got := rawPost(t, e, rt, path, session, `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
		want503(t, "tools/list", resp, got, "mandate.db", "lost")
		if !strings.Contains(got, `"code":-32019`) {
			t.Errorf("tools/list: body %s, want CodeUnavailable", got)
		}
	})
	t.Run("SDK client", func(t *testing.T) {
		// A Go SDK client gets an error it may retry, and its session
		// survives it: on a session (2025-11-25), an HTTP 503.
		up := newPinUpstream(t, echoTool())
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
		cs := connectWith(t, e, "/mcp/go", taskToken(t, e, "agent", identity.TierAutonomous, "tool.call:go/*"), nil)
		e.rec.mu.Lock()
		e.rec.fail = true
		e.rec.mu.Unlock()
		if _, err := cs.ListTools(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "Service Unavailable") {
			t.Errorf("ListTools() with the ledger down = %v, want Service Unavailable", err)
		}
		e.rec.mu.Lock()
		e.rec.fail = false
		e.rec.mu.Unlock()
		if names := toolNames(t, cs); len(names) != 1 || names[0] != "echo" {
			t.Errorf("tools/list with the ledger back = %v", names)
		}
	})
	t.Run("sessionless SDK client", func(t *testing.T) {
		// 2026-07-28: the JSON-RPC error CodeUnavailable, which says
		// when to retry.
		up := newPinUpstream(t, echoTool())
		e, cs := pinEnv(t, up)
		e.rec.mu.Lock()
		e.rec.fail = true
		e.rec.mu.Unlock()
		_, err := cs.ListTools(t.Context(), nil)
		if code, msg := rpcCode(err); code != mcpproxy.CodeUnavailable || !strings.Contains(msg, "retry_after") {
			t.Errorf("ListTools() with the ledger down = %v, want CodeUnavailable", err)
		}
		e.rec.mu.Lock()
		e.rec.fail = false
		e.rec.mu.Unlock()
		if names := toolNames(t, cs); len(names) != 1 || names[0] != "echo" {
			t.Errorf("tools/list with the ledger back = %v", names)
		}
	})
}

// authFunc is an Authenticator from a function.
type authFunc func(context.Context, mcpproxy.Credential) (*mcpproxy.Principal, error)

var _ mcpproxy.Authenticator = authFunc(nil)

func (f authFunc) Authenticate(ctx context.Context, c mcpproxy.Credential) (*mcpproxy.Principal, error) {
	return f(ctx, c)
}

// TestAuthAnswers: a refused credential is a 401 with the challenges and
// a fixed text, never the reason; a credential that cannot be checked or
// whose refusal cannot be recorded (the store is lost, the ledger
// refuses) is a 503 with Retry-After, never a 401 (which would send the
// client for a new token) and never the cause.
func TestAuthAnswers(t *testing.T) {
	const path = "/mcp/go"
	const initialize = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`
	up := newPinUpstream(t, echoTool())

	t.Run("refused", func(t *testing.T) {
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
		ag, err := e.auth.Register(t.Context(), "revoked", identity.TierAutonomous)
		if err != nil {
			t.Fatal(err)
		}
		revoked, err := e.auth.TaskToken(t.Context(), ag, "tool.call:go/*", "revoked")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.auth.Tokens.Revoke(t.Context(), token.Caller{Admin: true}, revoked); err != nil {
			t.Fatal(err)
		}
		for name, tok := range map[string]string{"revoked": revoked, "garbage": "not-a-token", "truncated": revoked[:len(revoked)-4]} {
			resp, body := rawPost(t, e, bearerClient(tok).Transport, path, "", initialize)
			ch := resp.Header.Values("WWW-Authenticate")
			if resp.StatusCode != 401 || len(ch) != 2 || !strings.Contains(ch[0], `error="invalid_token"`) || !strings.Contains(ch[0], "resource_metadata=") {
				t.Errorf("%s: status %d, WWW-Authenticate %q; want 401 with an invalid_token challenge", name, resp.StatusCode, ch)
			}
			if strings.TrimSpace(body) != "invalid_token: the access token was not accepted" {
				t.Errorf("%s: 401 body %q, want the fixed text", name, body)
			}
		}
	})
	t.Run("ledger", func(t *testing.T) {
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
		e.rec.mu.Lock()
		e.rec.fail = true
		e.rec.mu.Unlock()
		resp, body := rawPost(t, e, bearerClient("not-a-token").Transport, path, "", initialize)
		want503(t, "a refusal the ledger cannot take", resp, body, audit.ErrUnavailable.Error(), "invalid_token")
		if strings.TrimSpace(body) != "authentication is temporarily unavailable; retry later" {
			t.Errorf("503 body %q, want the fixed text", body)
		}
	})
	t.Run("refusal naming an unavailable store", func(t *testing.T) {
		// An Authenticator (the narrow seam) that could not look something
		// up and says "refused" is still unavailable, not a refusal.
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, func(c *mcpproxy.Config) {
			c.Authenticator = authFunc(func(context.Context, mcpproxy.Credential) (*mcpproxy.Principal, error) {
				return nil, fmt.Errorf("%w: task lookup: %w", mcpproxy.ErrUnauthenticated, fault.ErrUnavailable)
			})
		})
		resp, body := rawPost(t, e, bearerClient("any").Transport, path, "", initialize)
		want503(t, "a refusal naming an unavailable store", resp, body, "task lookup")
	})
	t.Run("store", func(t *testing.T) {
		// A DPoP proof's replay check needs the store.
		e := newEnv(t, []mcpproxy.Upstream{{Name: "go", URL: up.url}}, nil)
		ag, err := e.auth.Register(t.Context(), "bound", identity.TierAutonomous)
		if err != nil {
			t.Fatal(err)
		}
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		tok, err := e.auth.TaskTokenDPoP(t.Context(), ag, "tool.call:go/*", "dpop", key)
		if err != nil {
			t.Fatal(err)
		}
		rt := &mcpbridge.Transport{Token: tok, DPoPKey: key}
		rawSession(t, e, rt, path)
		loseStore(t, e)
		resp, body := rawPost(t, e, rt, path, "", initialize)
		want503(t, "a proof the store cannot check", resp, body, "mandate.db", "lost", "sqlite")
		if strings.TrimSpace(body) != "authentication is temporarily unavailable; retry later" {
			t.Errorf("503 body %q, want the fixed text", body)
		}
	})
}
