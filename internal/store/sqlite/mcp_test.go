package sqlite_test

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
)

func TestToolPins(t *testing.T) {
	t.Parallel()
	db := openTemp(t)
	ctx := t.Context()
	if _, err := db.GetPin(ctx, "fs", "read"); !errors.Is(err, mcpproxy.ErrPinNotFound) {
		t.Fatalf("GetPin(unknown) = %v, want ErrPinNotFound", err)
	}
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	b := &mcpproxy.Pin{Upstream: "fs", Tool: "write", Digest: "sha256:1", Definition: []byte(`{"name":"write"}`), PinnedAt: now, UpdatedAt: now}
	a := &mcpproxy.Pin{Upstream: "fs", Tool: "read", Digest: "sha256:2", Definition: []byte(`{"name":"read"}`), PinnedAt: now, UpdatedAt: now}
	for _, p := range []*mcpproxy.Pin{b, a} {
		if err := db.PutPin(ctx, p); err != nil {
			t.Fatal(err)
		}
	}
	// Quarantine, then approve: upserts.
	q := *b
	q.PendingDigest, q.PendingDefinition, q.UpdatedAt = "sha256:3", []byte(`{"name":"write","description":"x"}`), now.Add(time.Hour)
	if err := db.PutPin(ctx, &q); err != nil {
		t.Fatal(err)
	}
	got, err := db.GetPin(ctx, "fs", "write")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&q, got); diff != "" {
		t.Errorf("GetPin after quarantine (-want +got):\n%s", diff)
	}
	ap := q
	ap.Digest, ap.Definition, ap.PendingDigest, ap.PendingDefinition, ap.ApprovedBy = q.PendingDigest, q.PendingDefinition, "", nil, "admin:local"
	if err := db.PutPin(ctx, &ap); err != nil {
		t.Fatal(err)
	}
	list, err := db.ListPins(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]*mcpproxy.Pin{a, &ap}, list); diff != "" {
		t.Errorf("ListPins (-want +got):\n%s", diff)
	}
}
