package audit_test

import (
	"bytes"
	"context"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// A ledger on SQLite: record events, sign a checkpoint, prove one event is
// in it, and verify an export offline against the checkpoint and the
// ledger's public key.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "ledger-example-")
	defer os.RemoveAll(dir)
	db, err := sqlite.Open(ctx, filepath.Join(dir, "mandate.db"))
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	ledger, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), Origin: "example.org/audit"})
	if err != nil {
		log.Fatal(err)
	}

	// Record returns once the event is durable; an error means the action
	// must be refused.
	for _, res := range []string{"file:/repo/a.go", "file:/repo/b.go", "file:/etc/passwd"} {
		ev := audit.Event{Type: audit.TypeActionDecided, Agent: "spiffe://example.org/agent/bot",
			Action: "file.read", Resource: res, Decision: audit.DecisionAllow, Point: "hook"}
		// Arguments are kept as a keyed digest.
		if err := ledger.Redactor().Arguments(&ev, []byte(`{"path":"`+res+`"}`), false); err != nil {
			log.Fatal(err)
		}
		if err := ledger.Record(ctx, ev); err != nil {
			log.Fatal(err)
		}
	}

	cp, err := ledger.Checkpoint(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("checkpoint of %d events by %s\n", cp.Size, cp.Origin)

	proof, err := ledger.ProveInclusion(ctx, 3, cp.Size)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("event 3 included:", proof.Check(cp.Root) == nil)

	var export bytes.Buffer
	if _, err := ledger.Export(ctx, &export); err != nil {
		log.Fatal(err)
	}
	rep, err := audit.VerifyExport(&export, [][]byte{cp.Note}, ledger.VerifierKey())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("export verifies:", rep.OK(), rep.Events, "events")
	// Output:
	// checkpoint of 3 events by example.org/audit
	// event 3 included: true
	// export verifies: true 3 events
}
