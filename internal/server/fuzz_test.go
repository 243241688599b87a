package server

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFile feeds arbitrary bytes to the strict YAML config loader:
// it must never panic, and every error must name the file so an operator
// can find it.
func FuzzConfigFile(f *testing.F) {
	for _, seed := range []string{
		"listen: 127.0.0.1:8420\n",
		"tokens:\n  agent_ttl: 5m\n  task_ttl: 1m\n",
		"tokens:\n  agnet_ttl: 5m\n",
		"admin:\n  token_hashes: [\"sha256:00\"]\n",
		"federation:\n  issuers:\n    - issuer: https://x\n      jwks_url: https://x/jwks\n      audience: a\n",
		"listen: [1, 2]\n",
		"tasks: {max_depth: yes}\n",
		"a: &x [*x]\n",
		"\t\x00: :\n",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c := Defaults()
		err := loadFile(&c, path)
		if err != nil {
			if !strings.Contains(err.Error(), path) {
				t.Fatalf("loadFile error does not name the file: %v", err)
			}
			return
		}
		_ = c.Validate()
	})
}
