// Package resource defines the canonical form of the resource an action
// names, one parser per resource type: file paths, URIs, hosts, commands,
// tool and prompt names, secret names and agents. Scope matching, policy
// and the ledger all see the same canonical string.
//
// A resource that is not already canonical is refused, never cleaned: a
// cleaner would teach an agent which spelling slips through, and two
// components cleaning differently is how traversal gets past a check.
// See docs/resources.md for the rules and the reasons.
package resource

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"unicode/utf8"
)

// MaxLen is the longest resource accepted, in bytes.
const MaxLen = 4096

// ErrNotCanonical is returned (wrapped, with the rule broken) for a
// resource that is not in canonical form.
var ErrNotCanonical = errors.New("resource is not canonical")

// Check reports whether resource is the canonical form of a resource for
// action; the error says which rule it breaks. Unknown actions are refused.
func Check(action, resource string) error {
	if resource == "" {
		return fmt.Errorf("%w: empty resource", ErrNotCanonical)
	}
	if len(resource) > MaxLen {
		return fmt.Errorf("%w: longer than %d bytes", ErrNotCanonical, MaxLen)
	}
	if err := checkText(resource); err != nil {
		return err
	}
	switch action {
	case "file.read", "file.write":
		return CheckPath(resource)
	case "resource.read":
		return CheckURI(resource)
	case "http.request":
		return CheckHost(resource)
	case "tool.call", "prompt.get":
		return CheckTool(resource)
	case "shell.exec", "secret.use", "task.delegate":
		// Commands, secret names and agent IDs: text rules only (checked
		// above); none of them is a path a "**" could climb out of.
		return nil
	}
	return fmt.Errorf("%w: unknown action %q", ErrNotCanonical, action)
}

// checkText refuses invalid UTF-8, control characters (NUL included) and
// characters that look like "/" or "." but are not.
func checkText(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return fmt.Errorf("%w: byte %d is not valid UTF-8", ErrNotCanonical, i)
			}
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return fmt.Errorf("%w: byte %d is a control character", ErrNotCanonical, i)
		case isLookalike(r):
			return fmt.Errorf("%w: byte %d is %U, which looks like \"/\", \"\\\" or \".\"", ErrNotCanonical, i, r)
		}
	}
	return nil
}

// isLookalike reports the characters that render like a path separator
// or a dot: a reader (or a later normaliser, NFKC maps several of them to
// "/" and ".") would see a different path from the one matched.
func isLookalike(r rune) bool {
	switch r {
	case '\uff0f', // FULLWIDTH SOLIDUS
		'\u2215',                                         // DIVISION SLASH
		'\u2044',                                         // FRACTION SLASH
		'\u29f8',                                         // BIG SOLIDUS
		'\uff3c',                                         // FULLWIDTH REVERSE SOLIDUS
		'\u2216',                                         // SET MINUS
		'\u2024',                                         // ONE DOT LEADER
		'\u2025',                                         // TWO DOT LEADER
		'\u2026',                                         // HORIZONTAL ELLIPSIS
		'\uff0e',                                         // FULLWIDTH FULL STOP
		'\ufe52',                                         // SMALL FULL STOP
		'\u200b', '\u200c', '\u200d', '\u2060', '\ufeff': // invisible
		return true
	}
	return false
}

// CheckPath reports whether p is a canonical file path: absolute ("/"
// first), segments separated by single "/", no empty, "." or ".."
// segment, no trailing "/" (except the root "/" itself), no "\" (Windows
// paths are given in slash form, "/C:/Users/x"), no NUL or control
// character, valid UTF-8. Symbolic links are not resolved here: that is
// the enforcement point's job, before it asks.
func CheckPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: path %s is not absolute (must start with \"/\")", ErrNotCanonical, Quote(p))
	}
	if p == "/" {
		return nil
	}
	if strings.ContainsRune(p, '\\') {
		return fmt.Errorf("%w: path %s contains \"\\\" (give Windows paths with \"/\")", ErrNotCanonical, Quote(p))
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("%w: path %s ends in \"/\"", ErrNotCanonical, Quote(p))
	}
	return checkSegments(p[1:], p)
}

// checkSegments checks the "/"-separated segments of rest (a path without
// its leading "/"); whole is used in messages.
func checkSegments(rest, whole string) error {
	for rest != "" {
		seg, tail, _ := strings.Cut(rest, "/")
		switch seg {
		case "":
			return fmt.Errorf("%w: path %s has an empty segment (\"//\")", ErrNotCanonical, Quote(whole))
		case ".", "..":
			return fmt.Errorf("%w: path %s has a %q segment", ErrNotCanonical, Quote(whole), seg)
		}
		rest = tail
	}
	return nil
}

// CheckURI reports whether u is a canonical URI (RFC 3986): a lowercase
// scheme, a lowercase host, no userinfo or fragment, and a path that is
// empty or canonical by CheckPath's rules. Percent-encoding in the path
// is refused outright: an encoded unreserved character ("%2e") has a
// canonical unencoded spelling, an encoded "/" or "%" ("%2f", "%252e")
// means a different path to a server that decodes once more than we do.
func CheckURI(u string) error {
	parsed, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%w: URI %s: %v", ErrNotCanonical, Quote(u), errors.Unwrap(err))
	}
	switch {
	case parsed.Scheme == "":
		return fmt.Errorf("%w: URI %s has no scheme", ErrNotCanonical, Quote(u))
	case parsed.Scheme != strings.ToLower(parsed.Scheme):
		return fmt.Errorf("%w: URI %s: scheme must be lowercase", ErrNotCanonical, Quote(u))
	case parsed.Opaque != "":
		return fmt.Errorf("%w: URI %s: an opaque URI (no \"//\" after the scheme) has no canonical path", ErrNotCanonical, Quote(u))
	case parsed.User != nil:
		return fmt.Errorf("%w: URI %s has userinfo", ErrNotCanonical, Quote(u))
	case parsed.Fragment != "" || strings.Contains(u, "#"):
		return fmt.Errorf("%w: URI %s has a fragment", ErrNotCanonical, Quote(u))
	case parsed.Host != strings.ToLower(parsed.Host):
		return fmt.Errorf("%w: URI %s: host must be lowercase", ErrNotCanonical, Quote(u))
	}
	raw := parsed.EscapedPath()
	if strings.Contains(raw, "%") || parsed.RawPath != "" {
		return fmt.Errorf("%w: URI %s has a percent-encoded path (give it decoded)", ErrNotCanonical, Quote(u))
	}
	if parsed.Path == "" {
		return nil
	}
	if parsed.Path != "/" && strings.HasSuffix(parsed.Path, "/") {
		return fmt.Errorf("%w: URI %s: path ends in \"/\"", ErrNotCanonical, Quote(u))
	}
	if strings.ContainsRune(parsed.Path, '\\') {
		return fmt.Errorf("%w: URI %s: path contains \"\\\"", ErrNotCanonical, Quote(u))
	}
	return checkSegments(strings.TrimPrefix(parsed.Path, "/"), u)
}

// CheckHost reports whether h is a canonical host, "name" or "name:port":
// lowercase ASCII letters, digits, "-" and "." between non-empty labels,
// or a bracketed IPv6 literal; a port of 1-65535 without leading zeros.
// Internationalised names are given in their ASCII (punycode, "xn--")
// form; any other non-ASCII host is refused.
func CheckHost(h string) error {
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.Index(h, "]")
		if end < 0 {
			return fmt.Errorf("%w: host %s: unclosed \"[\"", ErrNotCanonical, Quote(h))
		}
		name, port = h[:end+1], strings.TrimPrefix(h[end+1:], ":")
		if h[end+1:] != "" && !strings.HasPrefix(h[end+1:], ":") {
			return fmt.Errorf("%w: host %s: junk after \"]\"", ErrNotCanonical, Quote(h))
		}
		for _, c := range name[1:end] {
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c == ':' || c == '.') {
				return fmt.Errorf("%w: host %s: not a lowercase IPv6 literal", ErrNotCanonical, Quote(h))
			}
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if port == "" {
			return fmt.Errorf("%w: host %s: empty port", ErrNotCanonical, Quote(h))
		}
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return fmt.Errorf("%w: host %s: port must be 1-65535 without leading zeros", ErrNotCanonical, Quote(h))
		}
	}
	if strings.HasPrefix(name, "[") {
		return nil
	}
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%w: host %s: name must be 1-253 bytes", ErrNotCanonical, Quote(h))
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("%w: host %s: empty or over-long label (no trailing \".\")", ErrNotCanonical, Quote(h))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%w: host %s: only lowercase ASCII letters, digits and \"-\" (internationalised names in \"xn--\" form)", ErrNotCanonical, Quote(h))
			}
		}
	}
	return nil
}

// CheckTool reports whether t is a canonical tool or prompt name,
// "server/name" or a bare "name": each part non-empty, of ASCII letters,
// digits and "_", "-", ".", but never "." or "..".
func CheckTool(t string) error {
	server, name, hasServer := strings.Cut(t, "/")
	parts := []string{server}
	if hasServer {
		parts = append(parts, name)
	}
	for _, part := range parts {
		if part == "" || part == "." || part == ".." || strings.Contains(part, "/") {
			return fmt.Errorf("%w: tool %s: want \"server/name\"", ErrNotCanonical, Quote(t))
		}
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
				return fmt.Errorf("%w: tool %s: only ASCII letters, digits, \"_\", \"-\" and \".\"", ErrNotCanonical, Quote(t))
			}
		}
	}
	return nil
}

// maxQuoted bounds the quoted form of a refused resource.
const maxQuoted = 256

// Quote returns s in a form safe to show and record whatever it holds: Go
// quoted ASCII (NUL as \x00, non-ASCII escaped), cut to a bounded length.
func Quote(s string) string {
	if len(s) > maxQuoted {
		return strconv.QuoteToASCII(s[:maxQuoted]) + "..."
	}
	return strconv.QuoteToASCII(s)
}
