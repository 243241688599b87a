package mcpproxy

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// FuzzParamHeaders: checking a call's Mcp-Param-* header against its
// arguments never panics, and accepts exactly the headers that stand for
// the argument's value: for a string argument, the header's decoded value
// is the string.
func FuzzParamHeaders(f *testing.F) {
	f.Add(`{"region":"eu"}`, "eu")
	f.Add(`{"region":" eu"}`, "=?base64?IGV1?=")
	f.Add(`{"region":"eu","region":"us"}`, "us")
	f.Add(`{"region":3}`, "3.0")
	f.Add(`{"region":null}`, "")
	f.Add(`[1]`, "x")
	f.Add(`{"region":{"n":1}}`, "=?base64?*?=")
	tool := &mcp.Tool{Name: "t", InputSchema: json.RawMessage(`{"type":"object","properties":{"region":{"type":"string","x-mcp-header":"Region"}}}`)}
	f.Fuzz(func(t *testing.T, args, header string) {
		h := http.Header{}
		if header != "" {
			h.Set("Mcp-Param-Region", header)
		}
		err := checkParamHeaders(h, headerBindings(tool), json.RawMessage(args))
		var obj map[string]json.RawMessage
		if json.Unmarshal([]byte(args), &obj) != nil {
			return
		}
		raw, present := obj["region"]
		if !present || string(raw) == "null" {
			if (err == nil) != (header == "") {
				t.Fatalf("checkParamHeaders(%q, Region: %q) = %v; no argument, so no header", args, header, err)
			}
			return
		}
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return
		}
		decoded, ok := decodeHeaderValue(header)
		if want := header != "" && ok && decoded == s; (err == nil) != want {
			t.Fatalf("checkParamHeaders(%q, Region: %q) = %v; the header stands for the argument: %v", args, header, err, want)
		}
	})
}
