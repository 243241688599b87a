package store_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/store"
)

func ExampleOpen() {
	dir, err := os.MkdirTemp("", "mandate-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)

	ctx := context.Background()
	// The database file and its directory are created if missing.
	db, err := store.Open(ctx, "sqlite:"+filepath.Join(dir, "data", "mandate.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()

	_, err = db.GetAgent(ctx, identity.MustParseID("spiffe://example.org/agent/nobody"))
	fmt.Println(err)

	_, err = store.Open(ctx, "postgres://db.example/mandate")
	fmt.Println(err)
	// Output:
	// sqlite: get agent: agent not found: spiffe://example.org/agent/nobody
	// store: open: the PostgreSQL backend is not available yet; use a SQLite file path: unsupported operation
}
