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
// event, the first of a new store, records the anchor it replaces, and a
// checkpoint anchors the new ledger at once.
func (s *Server) checkAnchor(ctx context.Context, l *audit.Ledger) error {
	path := AnchorPath(s.cfg.DataDir)
	a, err := audit.ReadAnchor(path)
	if errors.Is(err, os.ErrNotExist) {
		if s.cfg.AcceptNewStore {
			s.log.Warn("accept_new_store is set but there is no ledger anchor to replace; unset it", "anchor", path)
		}
		return nil // the first start (the first checkpoint writes it)
	}
	var mismatch error
	if err != nil {
		mismatch = fmt.Errorf("%w: %v", audit.ErrAnchorMismatch, err)
	} else {
		mismatch = l.CheckAnchor(ctx, a)
	}
	if mismatch == nil {
		if s.cfg.AcceptNewStore {
			s.log.Warn("accept_new_store is set but the store continues its anchored ledger: nothing to accept; unset it",
				"anchor", path, "anchored_size", a.Size)
		}
		return nil
	}
	if !errors.Is(mismatch, audit.ErrAnchorMismatch) {
		return fmt.Errorf("check the store against the ledger anchor %s: %w", path, mismatch)
	}
	if !s.cfg.AcceptNewStore {
		return fmt.Errorf("refusing to start: the store %s does not continue the audit ledger anchored in %s: %w.\n"+
			"If the store was lost by accident, stop here and put back the right database (with its -ledger journal), "+
			"or restore a backup at least as recent as the anchor. To start over deliberately on this store, "+
			"run `mandate serve --accept-new-store` once: the new ledger's first event records the old anchor, "+
			"and the anchor is replaced (see docs/operations.md, \"The store is refused at start\")",
			redactDSN(s.cfg.Store), path, mismatch)
	}
	details := map[string]string{"anchor_file": path, "reason": mismatch.Error()}
	if a != nil {
		details["anchor_origin"] = a.Origin
		details["anchor_size"] = strconv.FormatInt(a.Size, 10)
		details["anchor_root"] = a.RootString()
		details["anchor_time"] = a.Time.Format(time.RFC3339)
	}
	if err := l.Record(ctx, audit.Event{Type: audit.TypeLedgerReset, Actor: "system", Point: "serve", Details: details}); err != nil {
		return fmt.Errorf("accept the new store: record the reset: %w", err)
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		return fmt.Errorf("accept the new store: anchor the new ledger: %w", err)
	}
	s.log.Warn("ACCEPTED A NEW STORE: the ledger anchored before was not continued; its size and root are recorded in this ledger's ledger.reset event; unset accept_new_store",
		"anchor", path, "reason", mismatch.Error())
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
