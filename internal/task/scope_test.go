package task

import (
	"strings"
	"testing"
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
	for _, s := range []string{"file.read:/repo/**", "tool.call:github/create_*", "task.delegate", "*", "file.*:/a/*/b", "http.request:https://api.github.com/**", "x:y", "file.read:***", "file.read:", ":", "file.read:/a b"} {
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
