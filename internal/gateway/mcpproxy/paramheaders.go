package mcpproxy

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// MCP 2026-07-28 lets a tool mirror some of its arguments into HTTP
// headers (SEP-2243): an input-schema property annotated "x-mcp-header":
// "Region" travels as the header Mcp-Param-Region too, so that load
// balancers and gateways can route on it without reading the body. A
// header that says something else than the body is a request that two
// readers would see differently; the server MUST refuse it (HTTP 400,
// CodeHeaderMismatch). The SDK checks this for the tools a server
// registers; the gateway registers none (it relays its upstreams'), so
// it checks the relayed tools' headers itself, against the definition it
// pinned.

const (
	paramHeaderPrefix = "Mcp-Param-"
	base64Prefix      = "=?base64?"
	base64Suffix      = "?="
	maxSafeInteger    = 1<<53 - 1
)

// headerBinding is an argument (by its path in the arguments object) that
// a tool mirrors into a header.
type headerBinding struct {
	path   []string
	header string
}

type schemaProperty struct {
	Header     string                    `json:"x-mcp-header"`
	Properties map[string]schemaProperty `json:"properties"`
}

// headerBindings returns the arguments tool mirrors into headers.
func headerBindings(tool *mcp.Tool) []headerBinding {
	raw, err := json.Marshal(tool.InputSchema)
	if err != nil {
		return nil
	}
	var s schemaProperty
	if json.Unmarshal(raw, &s) != nil {
		return nil
	}
	var out []headerBinding
	var walk func(props map[string]schemaProperty, prefix []string)
	walk = func(props map[string]schemaProperty, prefix []string) {
		for name, p := range props {
			path := append(append([]string(nil), prefix...), name)
			if p.Header != "" {
				out = append(out, headerBinding{path: path, header: p.Header})
			}
			walk(p.Properties, path)
		}
	}
	walk(s.Properties, nil)
	return out
}

// checkParamHeaders reports how the Mcp-Param-* headers h disagree with
// the arguments args of a call to a tool that mirrors bindings, or nil if
// they agree: each mirrored argument that is present (and not null) has
// its header with the same value, and no header stands for an absent one.
func checkParamHeaders(h http.Header, bindings []headerBinding, args json.RawMessage) error {
	if len(bindings) == 0 {
		return nil
	}
	var obj map[string]json.RawMessage
	if len(args) > 0 && json.Unmarshal(args, &obj) != nil {
		return errors.New("arguments are not an object")
	}
	for _, b := range bindings {
		name := paramHeaderPrefix + b.header
		got := h.Get(name)
		raw, ok := lookupArgument(obj, b.path)
		arg := strings.Join(b.path, ".")
		if !ok || string(raw) == "null" {
			if got != "" {
				return fmt.Errorf("unexpected %s header for the absent parameter %q", name, arg)
			}
			continue
		}
		if got == "" {
			return fmt.Errorf("missing %s header for parameter %q", name, arg)
		}
		decoded, ok := decodeHeaderValue(got)
		if !ok {
			return fmt.Errorf("%s header is not valid Base64", name)
		}
		if !headerMatches(decoded, raw) {
			return fmt.Errorf("%s header does not match parameter %q", name, arg)
		}
	}
	return nil
}

func lookupArgument(obj map[string]json.RawMessage, path []string) (json.RawMessage, bool) {
	cur, ok := obj[path[0]]
	for _, part := range path[1:] {
		if !ok {
			return nil, false
		}
		var next map[string]json.RawMessage
		if json.Unmarshal(cur, &next) != nil {
			return nil, false
		}
		cur, ok = next[part]
	}
	return cur, ok
}

// decodeHeaderValue undoes the =?base64?…?= wrapping of values that are
// not plain printable ASCII.
func decodeHeaderValue(v string) (string, bool) {
	if enc, ok := strings.CutPrefix(v, base64Prefix); ok {
		if enc, ok = strings.CutSuffix(enc, base64Suffix); ok {
			b, err := base64.StdEncoding.DecodeString(enc)
			return string(b), err == nil
		}
	}
	return v, true
}

// headerMatches reports whether a header's (decoded) value h stands for
// the argument raw: only strings, booleans and safe integers may be
// mirrored, an integer's header is compared as a number.
func headerMatches(h string, raw json.RawMessage) bool {
	var v any
	if json.Unmarshal(raw, &v) != nil {
		return false
	}
	switch v := v.(type) {
	case string:
		return h == v
	case bool:
		return h == strconv.FormatBool(v)
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > maxSafeInteger {
			return false
		}
		n, err := strconv.ParseFloat(h, 64)
		return err == nil && n == v
	}
	return false
}
