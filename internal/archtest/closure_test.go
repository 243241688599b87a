package archtest

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestStoreClosure: nothing the store links, however indirectly, is a
// gateway or the MCP SDK. The import rules see only direct imports; a
// domain package that started importing a gateway (a domain type living
// in an enforcement point) would pull the gateway into every backend
// without breaking any of them. Test files are not part of the closure,
// as in TestImportRules.
func TestStoreClosure(t *testing.T) {
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list the store's dependencies: %v", err)
	}
	cmd := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", "./internal/store/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("go list -deps ./internal/store/...: %v\n%s", err, stderr)
	}
	deps := strings.Fields(string(out))
	var sawStore bool
	for _, dep := range deps {
		rel, ours := strings.CutPrefix(dep, module)
		switch {
		case ours && rel == "internal/store":
			sawStore = true
		case ours && under(rel, []string{"internal/gateway"}):
			t.Errorf("the store links %s: no gateway may be in its closure", dep)
		case dep == "github.com/modelcontextprotocol" || strings.HasPrefix(dep, "github.com/modelcontextprotocol/"):
			t.Errorf("the store links %s: the MCP SDK belongs to the gateways", dep)
		}
	}
	if !sawStore {
		t.Fatalf("internal/store is not among the %d packages go list printed; is the pattern broken?", len(deps))
	}
}
