package policy

import (
	"fmt"
	"strings"
	"testing"

	cedar "github.com/cedar-policy/cedar-go"
	"github.com/google/go-cmp/cmp"
)

// TestParseSourceMatchesWhole: parsing a large source in pieces gives the
// same policies, in the same order, at the same positions, as parsing it
// whole — with ";" and "//" inside strings and comments.
func TestParseSourceMatchesWhole(t *testing.T) {
	t.Parallel()
	var b strings.Builder
	for i := range 400 {
		fmt.Fprintf(&b, "// policy %d; a comment with a \"quote and a ; semicolon\n", i)
		fmt.Fprintf(&b, "@id(\"p%d\") @reason(\"semi; colon // not a comment \\\" still a string;\")\n", i)
		fmt.Fprintf(&b, "permit(principal, action == Action::\"tool.call\", resource == Tool::\"s/t%d;x\") when { context.command like \"*;*\" };", i)
		if i%3 == 0 {
			b.WriteString(" forbid(principal, action, resource) when { context.risk == \";\" };")
		}
		b.WriteString("\n")
	}
	text := []byte(b.String())
	if len(text) < parallelParseMin {
		t.Fatalf("test source is only %d bytes", len(text))
	}
	whole, err := cedar.NewPolicyListFromBytes("f.cedar", text)
	if err != nil {
		t.Fatal(err)
	}
	if cuts := splitPolicies(text, 4); len(cuts) != 4 {
		t.Fatalf("splitPolicies made %d pieces, want 4", len(cuts))
	}
	got, err := parseSource("f.cedar", text)
	if err != nil {
		t.Fatal(err)
	}
	describe := func(l cedar.PolicyList) []string {
		var out []string
		for _, p := range l {
			out = append(out, fmt.Sprintf("%v %v %s", p.Position(), p.Annotations(), p.MarshalCedar()))
		}
		return out
	}
	if diff := cmp.Diff(describe(whole), describe(got)); diff != "" {
		t.Errorf("parseSource differs from a whole parse (-whole +pieces):\n%s", diff)
	}

	// A parse error is reported exactly as a whole parse reports it.
	bad := append(append([]byte{}, text...), []byte("\npermit(principal, action,\n")...)
	_, werr := cedar.NewPolicyListFromBytes("f.cedar", bad)
	_, perr := parseSource("f.cedar", bad)
	if werr == nil || perr == nil || werr.Error() != perr.Error() {
		t.Errorf("parse errors differ: whole %v, pieces %v", werr, perr)
	}
}

// FuzzParseSource: a source big enough to be parsed in pieces (the input
// repeated) parses exactly as it does whole.
func FuzzParseSource(f *testing.F) {
	for _, s := range DefaultSources() {
		f.Add(string(s.Text))
	}
	f.Add(`@id("a;b") permit(principal, action, resource) when { context.command like "*;//*" }; // ; "`)
	f.Add(`permit(principal, action, resource) when { "\";" == context.command };`)
	f.Add(`forbid(principal, action, resource); "unterminated ;`)
	f.Fuzz(func(t *testing.T, s string) {
		if len(s) == 0 || len(s) > 4096 {
			return
		}
		text := []byte(strings.Repeat(s+"\n", parallelParseMin/(len(s)+1)+1))
		whole, werr := cedar.NewPolicyListFromBytes("f.cedar", text)
		got, perr := parseSource("f.cedar", text)
		if (werr == nil) != (perr == nil) || werr != nil && werr.Error() != perr.Error() {
			t.Fatalf("errors differ: whole %v, pieces %v", werr, perr)
		}
		if len(whole) != len(got) {
			t.Fatalf("whole parse has %d policies, pieces %d", len(whole), len(got))
		}
		for i := range whole {
			if whole[i].Position() != got[i].Position() || string(whole[i].MarshalCedar()) != string(got[i].MarshalCedar()) {
				t.Fatalf("policy %d differs: %v %s / %v %s", i, whole[i].Position(), whole[i].MarshalCedar(), got[i].Position(), got[i].MarshalCedar())
			}
		}
	})
}
