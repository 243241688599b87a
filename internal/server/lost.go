package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// LostMarkFile is the name of the mark the server writes in the data
// directory when it finds, while running, that its store was lost: its
// database file or ledger journal deleted or replaced under it (see
// sqlite.ErrLost). While the mark is there the server refuses to start,
// until `mandate serve --accept-new-store` records the reset in the
// ledger and removes it. Without the mark, a restart would serve
// whatever the path now holds — a new empty database, another store, a
// database rebuilt from a surviving journal — as if nothing had happened.
const LostMarkFile = "store.lost"

// LostMarkPath returns the path of the store.lost mark in dataDir.
func LostMarkPath(dataDir string) string { return filepath.Join(dataDir, LostMarkFile) }

// maxLostMark bounds what is read of a store.lost mark.
const maxLostMark = 64 << 10

// lostMark is the content of the store.lost file, JSON: when the loss was
// seen, of which store, why, and the ledger's last anchor before it.
type lostMark struct {
	Time   time.Time   `json:"time"`
	Store  string      `json:"store"`
	Reason string      `json:"reason"`
	Anchor *markAnchor `json:"anchor,omitempty"`
}

// markAnchor is the anchored checkpoint a lostMark names.
type markAnchor struct {
	Origin string `json:"origin"`
	Size   int64  `json:"size"`
	Root   string `json:"root"` // base64, as in the note
	Note   string `json:"note"` // the signed checkpoint note
}

// storeLost is the store's OnLost hook: it writes the store.lost mark
// (atomically) naming the last anchor the ledger wrote, or else the one
// in the anchor file. It runs once, on the goroutine that saw the loss.
func (s *Server) storeLost(reason error) {
	path := LostMarkPath(s.cfg.DataDir)
	m := lostMark{Time: time.Now().UTC(), Store: redactDSN(s.cfg.Store), Reason: reason.Error()}
	if l := s.lostLedger.Load(); l != nil {
		if cp := l.Anchored(); cp != nil {
			m.Anchor = &markAnchor{Origin: cp.Origin, Size: cp.Size, Root: (&audit.Anchor{Root: cp.Root}).RootString(), Note: string(cp.Note)}
		}
	}
	if m.Anchor == nil {
		if a, err := audit.ReadAnchor(AnchorPath(s.cfg.DataDir)); err == nil {
			m.Anchor = &markAnchor{Origin: a.Origin, Size: a.Size, Root: a.RootString(), Note: string(a.Note)}
		}
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err == nil {
		err = audit.WriteFileAtomic(path, append(b, '\n'))
	}
	if err != nil {
		s.log.Error("THE STORE WAS LOST, and the store.lost mark that stops the next start could not be written: "+
			"do not restart on this data directory before reading docs/operations.md", "mark", path, "err", err, "reason", reason)
		return
	}
	s.log.Error("THE STORE WAS LOST: changes are refused and decisions denied; the next start is refused until --accept-new-store (see docs/operations.md)",
		"mark", path, "reason", reason)
}

// readLostMark reads the store.lost mark at path. It returns nil, nil if
// there is none; a mark that cannot be read or parsed is returned with
// the error (it still stops the start).
func readLostMark(path string) (*lostMark, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return &lostMark{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLostMark))
	if err != nil {
		return &lostMark{}, err
	}
	var m lostMark
	if err := json.Unmarshal(b, &m); err != nil {
		return &lostMark{}, fmt.Errorf("%s is not a store.lost mark: %w", path, err)
	}
	return &m, nil
}

// checkLostMark refuses to start while the data directory holds a
// store.lost mark, unless AcceptNewStore says to start over. It returns
// the mark (nil if none) for checkAnchor to record and remove.
func (s *Server) checkLostMark() (*lostMark, error) {
	path := LostMarkPath(s.cfg.DataDir)
	m, err := readLostMark(path)
	if m == nil {
		return nil, nil
	}
	if s.cfg.AcceptNewStore {
		if err != nil {
			s.log.Warn("the store.lost mark cannot be read; accepting the new store anyway", "mark", path, "err", err)
		}
		return m, nil
	}
	what := fmt.Sprintf("at %s: %s", m.Time.Format(time.RFC3339), m.Reason)
	if err != nil {
		what = fmt.Sprintf("(the mark cannot be read: %v)", err)
	}
	return nil, fmt.Errorf("refusing to start: the store was lost while mandate was running %s.\n"+
		"Whatever is now at %s is not the store mandate was using. Stop here and put back the right database "+
		"(with its -ledger journal), or a backup at least as recent as the ledger anchor; or start over on a new store. "+
		"Then run `mandate serve --accept-new-store` once: the ledger records the reset (naming the last anchor before the loss) "+
		"and %s is removed (see docs/operations.md, \"The store was lost\")",
		what, redactDSN(s.cfg.Store), path)
}
