package access_test

import (
	"go/build"
	"strings"
	"testing"
)

// TestImportRules enforces DESIGN.md's layering for the packages of the
// decision path: policy is pure domain (it may use task's scope patterns,
// nothing that does I/O); access composes the domain and never reaches
// for storage backends, HTTP or the server.
func TestImportRules(t *testing.T) {
	t.Parallel()
	const mod = "github.com/mandatehq/mandate/internal/"
	rules := map[string][]string{
		"policy": {"access", "httpapi", "server", "store", "token", "admin", "audit", "identity", "gateway"},
		"access": {"httpapi", "server", "store", "admin", "gateway"},
	}
	for pkg, banned := range rules {
		p, err := build.Import(mod+pkg, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range p.Imports {
			rest, ok := strings.CutPrefix(imp, mod)
			if !ok {
				continue
			}
			for _, b := range banned {
				if rest == b || strings.HasPrefix(rest, b+"/") {
					t.Errorf("package %s imports %s, which DESIGN.md's import rules forbid", pkg, imp)
				}
			}
		}
	}
}
