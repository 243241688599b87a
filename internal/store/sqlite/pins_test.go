package sqlite_test

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/store/sqlite"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// TestToolPinsReadOnly: a database that refuses writes refuses a pin in
// the class callers answer 503 for (see TestLostStore for a lost store).
func TestToolPinsReadOnly(t *testing.T) {
	t.Parallel()
	db := openTemp(t)
	ctx := t.Context()
	pin := &toolpin.Pin{Upstream: "fs", Tool: "read", Digest: "sha256-v2:1", Definition: json.RawMessage(`{"name":"read"}`)}
	if err := sqlite.WriterPragma(ctx, db, "query_only = ON"); err != nil {
		t.Fatal(err)
	}
	if err := db.PutPin(ctx, pin); !errors.Is(err, fault.ErrUnavailable) {
		t.Errorf("PutPin(read-only database) = %v, want fault.ErrUnavailable", err)
	}
	if _, err := db.GetPin(ctx, "fs", "read"); !errors.Is(err, toolpin.ErrNotFound) {
		t.Errorf("GetPin(refused pin) = %v, want ErrNotFound", err)
	}
}
