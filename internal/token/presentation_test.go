package token

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

func TestFromHeader(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		authz  []string
		dpop   []string
		want   Presentation
		errNil bool
		noCred bool
	}{
		{name: "bearer", authz: []string{"Bearer abc.def-_~+/=="}, want: Presentation{Scheme: SchemeBearer, Token: "abc.def-_~+/=="}, errNil: true},
		{name: "scheme case", authz: []string{"bEARER abc"}, want: Presentation{Scheme: SchemeBearer, Token: "abc"}, errNil: true},
		{name: "bearer ignores a DPoP header", authz: []string{"Bearer abc"}, dpop: []string{"proof"}, want: Presentation{Scheme: SchemeBearer, Token: "abc"}, errNil: true},
		{name: "dpop", authz: []string{"DPoP abc"}, dpop: []string{"proof"}, want: Presentation{Scheme: SchemeDPoP, Token: "abc", DPoPProof: "proof"}, errNil: true},
		{name: "none", noCred: true},
		{name: "dpop without proof", authz: []string{"DPoP abc"}, want: Presentation{Scheme: SchemeDPoP}},
		{name: "dpop with two proofs", authz: []string{"DPoP abc"}, dpop: []string{"a", "b"}, want: Presentation{Scheme: SchemeDPoP}},
		{name: "two headers", authz: []string{"Bearer a", "Bearer b"}},
		{name: "basic", authz: []string{"Basic dXNlcjpwYXNz"}},
		{name: "no token", authz: []string{"Bearer"}},
		{name: "empty token", authz: []string{"Bearer "}},
		{name: "two spaces", authz: []string{"Bearer  abc"}},
		{name: "trailing space", authz: []string{"Bearer abc "}},
		{name: "inner space", authz: []string{"Bearer a b"}},
		{name: "padding inside", authz: []string{"Bearer a=b"}},
		{name: "comma", authz: []string{"Bearer a,b"}},
		{name: "NUL", authz: []string{"Bearer a\x00"}},
		{name: "non-ASCII", authz: []string{"Bearer é"}},
		{name: "too long", authz: []string{"Bearer " + strings.Repeat("a", MaxAuthorizationLen)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.authz {
				h.Add("Authorization", v)
			}
			for _, v := range tc.dpop {
				h.Add("DPoP", v)
			}
			got, err := FromHeader(h)
			switch {
			case tc.noCred && !errors.Is(err, ErrNoCredential):
				t.Fatalf("FromHeader = %+v, %v; want ErrNoCredential", got, err)
			case tc.errNil && err != nil:
				t.Fatalf("FromHeader = %v", err)
			case !tc.errNil && !tc.noCred && (err == nil || AsError(err).Code != CodeInvalidRequest):
				t.Fatalf("FromHeader = %+v, %v; want invalid_request", got, err)
			}
			if got != tc.want {
				t.Errorf("FromHeader = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestChallenges(t *testing.T) {
	t.Parallel()
	bound := checkScheme(SchemeBearer, "jkt")
	for _, tc := range []struct {
		name string
		p    Presentation
		err  error
		want []string
	}{
		{"no credential", Presentation{}, ErrNoCredential,
			[]string{`Bearer realm="m"`, `DPoP realm="m", algs="EdDSA ES256"`}},
		{"bearer refused", Presentation{Scheme: SchemeBearer}, errInvalidToken(nil, "expired"),
			[]string{`Bearer realm="m", error="invalid_token"`, `DPoP realm="m", algs="EdDSA ES256"`}},
		{"DPoP-bound token as Bearer", Presentation{Scheme: SchemeBearer}, bound,
			[]string{`Bearer realm="m"`, `DPoP realm="m", error="invalid_token", algs="EdDSA ES256"`}},
		{"bad proof", Presentation{Scheme: SchemeDPoP}, errInvalidDPoP(nil, "bad"),
			[]string{`Bearer realm="m"`, `DPoP realm="m", error="invalid_dpop_proof", algs="EdDSA ES256"`}},
		{"no params", Presentation{Scheme: SchemeDPoP}, errInvalidToken(nil, "x"),
			[]string{`Bearer`, `DPoP error="invalid_token", algs="EdDSA ES256"`}},
	} {
		params := `realm="m"`
		if tc.name == "no params" {
			params = ""
		}
		got := Challenges(tc.p, tc.err, params)
		if strings.Join(got, "|") != strings.Join(tc.want, "|") {
			t.Errorf("%s: Challenges = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// FuzzFromHeader: whatever the headers, FromHeader either refuses them
// or returns a token68 token with a known scheme (and, for DPoP, the one
// proof); it never returns a credential and an error at once.
func FuzzFromHeader(f *testing.F) {
	for _, s := range []string{"Bearer abc", "DPoP abc", "bearer  x", "Basic x", "", "Bearer", "Bearer a b", "DPoP a==", "Bearer a=b"} {
		f.Add(s, "proof")
	}
	f.Fuzz(func(t *testing.T, authz, dpop string) {
		h := http.Header{}
		h.Set("Authorization", authz)
		h.Set("DPoP", dpop)
		p, err := FromHeader(h)
		if err != nil {
			if p.Token != "" || p.DPoPProof != "" {
				t.Fatalf("FromHeader(%q) = %+v with error %v", authz, p, err)
			}
			return
		}
		if !isToken68(p.Token) || !strings.EqualFold(authz, string(p.Scheme)+" "+p.Token) {
			t.Fatalf("FromHeader(%q) = %+v", authz, p)
		}
		if (p.Scheme == SchemeDPoP) != (p.DPoPProof != "") || p.Scheme == SchemeDPoP && p.DPoPProof != dpop {
			t.Fatalf("FromHeader(%q, DPoP %q) = %+v", authz, dpop, p)
		}
	})
}
