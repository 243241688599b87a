package egress

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mandatehq/mandate/internal/secrets"
)

func TestParsePlaceholders(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want []secrets.Name
		bad  bool
	}{
		{in: "Bearer abc"},
		{in: "Bearer [secret:gh_token]", want: []secrets.Name{"gh_token"}},
		{in: "[secret:a-1][secret:b]x[secret:a-1]", want: []secrets.Name{"a-1", "b", "a-1"}},
		{in: "[secret]", want: nil},
		{in: "[Secret:gh_token]", bad: true},
		{in: "[SECRET:gh_token]", bad: true},
		{in: "[secret:gh_token", bad: true},
		{in: "[secret:]", bad: true},
		{in: "[secret:GH]", bad: true},
		{in: "[secret:a b]", bad: true},
		{in: "[secret:[secret:a]]", bad: true},
	} {
		got, err := parsePlaceholders(tc.in)
		if (err != nil) != tc.bad || !tc.bad && !equalNames(got, tc.want) {
			t.Errorf("parsePlaceholders(%q) = %v, %v; want %v (refused: %v)", tc.in, got, err, tc.want, tc.bad)
		}
	}
	h := http.Header{"Authorization": {"Bearer [secret:b]"}, "X-A": {"[secret:a]", "[secret:b]"}, "Proxy-Authorization": {"[Secret:x]"}}
	if got, err := placeholders(h); err != nil || !equalNames(got, []secrets.Name{"a", "b"}) {
		t.Errorf("placeholders = %v, %v; want [a b] (sorted, unique, Proxy-* skipped)", got, err)
	}
}

func equalNames(a, b []secrets.Name) bool {
	return strings.Join(namesText(a), ",") == strings.Join(namesText(b), ",")
}

func namesText(ns []secrets.Name) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = string(n)
	}
	return out
}

// FuzzParsePlaceholders: whatever the header value, a placeholder is
// either read as a valid name that the value spells exactly, or refused.
func FuzzParsePlaceholders(f *testing.F) {
	for _, s := range []string{"Bearer [secret:gh_token]", "[secret:a][secret:b]", "[SeCrEt:x]", "[secret:", "x[secret:a-b_c]y", "[secret:\xff]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		names, err := parsePlaceholders(v)
		if err != nil {
			return
		}
		rest := v
		for _, n := range names {
			if _, perr := secrets.ParseName(string(n)); perr != nil {
				t.Fatalf("parsePlaceholders(%q) read invalid name %q", v, n)
			}
			i := strings.Index(rest, placeholderPrefix+string(n)+"]")
			if i < 0 {
				t.Fatalf("parsePlaceholders(%q) = %v: %q is not spelled in order", v, names, n)
			}
			rest = rest[i+len(placeholderPrefix)+len(n)+1:]
		}
		if strings.Contains(asciiLower(rest), placeholderPrefix) {
			t.Fatalf("parsePlaceholders(%q) = %v missed a placeholder in %q", v, names, rest)
		}
	})
}

func TestScrubberForms(t *testing.T) {
	t.Parallel()
	s := newScrubber(map[string]string{`tok"en/+&<x>`: "k"})
	in := `raw=tok"en/+&<x> json="tok\"en/+\u0026\u003cx\u003e" q=tok%22en%2F%2B%26%3Cx%3E`
	got := string(s.replaceAll([]byte(in)))
	if want := `raw=[secret:k] json="[secret:k]" q=[secret:k]`; got != want {
		t.Errorf("replaceAll = %q, want %q", got, want)
	}
}

// FuzzScrubStream: the streaming scrubber, however its input is cut into
// reads, gives what scrubbing the whole gives, and leaves no value in it.
func FuzzScrubStream(f *testing.F) {
	f.Add("abc SECRET-1 def SECRET-1SECRET-2", "SECRET-1", "SECRET-2", uint8(1))
	f.Add("xxSECRSECRET-12", "SECRET-12", "CRET-1", uint8(3))
	f.Add(strings.Repeat("a", 70000)+"longsecretvalue", "longsecretvalue", "aaaaaaaaaa", uint8(7))
	f.Fuzz(func(t *testing.T, in, v1, v2 string, step uint8) {
		if len(v1) < minInjected || len(v2) < minInjected || strings.ContainsAny(v1+v2, "[]") {
			return
		}
		s := newScrubber(map[string]string{v1: "one", v2: "two"})
		want := s.replaceAll([]byte(in))
		var r io.Reader = strings.NewReader(in)
		if step%2 == 1 {
			r = iotest.OneByteReader(r)
		} else if step%4 == 2 {
			r = iotest.HalfReader(r)
		}
		// The length hint sizes the buffer: the body's, a wrong one, none.
		length := int64(-1)
		switch step % 3 {
		case 0:
			length = int64(len(in))
		case 1:
			length = int64(step)
		}
		var trailer http.Header
		got, err := io.ReadAll(s.reader(io.NopCloser(r), &trailer, length))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("streamed %q, whole %q", got, want)
		}
		for _, f := range s.forms {
			if bytes.Contains(got, f) {
				t.Fatalf("scrubbed %q still holds %q", got, f)
			}
		}
	})
}
