package hook

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// TestRealPathDriveRelative: on Windows a path rooted without a drive
// (`\etc\x`, `/etc/x`) or a drive without a root (`C:x`) does not name a
// file below the working directory, so it is refused, not joined to it
// (which put C:\etc\x inside the repository). Elsewhere `/etc/x` is
// absolute and kept.
func TestRealPathDriveRelative(t *testing.T) {
	cwd := tempDir(t)
	if runtime.GOOS != "windows" {
		got, err := RealPath(cwd, "/etc/x")
		if err != nil || got != canonicalSlash(mustReal(t, "/etc"))+"/x" {
			t.Errorf("RealPath(/etc/x) = %q, %v; want the absolute path", got, err)
		}
		return
	}
	for _, p := range []string{`\etc\x`, `/etc/x`, `C:x`, `c:..\x`, `/`} {
		got, err := RealPath(cwd, p)
		if err == nil || !strings.Contains(err.Error(), "relative to a drive") {
			t.Errorf("RealPath(%q) = %q, %v; want refused as relative to a drive", p, got, err)
		}
	}
	if got, err := RealPath(cwd, `src\x`); err != nil || !strings.HasSuffix(got, "/src/x") {
		t.Errorf(`RealPath(src\x) = %q, %v; want below the working directory`, got, err)
	}
}

func mustReal(t *testing.T, p string) string {
	t.Helper()
	r, err := filepath.EvalSymlinks(p)
	if err != nil {
		t.Fatal(err)
	}
	return r
}
