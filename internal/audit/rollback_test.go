package audit_test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
)

// TestLedgerRefusesRollbackUnderIt removes the newest events from the
// store of a running ledger together with everything that would name them
// (their tree hashes and the checkpoints covering them), as an operator
// with the database but not the process can. The store alone then looks
// like a consistent, shorter ledger; the ledger that signed the removed
// events must say so, and must not append (and later sign) a second
// history on top of the truncated one.
func TestLedgerRefusesRollbackUnderIt(t *testing.T) {
	t.Parallel()
	for _, keep := range []int64{6, 0} {
		t.Run(fmt.Sprintf("keep %d", keep), func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, audit.LedgerConfig{})
			e.fill(t, 6)
			if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
			e.fill(t, 6)
			if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
			raw := e.raw(t)
			var blob []byte
			if err := raw.QueryRow(`SELECT hashes FROM ledger_hashes WHERE start = 0`).Scan(&blob); err != nil {
				t.Fatal(err)
			}
			for _, q := range []string{
				`DELETE FROM events WHERE seq > ?`,
				`DELETE FROM ledger_checkpoints WHERE size > ?`,
				`DELETE FROM ledger_hashes`,
			} {
				e.exec(t, q, keep)
			}
			if keep > 0 {
				n := tlog.StoredHashCount(keep)
				e.exec(t, `INSERT INTO ledger_hashes (start, size, hashes) VALUES (0, ?, ?)`, keep, blob[:n*tlog.HashSize])
			}

			rep, err := e.ledger.Verify(t.Context())
			if err != nil {
				t.Fatalf("Verify() = %v, want a report", err)
			}
			if rep.OK() {
				t.Fatalf("Verify() after removing events %d to 12 = OK (%d events), want a problem", keep+1, rep.Events)
			}
			if rep.FirstBadSeq != keep+1 || !strings.Contains(fmt.Sprint(rep.Problems), "removed") {
				t.Errorf("Verify() = first bad seq %d, problems %v; want seq %d, saying events were removed", rep.FirstBadSeq, rep.Problems, keep+1)
			}
			if cp, err := e.ledger.Checkpoint(t.Context()); !errors.Is(err, audit.ErrRolledBack) {
				t.Errorf("Checkpoint() on the rolled-back store = %v, %v; want ErrRolledBack", cp, err)
			}
			// An event recorded now goes on the tree the ledger recorded
			// (seq 13), never on the shorter one; the store cannot take
			// it, so nothing is signed or verified as good afterwards.
			_ = e.ledger.Record(t.Context(), event(99))
			if cp, err := e.ledger.Checkpoint(t.Context()); err == nil {
				t.Errorf("Checkpoint() after recording on the rolled-back store = size %d, want an error", cp.Size)
			}
			if rep, err := e.ledger.Verify(t.Context()); err == nil && rep.OK() {
				t.Errorf("Verify() after recording on the rolled-back store = OK, want a problem or an error")
			}
		})
	}
}

// TestVerifyChecksTheCheckpointsKeptOutsideTheStore rewrites the newest
// events, recomputes every tree hash and deletes the checkpoints that
// covered the old ones: the store alone is a consistent ledger of the
// same size. The checkpoint the ledger signed last, which it keeps in
// memory and in its anchor file, must still expose the rewrite — in this
// process, and in a new one that only has the anchor file.
func TestVerifyChecksTheCheckpointsKeptOutsideTheStore(t *testing.T) {
	t.Parallel()
	anchor := filepath.Join(t.TempDir(), "ledger.anchor")
	e := newEnv(t, audit.LedgerConfig{AnchorFile: anchor})
	e.fill(t, 6)
	if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.fill(t, 6)
	if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
		t.Fatal(err)
	}
	e.exec(t, `UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'f9.go', 'f9-evil.go') AS BLOB) WHERE seq = 10`)
	rehash(t, e)
	e.exec(t, `DELETE FROM ledger_checkpoints WHERE size > 6`)
	check := func(t *testing.T, l *audit.Ledger) {
		t.Helper()
		rep, err := l.Verify(t.Context())
		if err != nil {
			t.Fatalf("Verify() = %v", err)
		}
		if rep.OK() {
			t.Fatalf("Verify() after rewriting event 10 and deleting checkpoint 12 = OK, want a problem")
		}
		if rep.FirstBadSeq != 7 || !strings.Contains(fmt.Sprint(rep.Problems), "do not hash to this signed checkpoint's root") {
			t.Errorf("Verify() = first bad seq %d, problems %v; want seq 7, against the checkpoint of size 12", rep.FirstBadSeq, rep.Problems)
		}
	}
	t.Run("this process", func(t *testing.T) { check(t, e.ledger) })
	t.Run("a new process with the anchor file", func(t *testing.T) {
		l, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: e.db, Sealer: sealtest.Keyring(), AnchorFile: anchor, CheckpointInterval: -1})
		if err != nil {
			t.Fatal(err)
		}
		check(t, l)
	})
}
