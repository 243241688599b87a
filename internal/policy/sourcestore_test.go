package policy_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// TestLoadersShareTheStore: two Loaders (two replicas) over one store. A
// document put by one side is live in the other after a poll, and so is
// its deletion.
func TestLoadersShareTheStore(t *testing.T) {
	t.Parallel()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var engines [2]*policy.Engine
	var loaders [2]*policy.Loader
	for i := range loaders {
		engines[i] = policy.NewEngine(nil, nil)
		loaders[i] = policy.NewLoader(policy.LoaderConfig{Engine: engines[i], API: db, Interval: 10 * time.Millisecond})
		if err := loaders[i].Reload(ctx); err != nil {
			t.Fatal(err)
		}
		go func() { _ = loaders[i].Run(ctx) }()
	}
	waitFor := func(eng *policy.Engine, n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for eng.Set().Len() != n {
			if time.Now().After(deadline) {
				t.Fatalf("the other loader has %d policies, want %d", eng.Set().Len(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	// Replica 0 checks and stores a document, as the admin API does.
	text := []byte(`@id("no-reads") forbid(principal, action == Action::"file.read", resource);`)
	if _, err := loaders[0].Candidate(ctx, policy.Source{Name: policy.SourceName("site"), Text: text}); err != nil {
		t.Fatal(err)
	}
	src, err := db.PutPolicySource(ctx, &policy.StoredSource{Name: "site", Text: text, UpdatedAt: time.Now(), UpdatedBy: "admin:alice"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(engines[1], 1)
	if got := engines[1].Set().Sources(); len(got) != 1 || got[0] != "api:site" {
		t.Errorf("replica 1 sources = %v, want [api:site]", got)
	}
	if err := db.DeletePolicySource(ctx, "site", src.Version); err != nil {
		t.Fatal(err)
	}
	waitFor(engines[1], 0)
	waitFor(engines[0], 0)
}
