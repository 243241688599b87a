package web

import (
	"fmt"
	"strings"
	"testing"
)

func TestDiffArguments(t *testing.T) {
	rows, more, err := diffArguments([]byte(`{"env":"staging","n":1,"old":true,"deep":{"a":[1,2]}}`),
		[]byte(` { "deep" : {"a":[1,2]}, "env":"prod","n":1.0,"new":null}`))
	if err != nil || more {
		t.Fatal(err, more)
	}
	var got []string
	for _, r := range rows {
		got = append(got, r.Key+" "+r.Kind+" "+r.Was+" "+r.Now)
	}
	want := []string{
		`deep same {"a":[1,2]} {"a":[1,2]}`, // key order and spaces make no difference
		`env changed "staging" "prod"`,
		`n changed 1 1.0`, // numbers as written: what the tool gets
		`new added  null`,
		`old removed true `,
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("diff:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestDiffArgumentsNotObjects(t *testing.T) {
	rows, _, err := diffArguments([]byte(`[1]`), []byte(`{"a":1}`))
	if err != nil || len(rows) != 2 || rows[0].Key != "" || rows[0].Kind != diffRemoved || rows[1].Key != "a" {
		t.Errorf("array against object: %+v %v", rows, err)
	}
	for _, bad := range []string{``, `{`, `{"a":1}x`, `{"a":1} {"b":2}`, "\xff"} {
		if _, _, err := diffArguments([]byte(bad), []byte(`{}`)); err == nil {
			t.Errorf("%q was diffed, want refused", bad)
		}
		if _, _, err := diffArguments([]byte(`{}`), []byte(bad)); err == nil {
			t.Errorf("%q was diffed, want refused", bad)
		}
	}
}

func TestDiffArgumentsBounded(t *testing.T) {
	var b strings.Builder
	b.WriteString("{")
	for i := range maxDiffRows + 10 {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, `"k%04d":%d`, i, i)
	}
	b.WriteString("}")
	rows, more, err := diffArguments([]byte(`{}`), []byte(b.String()))
	if err != nil || !more || len(rows) != maxDiffRows {
		t.Errorf("%d rows, more %v, %v", len(rows), more, err)
	}
}

// FuzzArgumentsDiff: any input either is refused or gives rows sorted by
// unique key, each of the kind its values say; a value diffed with itself
// is all same.
func FuzzArgumentsDiff(f *testing.F) {
	f.Add([]byte(`{"env":"staging"}`), []byte(`{"env":"prod"}`))
	f.Add([]byte(`{"a":{"b":[1,{"c":null}]},"d":"\u00e9"}`), []byte(`{"d":"é","a":{"b":[1,{"c":null}]}}`))
	f.Add([]byte(`"x"`), []byte(`{"":1}`))
	f.Add([]byte(`{"a":1,"a":2}`), []byte(`{}`))
	f.Fuzz(func(t *testing.T, was, now []byte) {
		rows, _, err := diffArguments(was, now)
		if err != nil {
			return
		}
		for i, r := range rows {
			if i > 0 && rows[i-1].Key >= r.Key {
				t.Fatalf("rows not sorted by unique key: %q then %q", rows[i-1].Key, r.Key)
			}
			switch r.Kind {
			case diffSame:
				if r.Was != r.Now {
					t.Fatalf("same with %q and %q", r.Was, r.Now)
				}
			case diffChanged:
				if r.Was == r.Now || r.Was == "" || r.Now == "" {
					t.Fatalf("changed with %q and %q", r.Was, r.Now)
				}
			case diffAdded:
				if r.Was != "" || r.Now == "" {
					t.Fatalf("added with %q and %q", r.Was, r.Now)
				}
			case diffRemoved:
				if r.Now != "" || r.Was == "" {
					t.Fatalf("removed with %q and %q", r.Was, r.Now)
				}
			default:
				t.Fatalf("kind %q", r.Kind)
			}
		}
		self, _, err := diffArguments(now, now)
		if err != nil {
			t.Fatalf("now diffed with was but not with itself: %v", err)
		}
		for _, r := range self {
			if r.Kind != diffSame {
				t.Fatalf("a value differs from itself at %q", r.Key)
			}
		}
	})
}

func BenchmarkDiffArguments(b *testing.B) {
	was := []byte(`{"env":"staging","replicas":3,"image":"registry.example/app:1.4.2","labels":{"team":"payments","tier":"web"},"dry_run":false}`)
	now := []byte(`{"env":"prod","replicas":5,"image":"registry.example/app:1.4.3","labels":{"team":"payments","tier":"web"},"force":true}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := diffArguments(was, now); err != nil {
			b.Fatal(err)
		}
	}
}
