package secrets_test

import (
	"testing"

	"github.com/mandatehq/mandate/internal/secrets"
)

// FuzzParseTarget: whatever parses validates and prints back as itself.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{"mcp:github:env:GITHUB_TOKEN", "mcp:x:header:Authorization", "egress:api.github.com", "egress:[::1]:443", "mcp:a:b:c:d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tg, err := secrets.ParseTarget(s)
		if err != nil {
			return
		}
		if tg.String() != s || tg.Validate() != nil {
			t.Fatalf("ParseTarget(%q) = %+v, which prints as %q (valid: %v)", s, tg, tg.String(), tg.Validate())
		}
	})
}

// FuzzParseName: a name that parses is its own canonical form.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"github-token", "A", "a_b", "", "a.b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := secrets.ParseName(s)
		if err != nil {
			return
		}
		if string(n) != s {
			t.Fatalf("ParseName(%q) = %q", s, n)
		}
	})
}
