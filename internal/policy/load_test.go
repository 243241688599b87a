package policy

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func write(t *testing.T, path, text string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

func TestLoaderReload(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "a.cedar"), `@id("reads") permit(principal, action == Action::"file.read", resource);`)
	write(t, filepath.Join(dir, "sub", "b.cedar"), `@id("writes") permit(principal, action == Action::"file.write", resource);`)
	write(t, filepath.Join(dir, "notes.txt"), `not a policy`)
	eng := NewEngine(nil, nil)
	l := NewLoader(LoaderConfig{Engine: eng, Dir: dir, Interval: 10 * time.Millisecond})
	ctx := context.Background()
	if err := l.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if got := eng.Set().Len(); got != 2 {
		t.Fatalf("loaded %d policies, want 2", got)
	}
	r := baseRequest(TierAutonomous, ActionFileRead, RiskRead, true)
	if d, _ := eng.Decide(r); d.Effect != Allow {
		t.Fatalf("Decide = %+v", d)
	}

	// An invalid change keeps the last good set and says where.
	write(t, filepath.Join(dir, "a.cedar"), "@id(\"reads\") permit(principal, action == Action::\"file.read\", resource);\nforbid(principal, action, resource) when { context.nope };\n")
	err := l.Reload(ctx)
	var ce *CompileError
	if !errors.As(err, &ce) || !strings.Contains(err.Error(), "a.cedar:2:1:") {
		t.Fatalf("Reload(invalid) = %v, want a CompileError at a.cedar:2:1", err)
	}
	if eng.Set().Len() != 2 {
		t.Error("the live set changed after an invalid reload")
	}
	if _, last := l.Status(); last == nil {
		t.Error("Status does not report the failed reload")
	}

	// A fixed file and a new one.
	write(t, filepath.Join(dir, "c.cedar"), `@id("no-secrets") forbid(principal, action == Action::"file.read", resource == File::"/secret");`)
	write(t, filepath.Join(dir, "a.cedar"), `@id("reads") permit(principal, action == Action::"file.read", resource);`)

	// Run picks up the change by polling.
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(runCtx) }()
	deadline := time.Now().Add(5 * time.Second)
	for eng.Set().Len() != 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	if eng.Set().Len() != 3 {
		t.Fatalf("after polling: %d policies, want 3", eng.Set().Len())
	}
	r.Resource.ID = "/secret"
	if d, _ := eng.Decide(r); d.Effect != Deny || d.Reasons[0].Policy != "no-secrets" {
		t.Errorf("Decide(/secret) = %+v", d)
	}
}

// TestReloadWhileDeciding: decisions keep flowing, and every one sees
// a whole set (old or new), while 1,000 policies are reloaded.
func TestReloadWhileDeciding(t *testing.T) {
	t.Parallel()
	srcs := genPolicies(1000)
	set, err := Compile(srcs)
	if err != nil {
		t.Fatal(err)
	}
	eng := NewEngine(set, nil)
	var stop atomic.Bool
	var wg sync.WaitGroup
	var decided atomic.Int64
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := benchRequest()
			for !stop.Load() {
				if d, err := eng.Decide(r); err != nil || d.Effect == "" {
					t.Errorf("Decide during reload: %+v, %v", d, err)
					return
				}
				decided.Add(1)
			}
		}()
	}
	for range 3 {
		s, err := Compile(srcs)
		if err != nil {
			t.Fatal(err)
		}
		eng.Swap(s)
	}
	stop.Store(true)
	wg.Wait()
	if decided.Load() == 0 {
		t.Error("no decisions were made during the reloads")
	}
}

// TestCompilerCache: a Compiler reuses unchanged sources, still reports
// their problems, and sees changes.
func TestCompilerCache(t *testing.T) {
	t.Parallel()
	var c Compiler
	good := Source{Name: "a.cedar", Text: []byte(`@id("a") permit(principal, action == Action::"file.read", resource);`)}
	bad := Source{Name: "b.cedar", Text: []byte(`forbid(principal, action, resource) when { context.nope };`)}
	for range 2 {
		if _, err := c.Compile([]Source{good, bad}); err == nil || !strings.Contains(err.Error(), "b.cedar:1:1") {
			t.Fatalf("Compile with a bad source = %v", err)
		}
	}
	set, err := c.Compile([]Source{good})
	if err != nil || set.Len() != 1 {
		t.Fatalf("Compile(good) = %v, %v", set, err)
	}
	a1 := set.byID["a"].policy
	set, _ = c.Compile([]Source{good})
	if set.byID["a"].policy != a1 {
		t.Error("an unchanged source was parsed again")
	}
	changed := Source{Name: "a.cedar", Text: []byte(`@id("a2") permit(principal, action == Action::"file.write", resource);`)}
	set, err = c.Compile([]Source{changed})
	if err != nil || set.byID["a2"] == nil || set.byID["a"] != nil {
		t.Fatalf("after a change: %v, %v", set.Policies(), err)
	}
	if len(c.cache) != 1 {
		t.Errorf("cache holds %d sources, want 1", len(c.cache))
	}
}
