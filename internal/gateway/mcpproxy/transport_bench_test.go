package mcpproxy_test

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/mandatehq/mandate/internal/mcpproxytest"
	"github.com/mandatehq/mandate/internal/proctime"
)

// BenchmarkUpstreamTransport measures what carrying one tools/call to an
// HTTP upstream (mcpproxytest.EchoServer, 2025-11-25) and its answer back
// costs on the Go SDK's transport layer (the mcp.Connection of
// mcp.StreamableClientTransport: Write the request, Read the response; no
// typed client), against the raw relay's way (one POST on the session,
// the body read as it is). It answers whether the relay's hand-written
// upstream client could be the SDK's transport instead: the difference
// per call, in CPU, is what it would add to the gateway's.
func BenchmarkUpstreamTransport(b *testing.B) {
	up := httptest.NewServer(&mcpproxytest.EchoServer{})
	b.Cleanup(up.Close)
	params := json.RawMessage(`{"name":"echo","arguments":{"text":"hi"}}`)
	version := http.Header{"Mcp-Protocol-Version": {mcpproxytest.Version20251125}}
	hc := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		for k, v := range version {
			r.Header[k] = v
		}
		return http.DefaultTransport.RoundTrip(r)
	})}

	b.Run("sdk-connection", func(b *testing.B) {
		ctx := b.Context()
		conn, err := (&mcp.StreamableClientTransport{Endpoint: up.URL, HTTPClient: hc, DisableStandaloneSSE: true, MaxRetries: -1}).Connect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		call := func(n int, method string, p json.RawMessage) {
			id, _ := jsonrpc.MakeID(float64(n))
			if err := conn.Write(ctx, &jsonrpc.Request{ID: id, Method: method, Params: p}); err != nil {
				b.Fatal(err)
			}
			msg, err := conn.Read(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if res, ok := msg.(*jsonrpc.Response); !ok || res.Error != nil || res.ID != id {
				b.Fatalf("answer %#v", msg)
			}
		}
		call(0, "initialize", json.RawMessage(`{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}`))
		if err := conn.Write(ctx, &jsonrpc.Request{Method: "notifications/initialized"}); err != nil {
			b.Fatal(err)
		}
		b.ReportAllocs()
		cpu0 := proctime.CPU()
		n := 0
		for b.Loop() {
			n++
			call(n, "tools/call", params)
		}
		b.ReportMetric(float64((proctime.CPU()-cpu0).Nanoseconds())/1e3/float64(n), "cpu-µs/op")
	})

	b.Run("raw-post", func(b *testing.B) {
		ctx := b.Context()
		post := func(body string, session string) (*http.Response, []byte) {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, up.URL, bytes.NewReader([]byte(body)))
			req.Header = http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
			if session != "" {
				req.Header.Set("Mcp-Session-Id", session)
			}
			resp, err := hc.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			defer resp.Body.Close()
			out, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != http.StatusOK {
				b.Fatalf("%d %s %v", resp.StatusCode, out, err)
			}
			return resp, out
		}
		resp, _ := post(`{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"bench","version":"1"}}}`, "")
		session := resp.Header.Get("Mcp-Session-Id")
		b.ReportAllocs()
		cpu0 := proctime.CPU()
		n := 0
		for b.Loop() {
			n++
			_, out := post(`{"jsonrpc":"2.0","id":"mandate-`+strconv.Itoa(n)+`","method":"tools/call","params":`+string(params)+`}`, session)
			if !bytes.Contains(out, []byte(`"hi"`)) {
				b.Fatalf("answer %s", out)
			}
		}
		b.ReportMetric(float64((proctime.CPU()-cpu0).Nanoseconds())/1e3/float64(n), "cpu-µs/op")
	})
}
