package policy

import (
	"testing"
)

func mustDefaults(t testing.TB) *Set {
	t.Helper()
	set, err := Compile(DefaultSources())
	if err != nil {
		t.Fatalf("Compile(defaults): %v", err)
	}
	return set
}

// TestDefaultPolicyTests runs the default set's shipped YAML tests through
// the same code path as `mandate policy test`.
func TestDefaultPolicyTests(t *testing.T) {
	t.Parallel()
	set := mustDefaults(t)
	results, err := RunTests(set, Defaults())
	if err != nil {
		t.Fatal(err)
	}
	if len(results) == 0 {
		t.Fatal("no default policy tests ran")
	}
	for _, r := range results {
		if !r.Pass {
			t.Errorf("%s: %s: %s (reasons %+v, errors %v)", r.File, r.Name, r.Problems, r.Got.Reasons, r.Got.Errors)
		}
	}
}

func TestDefaultTestsCount(t *testing.T) {
	results, err := RunTests(mustDefaults(t), Defaults())
	if err != nil || len(results) < 19 {
		t.Fatalf("RunTests = %d results, %v; want at least 19", len(results), err)
	}
}
