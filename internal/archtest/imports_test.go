// Package archtest enforces the import rules of DESIGN.md ("Layout"): the
// domain never depends on storage, transports or wiring; gateways and
// httpapi reach storage only through the domain; only server and store
// know the backends, and the store knows nothing but the domain.
package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/mandatehq/mandate/"

var (
	domain   = []string{"internal/identity", "internal/task", "internal/token", "internal/policy", "internal/approval", "internal/secrets", "internal/toolpin", "internal/audit"}
	backends = []string{"internal/store/sqlite", "internal/store/postgres"}
	// transports are the packages that face the network.
	transports = []string{"internal/gateway", "internal/httpapi", "internal/hook"}
)

// rule forbids packages under from importing packages under any of to,
// unless the importer is also under one of except.
type rule struct {
	name string
	from []string
	to   []string
}

var rules = []rule{
	{"domain packages never import store backends, the store switch, gateways, httpapi or server",
		domain, append(append([]string{"internal/store", "internal/server", "internal/access"}, transports...), backends...)},
	{"gateways and httpapi depend on the domain and access, not on storage",
		transports, append([]string{"internal/store", "internal/server"}, backends...)},
	{"store backends and httpapi never import a gateway: what they share with it is domain (toolpin)",
		[]string{"internal/store", "internal/httpapi"}, []string{"internal/gateway"}},
	{"gateways never import httpapi",
		[]string{"internal/gateway"}, []string{"internal/httpapi"}},
	{"the agent-side bridge and the gateway never import each other: they share only the protocol",
		[]string{"internal/gateway/mcpbridge"}, []string{"internal/gateway/mcpproxy"}},
	{"the agent-side bridge and the gateway never import each other: they share only the protocol",
		[]string{"internal/gateway/mcpproxy"}, []string{"internal/gateway/mcpbridge"}},
	{"policy is pure evaluation: it may use task's scope patterns, nothing that does I/O",
		[]string{"internal/policy"}, []string{"internal/token", "internal/admin", "internal/audit", "internal/identity"}},
	{"fault is the error class every layer shares: it imports nothing of mandate's",
		[]string{"internal/fault"}, []string{"internal"}},
	{"access composes the domain without storage or transports",
		[]string{"internal/access"}, append(append([]string{"internal/store", "internal/server"}, transports...), backends...)},
}

// confinement allows packages under pkgs to import, of mandate's, only
// packages under allowed and under pkgs themselves: an allow-list where a
// rule is a deny-list.
type confinement struct {
	name    string
	pkgs    []string
	allowed []string
}

var confinements = []confinement{
	{"the store and its backends import nothing of mandate's but the domain and fault: they persist the domain's types, they do not use the layers above",
		[]string{"internal/store"}, append([]string{"internal/fault"}, domain...)},
	{"the MCP gateway's wire package is a codec: it imports nothing of mandate's",
		[]string{"internal/gateway/mcpproxy/internal/wire"}, nil},
}

func under(pkg string, prefixes []string) bool {
	for _, p := range prefixes {
		if pkg == p || strings.HasPrefix(pkg, p+"/") {
			return true
		}
	}
	return false
}

func TestImportRules(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	imports := map[string]map[string]bool{} // package dir → imported module packages
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		// Non-test files only: tests may wire real backends (CONVENTIONS:
		// real fakes over mocks).
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok {
				if imports[rel] == nil {
					imports[rel] = map[string]bool{}
				}
				imports[rel][dep] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(imports) < 5 {
		t.Fatalf("found imports for only %d packages under %s; is the walk broken?", len(imports), root)
	}
	for pkg, deps := range imports {
		for dep := range deps {
			for _, r := range rules {
				if under(pkg, r.from) && under(dep, r.to) && !under(dep, r.from) {
					t.Errorf("%s imports %s: %s", pkg, dep, r.name)
				}
			}
			for _, c := range confinements {
				if under(pkg, c.pkgs) && !under(dep, c.pkgs) && !under(dep, c.allowed) {
					t.Errorf("%s imports %s: %s", pkg, dep, c.name)
				}
			}
			if under(dep, backends) && !under(pkg, []string{"internal/store", "internal/server"}) {
				t.Errorf("%s imports backend %s: only server and store may", pkg, dep)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(root, "internal/identity")); err != nil {
		t.Fatalf("layout moved: %v", err)
	}
}
