package hook

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/text/unicode/norm"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// maxSymlinkHops bounds the links followed while resolving a path whose
// last part does not exist yet.
const maxSymlinkHops = 40

// RealPath returns the resource a path names: made absolute against cwd,
// cleaned, and resolved through symbolic links to the real path (for a
// file that does not exist yet, its deepest existing parent is resolved
// and the rest appended), in mandate's canonical form: slash-separated,
// "/C:/Users/x" for a Windows path. On a case-insensitive file system
// (darwin, windows) the existing part is written as it is spelt on disk.
//
// A path that two readers could take for two different files is an
// error (the action is denied), never one of the readings: a ".." after
// a symbolic link (the kernel follows the link first, a tool that cleans
// the path first does not), a leading "~" (a home directory to some
// tools, a directory named "~" to others), a path through /proc/self or
// /dev/fd (the hook's process, not the tool's). So is one the resource
// package does not accept even then (a control character, a look-alike
// of "/").
func RealPath(cwd, p string) (string, error) {
	if p == "" {
		return "", errors.New("empty path")
	}
	if strings.ContainsRune(p, 0) || strings.ContainsRune(cwd, 0) {
		return "", fmt.Errorf("path %s contains a NUL byte", resource.Quote(p))
	}
	if strings.HasPrefix(p, "~") {
		return "", fmt.Errorf("path %s starts with ~: a home directory to some tools, a directory named ~ to others", resource.Quote(p))
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
		p = cwd + string(filepath.Separator) + p
	}
	clean := filepath.Clean(p)
	// The text rules hold for the path as asked, before the file system
	// is asked about it (whose errors differ between platforms).
	if err := resource.Check(policy.ActionFileRead, canonicalSlash(clean)); err != nil {
		return "", err
	}
	if selfPath(filepath.ToSlash(clean)) {
		return "", fmt.Errorf("path %s names the process's own files, which are the hook's here and the tool's when it runs", resource.Quote(p))
	}
	real, err := resolve(clean)
	if err != nil {
		return "", err
	}
	if hasDotDot(p) {
		kernel, err := walk(p)
		if err != nil {
			return "", err
		}
		if kernel != real {
			return "", fmt.Errorf("path %s has a \"..\" after a symbolic link: the kernel reads %s, a tool that cleans the path first %s", resource.Quote(p), resource.Quote(canonicalSlash(kernel)), resource.Quote(canonicalSlash(real)))
		}
	}
	if caseInsensitiveFS {
		real = onDiskSpelling(real)
	}
	canon := canonicalSlash(real)
	if selfPath(canon) || strings.HasPrefix(canon, "/proc/"+strconv.Itoa(os.Getpid())+"/") || canon == "/proc/"+strconv.Itoa(os.Getpid()) {
		return "", fmt.Errorf("path %s names the process's own files, which are the hook's here and the tool's when it runs", resource.Quote(p))
	}
	if err := resource.Check(policy.ActionFileRead, canon); err != nil { // the text rules too: control characters, look-alikes
		return "", err
	}
	return canon, nil
}

// caseInsensitiveFS is whether the default file systems of this platform
// (APFS, NTFS) fold case, so that ".ENV" opens ".env".
const caseInsensitiveFS = runtime.GOOS == "darwin" || runtime.GOOS == "windows"

// selfPath reports whether a clean slash path is under a directory whose
// meaning depends on the process that opens it.
func selfPath(p string) bool {
	for _, d := range []string{"/proc/self", "/proc/thread-self", "/dev/fd", "/dev/stdin", "/dev/stdout", "/dev/stderr"} {
		if p == d || strings.HasPrefix(p, d+"/") {
			return true
		}
	}
	return false
}

// hasDotDot reports whether a path has a ".." component.
func hasDotDot(p string) bool {
	for _, c := range strings.FieldsFunc(p, isSep) {
		if c == ".." {
			return true
		}
	}
	return false
}

func isSep(r rune) bool { return os.IsPathSeparator(uint8(r)) && r < 0x80 }

// walk resolves an absolute, possibly unclean path as the kernel does:
// component by component, a symbolic link replaced by its target before
// the components after it (so "link/.." is the parent of link's
// target). The part that does not exist is appended as written (a ".."
// in it removes the missing component before it).
func walk(p string) (string, error) {
	vol := filepath.VolumeName(p)
	root := vol + string(filepath.Separator)
	todo := strings.FieldsFunc(p[len(vol):], isSep)
	cur, missing, hops := root, false, 0
	for len(todo) > 0 {
		c := todo[0]
		todo = todo[1:]
		switch c {
		case ".":
			continue
		case "..":
			cur = filepath.Dir(cur) // cur is real: its parent is lexical
			continue
		}
		next := filepath.Join(cur, c)
		if missing {
			cur = next
			continue
		}
		fi, err := os.Lstat(next)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			missing, cur = true, next
			continue
		case err != nil:
			return "", fmt.Errorf("resolving %s: %w", resource.Quote(p), err)
		case fi.Mode()&fs.ModeSymlink == 0:
			cur = next
			continue
		}
		if hops++; hops > maxSymlinkHops {
			return "", fmt.Errorf("resolving %s: too many symbolic links", resource.Quote(p))
		}
		target, err := os.Readlink(next)
		if err != nil {
			return "", fmt.Errorf("resolving %s: %w", resource.Quote(p), err)
		}
		if filepath.IsAbs(target) {
			tv := filepath.VolumeName(target)
			cur, target = tv+string(filepath.Separator), target[len(tv):]
		}
		todo = append(strings.FieldsFunc(target, isSep), todo...)
	}
	return cur, nil
}

// onDiskSpelling writes the existing components of a real path as the
// directory entries spell them, matched case-insensitively and
// Unicode-normalisation-insensitively as APFS and NTFS match names; the
// rest is kept as written.
func onDiskSpelling(real string) string {
	vol := filepath.VolumeName(real)
	cur := vol + string(filepath.Separator)
	parts := strings.FieldsFunc(real[len(vol):], isSep)
	for i, c := range parts {
		entries, err := os.ReadDir(cur)
		if err != nil {
			return filepath.Join(append([]string{cur}, parts[i:]...)...)
		}
		found := ""
		for _, e := range entries {
			if e.Name() == c {
				found = c
				break
			}
			if found == "" && sameName(e.Name(), c) {
				found = e.Name()
			}
		}
		if found == "" {
			return filepath.Join(append([]string{cur}, parts[i:]...)...)
		}
		cur = filepath.Join(cur, found)
	}
	return cur
}

// sameName reports whether two names are one file on a case-insensitive,
// normalisation-insensitive file system.
func sameName(a, b string) bool {
	return strings.EqualFold(norm.NFC.String(a), norm.NFC.String(b))
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
