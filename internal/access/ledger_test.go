package access_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/identity"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// TestDecisionsFailClosedWhenTheLedgerFails runs the decision pipeline on
// the real audit ledger, in its own SQLite file, and breaks that database
// under it: decided actions are durable in the ledger while it works, and
// denied once it cannot write.
func TestDecisionsFailClosedWhenTheLedgerFails(t *testing.T) {
	t.Parallel()
	f := newFixture(t, fixtureOpts{})
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "ledger.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ledger, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	cls, err := policy.NewClassifier(policy.ClassifierConfig{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := access.New(access.Config{
		Verifier: f.verifier, Revocations: f.rev, Tasks: f.backend, Agents: f.backend,
		Engine: f.engine, Classifier: cls, Recorder: ledger,
	})
	if err != nil {
		t.Fatal(err)
	}
	tk := f.task(t, f.agent(t, "a", identity.TierAutonomous), taskOpts{scope: "*"})
	tok := f.token(t, tk)
	act := access.Action{Kind: "file.read", Resource: "/repo/a", Point: "hook", RequestID: "r1"}

	d, err := p.Decide(context.Background(), access.Credential{Token: tok}, act)
	if err != nil || d.Effect != policy.Allow {
		t.Fatalf("Decide() with the ledger up = %s, %v; want allow", d.Effect, err)
	}
	evs, err := ledger.Events(t.Context(), audit.Query{Task: string(tk.ID)})
	if err != nil || len(evs) != 1 {
		t.Fatalf("ledger events for the task = %v, %v; want the decision", evs, err)
	}
	if ev := evs[0]; ev.Type != audit.TypeActionDecided || ev.Decision != "allow" || ev.Action != "file.read" || ev.Point != "hook" || ev.RequestID != "r1" {
		t.Errorf("decision event = %+v", ev)
	}

	db.Close() // a real failure: the ledger's database is gone
	d, err = p.Decide(context.Background(), access.Credential{Token: tok}, act)
	if !isErr(err, audit.ErrUnavailable) || d.Effect != policy.Deny {
		t.Errorf("Decide() with the ledger down = %s, %v; want deny, audit.ErrUnavailable", d.Effect, err)
	}
}
