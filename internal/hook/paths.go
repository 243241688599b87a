package hook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mandatehq/mandate/internal/resource"
)

// maxSymlinkHops bounds the links followed while resolving a path whose
// last part does not exist yet.
const maxSymlinkHops = 40

// RealPath returns the resource a path names: made absolute against cwd,
// cleaned, and resolved through symbolic links to the real path (for a
// file that does not exist yet, its deepest existing parent is resolved
// and the rest appended), in mandate's canonical form: slash-separated,
// "/C:/Users/x" for a Windows path. A path the resource package does not
// accept even then (a control character, a look-alike of "/") is an
// error: the action is denied.
func RealPath(cwd, p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("path %s contains a NUL byte", resource.Quote(p))
	}
	if !filepath.IsAbs(p) {
		// On Windows, `\x` is below the root of the current drive and `C:x`
		// below drive C's own working directory: neither is below cwd,
		// and joining either to cwd would name another file.
		if filepath.VolumeName(p) != "" || os.IsPathSeparator(p[0]) {
			return "", fmt.Errorf("path %s is relative to a drive, not to the working directory", resource.Quote(p))
		}
		if cwd == "" || !filepath.IsAbs(cwd) {
			return "", fmt.Errorf("relative path %s and no absolute working directory", resource.Quote(p))
		}
		p = filepath.Join(cwd, p)
	}
	real, err := resolve(filepath.Clean(p))
	if err != nil {
		return "", err
	}
	canon := canonicalSlash(real)
	if err := resource.CheckPath(canon); err != nil {
		return "", err
	}
	return canon, nil
}

// resolve follows symbolic links in p (absolute and clean). The part that
// does not exist is kept as written below the real path of its deepest
// existing parent, so a dangling link is followed to its target.
func resolve(p string) (string, error) {
	var rest []string
	cur := p
	for hops := 0; ; {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			return filepath.Join(append([]string{real}, rest...)...), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("resolving %s: %w", resource.Quote(cur), err)
		}
		// cur itself may be a dangling link: follow it by hand.
		if target, lerr := os.Readlink(cur); lerr == nil {
			if hops++; hops > maxSymlinkHops {
				return "", fmt.Errorf("resolving %s: too many symbolic links", resource.Quote(p))
			}
			if !filepath.IsAbs(target) {
				target = filepath.Join(filepath.Dir(cur), target)
			}
			cur = filepath.Clean(target)
			continue
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return "", fmt.Errorf("resolving %s: no existing parent", resource.Quote(p))
		}
		rest = append([]string{filepath.Base(cur)}, rest...)
		cur = parent
	}
}

// canonicalSlash writes an OS path in mandate's form: "/" separators and
// a leading "/" before a Windows volume ("C:\x" → "/C:/x").
func canonicalSlash(p string) string {
	s := filepath.ToSlash(p)
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	return s
}
