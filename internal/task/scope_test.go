package task

import (
	"errors"
	"math/rand/v2"
	"path"
	"regexp"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/resource"
)

func TestPatternCovers(t *testing.T) {
	t.Parallel()
	tests := []struct {
		outer, inner string
		want         bool
	}{
		{"file.read:/repo/**", "file.read:/repo/docs/**", true},
		{"file.read:/repo/**", "file.read:/repo/*", true},
		{"file.read:/repo/*", "file.read:/repo/**", false},
		{"file.*:/repo/**", "file.write:/repo/a", true},
		{"file.read:/repo/**", "file.*:/repo/a", false},
		{"*", "shell.exec:ls", true},
		{"tool.call:github/create_*", "tool.call:github/create_issue", true},
		{"tool.call:github/create_*", "tool.call:github/*", false},
		{"file.read:/a/*/c", "file.read:/a/b/c", true},
		{"file.read:/a/*", "file.read:/a/b/c", false},
	}
	for _, tt := range tests {
		p, q := mustPattern(t, tt.outer), mustPattern(t, tt.inner)
		if got := p.Covers(q); got != tt.want {
			t.Errorf("%s.Covers(%s) = %v, want %v", tt.outer, tt.inner, got, tt.want)
		}
	}
}

func mustPattern(t testing.TB, s string) Pattern {
	t.Helper()
	p, err := ParsePattern(s)
	if err != nil {
		t.Fatalf("ParsePattern(%q): %v", s, err)
	}
	return p
}

// FuzzParsePattern checks that parsing never panics and that a parsed
// pattern round-trips through its canonical form.
func FuzzParsePattern(f *testing.F) {
	for _, s := range []string{"file.read:/repo/**", "tool.call:github/create_*", "task.delegate", "*", "file.*:/a/*/b", "http.request:*.github.com", "http.request:https://api.github.com/**", "x:y", "file.read:***", "file.read:", ":", "file.read:/a b"} {
		f.Add(s, "/repo/a/b")
	}
	f.Fuzz(func(t *testing.T, s, resource string) {
		p, err := ParsePattern(s)
		if err != nil {
			return
		}
		q, err := ParsePattern(p.String())
		if err != nil || q.String() != p.String() {
			t.Fatalf("ParsePattern(%q).String() = %q does not round-trip: %v", s, p.String(), err)
		}
		if !p.Covers(q) || !q.Covers(p) {
			t.Fatalf("%q does not cover itself", s)
		}
		for _, a := range Actions {
			_ = p.Matches(a, resource)
		}
	})
}

// FuzzPatternCovers checks Covers' soundness: if p covers q, every
// (action, resource) generated from q by instantiating its wildcards with
// fill is matched by p.
func FuzzPatternCovers(f *testing.F) {
	f.Add("file.read:/repo/**", "file.read:/repo/docs/*", "a/b")
	f.Add("file.*:/repo/*", "file.write:/repo/x*y", "zz")
	f.Add("*", "tool.call:github/**", "")
	f.Add("tool.call:**/x", "tool.call:*/x", "q/r")
	f.Add("file.read:/a/*/c", "file.read:/a/b*/c", "/")
	f.Fuzz(func(t *testing.T, ps, qs, fill string) {
		p, err := ParsePattern(ps)
		if err != nil {
			return
		}
		q, err := ParsePattern(qs)
		if err != nil || !p.Covers(q) {
			return
		}
		noSlash := strings.ReplaceAll(fill, "/", "")
		var res strings.Builder
		for _, tok := range q.glob {
			switch tok.kind {
			case globLiteral:
				res.WriteByte(tok.lit)
			case globStar:
				res.WriteString(noSlash)
			case globDoubleStar:
				res.WriteString(fill)
			}
		}
		for _, a := range Actions {
			if !q.Matches(a, res.String()) {
				continue
			}
			if !p.Matches(a, res.String()) {
				t.Fatalf("%q covers %q but does not match (%s, %q)", ps, qs, a, res.String())
			}
		}
	})
}

// regexpMatches is the meaning of a pattern as a regular expression, the
// reference globMatches must agree with: "*" is [^/]* and "**" is (?s:.*)
// (when patterns were compiled to regular expressions, "**" was .*, which
// stops at a newline, and "**" did not cover "*").
func regexpMatches(p Pattern, resource string) bool {
	var re strings.Builder
	re.WriteString(`\A`)
	for _, t := range p.glob {
		switch t.kind {
		case globLiteral:
			re.WriteString(regexp.QuoteMeta(string(t.lit)))
		case globStar:
			re.WriteString(`[^/]*`)
		case globDoubleStar:
			re.WriteString(`(?s:.*)`)
		}
	}
	re.WriteString(`\z`)
	return regexp.MustCompile(re.String()).MatchString(resource)
}

func TestPatternMatches(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, action, resource string
		want                      bool
	}{
		{"file.read:/repo/**", "file.read", "/repo/a/b.go", true},
		{"file.read:/repo/**", "file.read", "/repo/", true},
		{"file.read:/repo/**", "file.read", "/repo", false},
		{"file.read:/repo/**", "file.write", "/repo/a", false},
		{"file.*:/repo/*", "file.write", "/repo/a", true},
		{"file.read:/repo/*", "file.read", "/repo/a/b", false},
		{"file.read:/repo/*.go", "file.read", "/repo/main.go", true},
		{"file.read:/repo/*.go", "file.read", "/repo/main.go.txt", false},
		{"tool.call:github/create_*", "tool.call", "github/create_issue", true},
		{"tool.call:github/create_*", "tool.call", "github/delete_issue", false},
		{"file.read:/a/**/c", "file.read", "/a/c", false},
		{"file.read:/a/**/c", "file.read", "/a//c", false}, // not canonical
		{"file.read:/a/**/c", "file.read", "/a/x/y/c", true},
		{"file.read:**", "file.read", "a\nb", true}, // ** is every run, as * (which crosses newlines) is within it
		{"file.read:*", "file.read", "a\nb", true},
		{"file.read:/x/*", "file.read", "/x/ü", true},
		{"task.delegate", "task.delegate", "spiffe://example.org/agent/x", true},
		{"*", "shell.exec", "rm -rf /", true},
	}
	for _, tt := range tests {
		p := mustPattern(t, tt.pattern)
		if got := p.Matches(tt.action, tt.resource); got != tt.want {
			t.Errorf("%s.Matches(%s, %q) = %v, want %v", tt.pattern, tt.action, tt.resource, got, tt.want)
		}
	}
	if (Pattern{}).Matches("file.read", "x") {
		t.Error("the zero Pattern matches")
	}
}

// TestPatternMatchesRegexp checks globMatches against the regular
// expressions patterns used to compile to, on random globs and resources
// over a small alphabet.
func TestPatternMatchesRegexp(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	pick := func(alphabet []string, n int) string {
		var b strings.Builder
		for range n {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		return b.String()
	}
	globAlphabet := []string{"a", "b", "/", ".", "*", "**"}
	resAlphabet := []string{"a", "b", "/", ".", "\n", "é", "\xff"}
	for range 20000 {
		p, err := ParsePattern("file.read:" + pick(globAlphabet, 1+r.IntN(8)))
		if err != nil {
			continue // "***"
		}
		res := pick(resAlphabet, r.IntN(12))
		want := regexpMatches(p, res) && !resource.Traverses(res)
		if got := p.Matches("file.read", res); got != want {
			t.Fatalf("%s.Matches(file.read, %q) = %v, regexp says %v", p, res, got, want)
		}
	}
}

func TestPatternMatchesLongest(t *testing.T) {
	t.Parallel()
	// The most tokens a pattern can have: "*:" and 510 of them.
	glob := strings.Repeat("*a", (MaxPatternLen-2)/2)
	p := mustPattern(t, "*:"+glob)
	res := strings.Repeat("xa", (MaxPatternLen-2)/2)
	if !p.Matches("file.read", res) || p.Matches("file.read", res+"/") || p.Matches("file.read", res[2:]) {
		t.Errorf("the longest pattern does not match as it should")
	}
}

func BenchmarkPatternMatches(b *testing.B) {
	p := mustPattern(b, "file.read:/repo/src/**/*.go")
	for b.Loop() {
		if !p.Matches("file.read", "/repo/src/internal/task/scope.go") {
			b.Fatal("no match")
		}
	}
}

// TestPatternTraversal: no spelling of a path outside a pattern's root
// matches it, and a pattern with dot segments is refused.
func TestPatternTraversal(t *testing.T) {
	t.Parallel()
	tests := []struct{ pattern, action, resource string }{
		{"file.write:/repo/src/**", "file.write", "/repo/src/../../etc/passwd"},
		{"file.write:/repo/src/**", "file.write", "/repo/src/./../secret"},
		{"file.write:/repo/src/**", "file.write", "/repo/src/a/../../../etc/shadow"},
		{"file.write:/repo/src/**", "file.write", "/repo/src/.."},
		{"file.write:/repo/src/**", "file.write", "/repo/src//etc"},
		{"file.write:/repo/src/**", "file.write", "/repo/src/a\x00b"},
		{"file.write:/repo/src/**", "file.write", "/repo/src/..\\..\\etc"},
		{"file.write:/repo/src/*", "file.write", "/repo/src/.."},
		{"resource.read:file:///repo/src/**", "resource.read", "file:///repo/src/%2e%2e/%2e%2e/etc/passwd"},
		{"resource.read:file:///repo/src/**", "resource.read", "file:///repo/src/%2E%2E/%2E%2E/etc/passwd"},
		{"resource.read:file:///repo/src/**", "resource.read", "file:///repo/src/..%2f..%2fetc/passwd"},
		{"resource.read:file:///repo/src/**", "resource.read", "file:///repo/src/%252e%252e/etc"},
		{"resource.read:file:///repo/src/**", "resource.read", "file:///repo/src/../../etc/passwd"},
	}
	for _, tt := range tests {
		t.Run(tt.resource, func(t *testing.T) {
			t.Parallel()
			p, err := ParsePattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if p.Matches(tt.action, tt.resource) {
				t.Errorf("%s.Matches(%s, %q) = true, want false", p, tt.action, tt.resource)
			}
		})
	}
	for _, bad := range []string{"file.write:/repo/src/../**", "file.read:/repo/./**", "file.read:/repo//**", "resource.read:file:///a/%2e%2e/**"} {
		if _, err := ParsePattern(bad); err == nil {
			t.Errorf("ParsePattern(%q) = nil error, want refusal", bad)
		}
	}
}

// FuzzMatchUnderRoot: a match implies the resource has no dot segment
// and its cleaned form lies under the pattern's literal root.
func FuzzMatchUnderRoot(f *testing.F) {
	f.Add("/repo/src", "/repo/src/../../etc/passwd")
	f.Add("/repo/src", "/repo/src/a/../../../etc/shadow")
	f.Add("/repo/src", "/repo/src/./x")
	f.Add("/a", "/a/b")
	f.Fuzz(func(t *testing.T, root, res string) {
		p, err := ParsePattern("file.read:" + root + "/**")
		if err != nil || strings.Contains(root, "*") {
			return
		}
		if !p.Matches("file.read", res) {
			return
		}
		if resource.Traverses(res) {
			t.Fatalf("%s matched %q, which has a dot segment", p, res)
		}
		clean, dir := path.Clean(res), path.Clean(root)
		if root == "" {
			dir = "/" // the pattern is "/**"
		}
		if !underRoot(clean, dir) {
			t.Fatalf("%s matched %q, cleaned %q is outside %q", p, res, clean, root)
		}
	})
}

// TestParsePatternCanonical: a pattern's literal parts follow the
// canonical rules of package resource, the same ones the resources it is
// compared with are held to.
func TestParsePatternCanonical(t *testing.T) {
	t.Parallel()
	refused := map[string]string{
		"http.request:EXAMPLE.com":               `write "example.com"`,
		"http.request:*.EXAMPLE.com":             `write "x.example.com"`,
		"http.request:example.com.":              "empty label",
		"http.request:example.com:0443":          "port must be 1-65535",
		"http.request:xn--abc.com":               "not a valid host name",
		"http.request:0177.0.0.1":                "four decimal octets",
		"http.request:https://api.github.com/**": `host "https://api.github.com/**": a host name, not a URL`,
		"file.read:/repo/src/":                   `ends in "/"`,
		"file.read:repo/**":                      "not absolute",
		"file.write:/repo/src/*/":                `ends in "/"`,
		"resource.read:FILE:///repo/**":          "scheme must be lowercase",
		"resource.read:file://localhost/**":      "a file URI has no host",
		"resource.read:file:/repo/**":            `want "scheme://"`,
		"resource.read:https://Example.com/**":   `write "example.com"`,
		"resource.read:file:///repo/**#x":        "fragment",
		"resource.read:file:///repo/%41/**":      "percent-encoded path",
		"tool.call:github/a/b":                   `want "server/name"`,
		"file.*:/repo/src/":                      `ends in "/"`,
	}
	for s, reason := range refused {
		_, err := ParsePattern(s)
		if err == nil || !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), reason) {
			t.Errorf("ParsePattern(%q) = %v, want ErrInvalid with %q", s, err, reason)
		}
	}
	for _, s := range []string{
		"*", "file.read", "file.read:**", "file.read:*", "file.read:/**", "file.read:/", "file.read:**/*.go",
		"file.write:/repo/src/*.go", "file.*:/repo/**", "*:/repo/**", "*:github/*",
		"http.request:*.github.com", "http.request:api.example.com:*", "http.request:*:443",
		"http.request:xn--bcher-kva.de", "http.request:[::1]:8080", "http.request:127.0.0.1",
		"resource.read:file:///repo/**", "resource.read:*://example.com/**", "resource.read:**/secret.txt", "resource.read:ui://*",
		"tool.call:*/read_file", "tool.call:fs/**", "shell.exec:git", "task.delegate:spiffe://example.org/agent/*",
	} {
		if _, err := ParsePattern(s); err != nil {
			t.Errorf("ParsePattern(%q) = %v, want it accepted", s, err)
		}
	}
}

// matchRoot is the directory a file pattern's resource is confined to:
// its literal text before the first wildcard, up to the last "/" ("/repo/src"
// for "/repo/src/**" and "/repo/src/*.go"), and "" when that text has no
// "/" (the pattern may match anywhere). A whole literal is its own root.
func matchRoot(glob string) string {
	lit, _, wild := strings.Cut(glob, "*")
	if !wild {
		return lit
	}
	i := strings.LastIndexByte(lit, '/')
	if i < 0 {
		return ""
	}
	return lit[:i]
}

// underRoot reports whether clean is root or lies under it.
func underRoot(clean, root string) bool {
	return root == "" || clean == root || root == "/" && strings.HasPrefix(clean, "/") || strings.HasPrefix(clean, root+"/")
}

// FuzzCheckAndMatch runs resource.Check and the scope matcher together,
// as the pipeline does, against a reference that shares no code with
// either (path.Clean, used only here): a resource Check accepts is already
// clean, and a match implies the cleaned path lies under the pattern's
// root, so no spelling of a path (dot segments, "//", encodings,
// look-alikes, NUL) lets "**" climb out of it. Paths are fuzzed as file
// paths and, under "file://", as URIs.
func FuzzCheckAndMatch(f *testing.F) {
	for _, tt := range []struct{ glob, res string }{
		{"/repo/src/**", "/repo/src/../../etc/passwd"},
		{"/repo/src/**", "/repo/src/./../secret"},
		{"/repo/src/**", "/repo/src/a/../../../etc/shadow"},
		{"/repo/src/**", "/repo/src//x"},
		{"/repo/src/**", "/repo/src/x/"},
		{"/repo/src/**", "/repo/src/x\x00/../../y"},
		{"/repo/src/**", "/repo/src/..\u2215..\u2215etc"},
		{"/repo/src/**", "/repo/src/..\uff0f..\uff0fetc"},
		{"/repo/src/**", "/repo/src/%2e%2e/%2e%2e/etc/passwd"},
		{"/repo/src/**", "/repo/src/%2E%2E/etc"},
		{"/repo/src/**", "/repo/src/%252e%252e/etc"},
		{"/repo/src/**", `/repo/src/..\..\etc`},
		{"/repo/src/*.go", "/repo/src/../x.go"},
		{"/repo/**/x", "/repo/../x"},
		{"/repo/src/**", "/repo/src/ok.go"},
		{"/**", "/etc/passwd"},
		{"**", "/a/../b"},
	} {
		f.Add(tt.glob, tt.res, false)
		f.Add(tt.glob, tt.res, true)
	}
	f.Fuzz(func(t *testing.T, glob, res string, uri bool) {
		action, prefix, pth := "file.write", "", res
		if uri {
			if strings.ContainsAny(glob, "?#") {
				return // the root of a pattern with a query is not a path
			}
			action, prefix = "resource.read", "file://"
			pth, _, _ = strings.Cut(res, "?") // the query is not part of the path
		}
		p, err := ParsePattern(action + ":" + prefix + glob)
		if err != nil {
			return
		}
		r := prefix + res
		if resource.Check(action, r) != nil {
			return // refused, with a reason, before any match
		}
		if clean := path.Clean(pth); clean != pth && pth != "" {
			t.Fatalf("resource.Check(%s, %q) accepted a path that is not clean (%q)", action, r, clean)
		}
		if !p.Matches(action, r) {
			return
		}
		if root := matchRoot(glob); !underRoot(path.Clean(pth), root) {
			t.Fatalf("%s matches %q: the cleaned path %q is not under the pattern's root %q", p, r, path.Clean(pth), root)
		}
	})
}
