package identity

import (
	"errors"
	"strings"
	"testing"
)

func TestParseID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in   string
		wantTD     string
		wantName   string
		wantFailed bool
	}{
		{name: "simple", in: "spiffe://example.org/agent/build-bot", wantTD: "example.org", wantName: "build-bot"},
		{name: "dots and underscores", in: "spiffe://corp.example.com/agent/a.b_c-1", wantTD: "corp.example.com", wantName: "a.b_c-1"},
		{name: "not spiffe", in: "https://example.org/agent/x", wantFailed: true},
		{name: "upper-case trust domain", in: "spiffe://Example.org/agent/x", wantFailed: true},
		{name: "port", in: "spiffe://example.org:443/agent/x", wantFailed: true},
		{name: "user info", in: "spiffe://u@example.org/agent/x", wantFailed: true},
		{name: "query", in: "spiffe://example.org/agent/x?a=b", wantFailed: true},
		{name: "fragment", in: "spiffe://example.org/agent/x#f", wantFailed: true},
		{name: "trailing slash", in: "spiffe://example.org/agent/x/", wantFailed: true},
		{name: "dot segment", in: "spiffe://example.org/agent/.", wantFailed: true},
		{name: "dot-dot segment", in: "spiffe://example.org/agent/..", wantFailed: true},
		{name: "empty segment", in: "spiffe://example.org/agent//x", wantFailed: true},
		{name: "not an agent path", in: "spiffe://example.org/workload/x", wantFailed: true},
		{name: "no name", in: "spiffe://example.org/agent", wantFailed: true},
		{name: "nested name", in: "spiffe://example.org/agent/team/x", wantFailed: true},
		{name: "trust domain only", in: "spiffe://example.org", wantFailed: true},
		{name: "percent-encoded", in: "spiffe://example.org/agent/a%20b", wantFailed: true},
		{name: "empty", in: "", wantFailed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			id, err := ParseID(tt.in)
			if tt.wantFailed {
				if err == nil || !errors.Is(err, ErrInvalidID) {
					t.Fatalf("ParseID(%q) = %v, %v; want ErrInvalidID", tt.in, id, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseID(%q): %v", tt.in, err)
			}
			if id.TrustDomain() != tt.wantTD || id.Name() != tt.wantName || id.String() != tt.in {
				t.Errorf("ParseID(%q) = td %q name %q string %q; want td %q name %q", tt.in, id.TrustDomain(), id.Name(), id.String(), tt.wantTD, tt.wantName)
			}
		})
	}
}

func TestNewID(t *testing.T) {
	t.Parallel()
	id, err := NewID("example.org", "deploy-bot")
	if err != nil || id.String() != "spiffe://example.org/agent/deploy-bot" {
		t.Fatalf("NewID = %v, %v", id, err)
	}
	for _, bad := range [][2]string{{"Example.org", "x"}, {"example.org", ""}, {"example.org", "a/b"}, {"example.org", ".."}, {"", "x"}} {
		if _, err := NewID(bad[0], bad[1]); !errors.Is(err, ErrInvalidID) {
			t.Errorf("NewID(%q, %q) error = %v, want ErrInvalidID", bad[0], bad[1], err)
		}
	}
}

func TestIDText(t *testing.T) {
	t.Parallel()
	want := MustParseID("spiffe://example.org/agent/x")
	b, _ := want.MarshalText()
	var got ID
	if err := got.UnmarshalText(b); err != nil || got != want {
		t.Fatalf("round trip = %v, %v; want %v", got, err, want)
	}
	if err := got.UnmarshalText([]byte("spiffe://example.org/other/x")); err == nil {
		t.Fatal("UnmarshalText accepted a non-agent ID")
	}
}

// FuzzParseID checks that ParseID never panics and that every ID it accepts
// round-trips through its string form and is an agent ID.
func FuzzParseID(f *testing.F) {
	for _, s := range []string{"spiffe://example.org/agent/x", "spiffe://a/agent/b.c", "spiffe://example.org/agent/../x", "spiffe://x:1/agent/y", "SPIFFE://x/agent/y"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			return
		}
		if id.String() != s {
			t.Fatalf("ParseID(%q).String() = %q", s, id.String())
		}
		again, err := ParseID(id.String())
		if err != nil || again != id {
			t.Fatalf("re-parse of %q = %v, %v", s, again, err)
		}
		if id.Name() == "" || strings.Contains(id.Name(), "/") || !strings.HasPrefix(s, "spiffe://"+id.TrustDomain()+"/agent/") {
			t.Fatalf("accepted %q with name %q", s, id.Name())
		}
	})
}
