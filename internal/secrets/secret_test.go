package secrets_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/secrets"
)

func TestParseName(t *testing.T) {
	t.Parallel()
	for _, ok := range []string{"a", "github-token", "db_1", strings.Repeat("a", secrets.MaxNameLen)} {
		if _, err := secrets.ParseName(ok); err != nil {
			t.Errorf("ParseName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "GitHub", "1abc", "-a", "a b", "a/b", "a.b", "../x", "a\x00", "é", "a\n",
		strings.Repeat("a", secrets.MaxNameLen+1), "ａ"} {
		if _, err := secrets.ParseName(bad); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("ParseName(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestParseTarget(t *testing.T) {
	t.Parallel()
	for s, want := range map[string]secrets.Target{
		"mcp:github:env:GITHUB_TOKEN":    {Upstream: "github", Env: "GITHUB_TOKEN"},
		"mcp:api.x:header:Authorization": {Upstream: "api.x", Header: "Authorization"},
		"mcp:x:header:X-Api-Key":         {Upstream: "x", Header: "X-Api-Key"},
		"egress:api.github.com":          {Host: "api.github.com"},
		"egress:api.github.com:8443":     {Host: "api.github.com:8443"},
	} {
		got, err := secrets.ParseTarget(s)
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", s, got, err, want)
		}
	}
	for _, bad := range []string{
		"", "mcp", "mcp:github", "mcp:github:env", "mcp:github:env:", "mcp::env:X", "mcp:github:file:X",
		"mcp:github:env:1X", "mcp:github:env:A-B", "mcp:github:header:authorization", "mcp:github:header:Host",
		"mcp:github:header:Content-Length", "mcp:github:header:X Y", "mcp:git/hub:env:X", "mcp:github:env:X:extra",
		"egress:", "egress:API.github.com", "egress:api.github.com.", "egress:https://api.github.com", "egress:a/b",
		"http:x", "mcp:github:header:X-A\r\nX-B",
	} {
		if _, err := secrets.ParseTarget(bad); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("ParseTarget(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

func TestPostgresTemplate(t *testing.T) {
	t.Parallel()
	ok := secrets.PostgresConfig{Grants: []string{"SELECT ON ALL TABLES IN SCHEMA public", "USAGE on schema app"}, MemberOf: []string{"readers"}}
	if err := ok.Validate(); err != nil {
		t.Errorf("Validate(%+v) = %v", ok, err)
	}
	for _, bad := range []secrets.PostgresConfig{
		{},
		{Grants: []string{"SELECT ON t; DROP TABLE t"}},
		{Grants: []string{"SELECT ON t TO public"}},
		{Grants: []string{"SELECT ON t -- x"}},
		{Grants: []string{"SELECT ON t /* x */"}},
		{Grants: []string{`SELECT ON "t"`}},
		{Grants: []string{"SELECT ON $$t$$"}},
		{Grants: []string{"SELECT ON t WITH GRANT OPTION"}},
		{Grants: []string{"SELECT"}},
		{Grants: []string{"SELECT ON t\nx"}},
		{MemberOf: []string{`readers"; DROP`}},
		{MemberOf: []string{"Readers"}},
	} {
		if err := bad.Validate(); !errors.Is(err, secrets.ErrInvalid) {
			t.Errorf("Validate(%+v) = %v, want ErrInvalid", bad, err)
		}
	}
}

// TestValueRedacted: a Value never shows its bytes, however it is printed
// or encoded.
func TestValueRedacted(t *testing.T) {
	t.Parallel()
	const secret = "s3cr3t-value"
	v := secrets.NewValue([]byte(secret))
	b, err := json.Marshal(struct{ V secrets.Value }{v})
	if err != nil {
		t.Fatal(err)
	}
	for _, out := range []string{fmt.Sprint(v), fmt.Sprintf("%v %+v %#v %s %q %x", v, v, v, v, v, v), string(b), fmt.Sprintf("%v", []secrets.Value{v})} {
		if strings.Contains(out, secret) || strings.Contains(out, fmt.Sprintf("%x", secret)) {
			t.Errorf("formatted value %q shows the secret", out)
		}
	}
	if string(v.Bytes()) != secret {
		t.Errorf("Bytes() = %q", v.Bytes())
	}
}
