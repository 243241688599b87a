package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// AnchorFile is the name of the ledger anchor in the data directory: the
// latest signed checkpoint, rewritten at every checkpoint (see
// audit.WriteAnchor), against which the store is checked at every start.
const AnchorFile = "ledger.anchor"

// AnchorPath returns the path of the ledger anchor in dataDir.
func AnchorPath(dataDir string) string { return filepath.Join(dataDir, AnchorFile) }

// checkAnchor refuses a store that does not continue the ledger anchored
// in the data directory (deleted, replaced, or restored from an older
// copy), unless AcceptNewStore says to start over: then the ledger's next
// event records the anchor it replaces, and a checkpoint anchors the new
// ledger at once. lost is the store.lost mark AcceptNewStore accepted
// (see checkLostMark), or nil: a store that was lost is reset whether or
// not it happens to continue the anchor, and the mark is removed once the
// reset is recorded and anchored.
func (s *Server) checkAnchor(ctx context.Context, l *audit.Ledger, lost *lostMark) error {
	path := AnchorPath(s.cfg.DataDir)
	a, err := audit.ReadAnchor(path)
	var mismatch error
	switch {
	case errors.Is(err, os.ErrNotExist):
		// The first start (the first checkpoint writes it), or the anchor
		// was deleted: the store is checked again from the next start on.
		a = nil
		if size, _, herr := l.Head(ctx); herr == nil && size > 0 {
			s.log.Warn("the ledger anchor is missing but the store holds a ledger: it is anchored again now; "+
				"if the anchor was not deleted on purpose, check that the store is the one you expect (see docs/operations.md)",
				"anchor", path, "ledger_size", size)
		}
	case err != nil:
		mismatch = fmt.Errorf("%w: %v", audit.ErrAnchorMismatch, err)
	default:
		mismatch = l.CheckAnchor(ctx, a)
	}
	if mismatch != nil && !errors.Is(mismatch, audit.ErrAnchorMismatch) {
		return fmt.Errorf("check the store against the ledger anchor %s: %w", path, mismatch)
	}
	if mismatch == nil && lost == nil {
		if s.cfg.AcceptNewStore {
			s.log.Warn("accept_new_store is set but there is nothing to accept: the store continues its anchored ledger (or there is no anchor yet); unset it",
				"anchor", path)
		}
		return nil
	}
	if !s.cfg.AcceptNewStore {
		return fmt.Errorf("refusing to start: the store %s does not continue the audit ledger anchored in %s: %w.\n"+
			"If the store was lost by accident, stop here and put back the right database (with its -ledger journal), "+
			"or restore a backup at least as recent as the anchor. To start over deliberately on this store, "+
			"run `mandate serve --accept-new-store` once: the new ledger's first event records the old anchor, "+
			"and the anchor is replaced (see docs/operations.md, \"The store is refused at start\")",
			redactDSN(s.cfg.Store), path, mismatch)
	}
	details := map[string]string{"anchor_file": path}
	if mismatch != nil {
		details["reason"] = mismatch.Error()
	}
	if a != nil {
		details["anchor_origin"] = a.Origin
		details["anchor_size"] = strconv.FormatInt(a.Size, 10)
		details["anchor_root"] = a.RootString()
		details["anchor_time"] = a.Time.Format(time.RFC3339)
	}
	if lost != nil {
		details["lost_mark"] = LostMarkPath(s.cfg.DataDir)
		details["lost_time"] = lost.Time.Format(time.RFC3339)
		details["lost_reason"] = lost.Reason
		if ma := lost.Anchor; ma != nil {
			// The last anchor before the loss is the one being replaced.
			details["anchor_origin"] = ma.Origin
			details["anchor_size"] = strconv.FormatInt(ma.Size, 10)
			details["anchor_root"] = ma.Root
		}
		if mismatch == nil {
			details["reason"] = "the store was lost while mandate was running; the operator accepted the store now in place"
		}
	}
	if err := l.Record(ctx, audit.Event{Type: audit.TypeLedgerReset, Actor: "system", Point: "serve", Details: details}); err != nil {
		return fmt.Errorf("accept the new store: record the reset: %w", err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		return fmt.Errorf("accept the new store: anchor the new ledger: %w", err)
	}
	if lost != nil {
		mark := LostMarkPath(s.cfg.DataDir)
		if err := os.Remove(mark); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("accept the new store: remove %s: %w", mark, err)
		}
		if err := audit.SyncDir(s.cfg.DataDir); err != nil {
			return fmt.Errorf("accept the new store: remove %s: %w", mark, err)
		}
	}
	s.log.Warn("ACCEPTED A NEW STORE: the ledger's ledger.reset event records the anchor it replaces and why; unset accept_new_store",
		"anchor", path, "reason", details["reason"])
	return nil
}

// readyReason is what /readyz tells about a store that fails its ping:
// enough to act on, without the paths and causes that go to the log.
func readyReason(err error) string {
	switch {
	case errors.Is(err, sqlite.ErrLost):
		return "store lost: its database file or ledger journal was deleted or replaced while in use; " +
			"decisions are denied and changes refused until the server is restarted on a good store (see docs/operations.md)"
	case errors.Is(err, fault.ErrUnavailable):
		return "store unavailable: the disk may be full, the database read-only or locked (see the server log)"
	}
	return "store unavailable (see the server log)"
}
