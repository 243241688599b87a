package audit

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"golang.org/x/mod/sumdb/tlog"
)

// The anchor is the ledger's latest signed checkpoint kept outside the
// store, in a file the ledger rewrites (atomically) at every checkpoint.
// A store that does not continue the anchored tree — deleted, replaced by
// another database, or restored from an older copy — is then seen when
// the server starts, instead of a silent start on an empty or shorter
// ledger (see CheckAnchor).
//
// The file holds the signed note exactly as Checkpoint returns it: the
// C2SP checkpoint body (origin, tree size, root hash) and its signature
// lines.

// ErrAnchorMismatch is returned by CheckAnchor when the store does not
// continue the anchored ledger.
var ErrAnchorMismatch = errors.New("the store does not continue the anchored ledger")

// ErrRolledBack is returned (wrapped, with the sizes) by every append,
// checkpoint and read of the tree head once the store holds fewer events
// than this ledger has already seen in it: events were removed behind
// mandate's back, or an older copy of the database was put in place while
// it ran. The ledger never carries on from the shorter tree, which would
// append, sign and anchor a second history over the removed one.
var ErrRolledBack = errors.New("the audit ledger's store holds fewer events than this ledger recorded")

// Anchor is a checkpoint read from an anchor file.
type Anchor struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Note is the signed note as read.
	Note []byte
	// Time is when the file was last written.
	Time time.Time
}

// ReadAnchor reads the anchor file at path. It returns an error wrapping
// os.ErrNotExist if there is none, and an error saying what is wrong with
// a file that does not hold a checkpoint note. Its signature is not
// checked here (the key may be gone with the store); CheckAnchor does.
func ReadAnchor(path string) (*Anchor, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("ledger anchor: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("ledger anchor: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxCheckpointSize+1))
	if err != nil {
		return nil, fmt.Errorf("ledger anchor: %w", err)
	}
	a, err := ParseAnchor(b)
	if err != nil {
		return nil, fmt.Errorf("ledger anchor %s: %w", path, err)
	}
	a.Time = st.ModTime().UTC()
	return a, nil
}

// ParseAnchor parses the contents of an anchor file: a signed checkpoint
// note, at most MaxCheckpointSize bytes, whose text is a C2SP checkpoint
// and which carries at least one signature line.
func ParseAnchor(b []byte) (*Anchor, error) {
	if len(b) > MaxCheckpointSize {
		return nil, fmt.Errorf("%d bytes is over the %d-byte limit of a checkpoint", len(b), MaxCheckpointSize)
	}
	text, sigs, ok := bytes.Cut(b, []byte("\n\n"))
	if !ok || len(sigs) == 0 || !bytes.HasPrefix(sigs, []byte("— ")) || !bytes.HasSuffix(sigs, []byte("\n")) {
		return nil, errors.New("not a signed checkpoint note (want the checkpoint, a blank line and signature lines)")
	}
	origin, size, root, err := ParseCheckpointBody(string(text) + "\n")
	if err != nil {
		return nil, err
	}
	return &Anchor{Origin: origin, Size: size, Root: root, Note: bytes.Clone(b)}, nil
}

// RootString returns the anchored root hash in base64, as in the note.
func (a *Anchor) RootString() string { return base64.StdEncoding.EncodeToString(a.Root[:]) }

// WriteAnchor replaces the anchor file at path with cp's signed note,
// atomically (see WriteFileAtomic).
func WriteAnchor(path string, cp *Checkpoint) error {
	if err := WriteFileAtomic(path, cp.Note); err != nil {
		return fmt.Errorf("ledger anchor: %w", err)
	}
	return nil
}

// WriteFileAtomic replaces the file at path with data (mode 0600),
// atomically: a temporary file in the same directory is written and
// synced, renamed over path, and the directory is synced, so that a crash
// leaves the old file or the new one, never a torn file. The ledger
// anchor is written with it, and so is the server's store.lost mark.
func WriteFileAtomic(path string, data []byte) (err error) {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	return SyncDir(dir)
}

// SyncDir makes a rename or removal in dir durable. Windows cannot sync
// a directory (and makes renames durable itself), so there it does
// nothing.
func SyncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// CheckAnchor reports whether the store continues the anchored ledger: its
// tree has at least a.Size leaves, its root at that size is a.Root, and
// the anchor is signed by the ledger's key. Otherwise it returns an error
// wrapping ErrAnchorMismatch that says which.
func (l *Ledger) CheckAnchor(ctx context.Context, a *Anchor) error {
	size, _, err := l.Head(ctx)
	if err != nil {
		return fmt.Errorf("audit: check anchor: %w", err)
	}
	switch {
	case size == 0:
		return fmt.Errorf("%w: the ledger is empty, but the anchor shows %d events (root %s): the store was deleted or replaced by a new one",
			ErrAnchorMismatch, a.Size, a.RootString())
	case size < a.Size:
		return fmt.Errorf("%w: the ledger has %d events, but the anchor shows %d (root %s): events were removed, or the store was restored from an older copy",
			ErrAnchorMismatch, size, a.Size, a.RootString())
	}
	root, err := tlog.TreeHash(a.Size, l.storeReader(ctx))
	if err != nil {
		return fmt.Errorf("audit: check anchor: %w", err)
	}
	if root != a.Root {
		return fmt.Errorf("%w: the ledger's root at %d events is %s, but the anchor's is %s: the store holds another ledger, or its history was rewritten",
			ErrAnchorMismatch, a.Size, base64.StdEncoding.EncodeToString(root[:]), a.RootString())
	}
	if _, err := parseCheckpoint(a.Note, l.verifier); err != nil {
		return fmt.Errorf("%w: the anchor is not a checkpoint of this ledger's key: %v", ErrAnchorMismatch, err)
	}
	return nil
}

// anchor remembers cp as the largest checkpoint signed (for Verify), and
// rewrites the anchor file with cp unless it already holds a
// checkpoint at least as large. A failure is logged and retried at the
// next checkpoint: the checkpoint itself is stored either way.
func (l *Ledger) anchor(cp *Checkpoint) {
	l.amu.Lock()
	defer l.amu.Unlock()
	if l.signed == nil || cp.Size > l.signed.Size {
		l.signed = cp
	}
	if l.cfg.AnchorFile == "" {
		return
	}
	if cp.Size <= l.anchored {
		return
	}
	if err := WriteAnchor(l.cfg.AnchorFile, cp); err != nil {
		l.log.Error("the ledger anchor could not be written; a lost store would not be seen at the next start", "file", l.cfg.AnchorFile, "err", err)
		return
	}
	l.anchored, l.anchorCP = cp.Size, cp
}

// Anchored returns the checkpoint this ledger last wrote to its
// AnchorFile, or nil if it wrote none since it was opened. It needs no
// store: the server records it when the store is lost.
func (l *Ledger) Anchored() *Checkpoint {
	l.amu.Lock()
	defer l.amu.Unlock()
	return l.anchorCP
}

// outsideCheckpoints returns the checkpoints this ledger holds outside its
// store: the largest one it signed since it was opened, and the one in its
// anchor file. A store rewritten together with its stored checkpoints
// still has to match them. An anchor file that does not parse or is not
// signed by the current key (it may predate a key change; the start
// checks it strictly) is only noted.
func (l *Ledger) outsideCheckpoints(rep *Report) []*Checkpoint {
	var out []*Checkpoint
	l.amu.Lock()
	if l.signed != nil {
		out = append(out, l.signed)
	}
	l.amu.Unlock()
	if l.cfg.AnchorFile == "" {
		return out
	}
	a, err := ReadAnchor(l.cfg.AnchorFile)
	if errors.Is(err, os.ErrNotExist) {
		return out
	}
	if err == nil {
		var c *Checkpoint
		if c, err = parseCheckpoint(a.Note, l.verifier); err == nil {
			return append(out, c)
		}
	}
	rep.Notes = append(rep.Notes, fmt.Sprintf("the anchor file %s was not checked: %v", l.cfg.AnchorFile, err))
	return out
}
