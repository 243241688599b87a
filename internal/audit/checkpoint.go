package audit

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// MaxCheckpointSize is the largest signed checkpoint ParseCheckpoint reads.
const MaxCheckpointSize = 16 << 10

// Checkpoint is a signed statement of the ledger's tree: the C2SP
// checkpoint format (https://c2sp.org/tlog-checkpoint) — origin line,
// decimal tree size, base64 root hash — as a signed note
// (https://c2sp.org/signed-note) with an Ed25519 signature.
type Checkpoint struct {
	Origin string
	Size   int64
	Root   tlog.Hash
	// Note is the signed note: the checkpoint body, a blank line and the
	// signature lines.
	Note []byte
}

// Body returns the checkpoint's unsigned text.
func (c *Checkpoint) Body() string {
	return fmt.Sprintf("%s\n%d\n%s\n", c.Origin, c.Size, base64.StdEncoding.EncodeToString(c.Root[:]))
}

// ParseCheckpointBody parses the text of a C2SP checkpoint (the note's
// signed text), ignoring extension lines.
func ParseCheckpointBody(text string) (origin string, size int64, root tlog.Hash, err error) {
	lines := strings.SplitAfter(text, "\n")
	if len(lines) < 4 || !strings.HasSuffix(text, "\n") {
		return "", 0, root, errors.New("checkpoint: want origin, size and root hash lines")
	}
	origin = strings.TrimSuffix(lines[0], "\n")
	if origin == "" {
		return "", 0, root, errors.New("checkpoint: empty origin")
	}
	sz := strings.TrimSuffix(lines[1], "\n")
	size, err = strconv.ParseInt(sz, 10, 64)
	if err != nil || size < 0 || strconv.FormatInt(size, 10) != sz {
		return "", 0, root, fmt.Errorf("checkpoint: tree size %q is not a decimal number", sz)
	}
	h, err := base64.StdEncoding.DecodeString(strings.TrimSuffix(lines[2], "\n"))
	if err != nil || len(h) != tlog.HashSize {
		return "", 0, root, errors.New("checkpoint: root hash is not 32 bytes of base64")
	}
	copy(root[:], h)
	return origin, size, root, nil
}

// ParseCheckpoint verifies a signed checkpoint note against the ledger's
// public key (note verifier format) and parses it. A signature by another
// key, an invalid signature, or an origin other than the key's name is an
// error that says which.
func ParseCheckpoint(msg []byte, vkey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w", err)
	}
	return parseCheckpoint(msg, v)
}

func parseCheckpoint(msg []byte, v note.Verifier) (*Checkpoint, error) {
	if len(msg) > MaxCheckpointSize {
		return nil, fmt.Errorf("checkpoint is %d bytes, over the %d-byte limit", len(msg), MaxCheckpointSize)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("checkpoint signature is invalid: %v", err)
		case errors.As(err, &unverified):
			var names []string
			for _, s := range unverified.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return nil, fmt.Errorf("checkpoint is not signed by the ledger key %s+%08x (signed by %s)", v.Name(), v.KeyHash(), strings.Join(names, ", "))
		}
		return nil, fmt.Errorf("checkpoint is not a valid signed note: %v", err)
	}
	origin, size, root, err := ParseCheckpointBody(n.Text)
	if err != nil {
		return nil, err
	}
	if origin != v.Name() {
		return nil, fmt.Errorf("checkpoint origin %q is not the ledger key's name %q", origin, v.Name())
	}
	return &Checkpoint{Origin: origin, Size: size, Root: root, Note: bytes.Clone(msg)}, nil
}

// Checkpoint signs and stores a checkpoint of the current tree, or returns
// the latest one if the tree has not grown since. It returns an error
// wrapping ErrNotFound if the ledger is empty.
func (l *Ledger) Checkpoint(ctx context.Context) (*Checkpoint, error) {
	size, root, err := l.Head(ctx)
	if err != nil {
		return nil, err
	}
	if size == 0 {
		return nil, fmt.Errorf("%w: the ledger is empty", ErrNotFound)
	}
	if latest, err := l.LatestCheckpoint(ctx); err == nil && latest.Size == size {
		l.anchor(latest)
		return latest, nil
	}
	c := &Checkpoint{Origin: l.Origin(), Size: size, Root: root}
	c.Note, err = note.Sign(&note.Note{Text: c.Body()}, l.signer)
	if err != nil {
		return nil, fmt.Errorf("audit: sign checkpoint: %w", err)
	}
	if err := l.store.AddCheckpoint(ctx, StoredCheckpoint{Size: size, Time: l.now().UTC(), Note: c.Note}); err != nil {
		return nil, fmt.Errorf("audit: store checkpoint: %w", err)
	}
	l.metrics.checkpoints.Inc()
	l.anchor(c)
	for _, s := range l.sinks {
		s.offerCheckpoint(c)
	}
	return c, nil
}

// LatestCheckpoint returns the most recent stored checkpoint, verified
// with the ledger's key. It returns an error wrapping ErrNotFound if there
// is none.
func (l *Ledger) LatestCheckpoint(ctx context.Context) (*Checkpoint, error) {
	cps, err := l.store.Checkpoints(ctx, 1)
	if err != nil {
		return nil, err
	}
	if len(cps) == 0 {
		return nil, fmt.Errorf("%w: no checkpoint yet", ErrNotFound)
	}
	return parseCheckpoint(cps[0].Note, l.verifier)
}

// InclusionProof is the proof that one event is leaf Seq-1 of the tree of
// TreeSize leaves; check it with tlog.CheckRecord (or Check).
type InclusionProof struct {
	Seq      int64            `json:"seq"`
	TreeSize int64            `json:"tree_size"`
	LeafHash tlog.Hash        `json:"leaf_hash"`
	Proof    tlog.RecordProof `json:"proof"`
	// Checkpoint is the signed checkpoint of TreeSize, when the proof is
	// against one.
	Checkpoint string `json:"checkpoint,omitempty"`
	// Event is the event's canonical serialization (absent if pruned).
	Event []byte `json:"event,omitempty"`
}

// Check verifies the proof against a tree root with tlog.CheckRecord.
func (p *InclusionProof) Check(root tlog.Hash) error {
	return tlog.CheckRecord(p.Proof, p.TreeSize, root, p.Seq-1, p.LeafHash)
}

// ConsistencyProof is the proof that the tree of NewSize leaves extends
// the tree of OldSize leaves; check it with tlog.CheckTree (or Check).
type ConsistencyProof struct {
	OldSize int64          `json:"old_size"`
	NewSize int64          `json:"new_size"`
	Proof   tlog.TreeProof `json:"proof"`
	// Checkpoint is the signed checkpoint of NewSize, when there is one.
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Check verifies the proof between two tree roots with tlog.CheckTree.
func (p *ConsistencyProof) Check(oldRoot, newRoot tlog.Hash) error {
	return tlog.CheckTree(p.Proof, p.NewSize, newRoot, p.OldSize, oldRoot)
}

// storeReader reads stored hashes from the store.
func (l *Ledger) storeReader(ctx context.Context) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i := 0; i < len(idx); {
			// Read runs of consecutive indexes with one query.
			j := i + 1
			for j < len(idx) && idx[j] == idx[j-1]+1 {
				j++
			}
			hs, err := l.store.ReadHashes(ctx, idx[i], idx[j-1]+1)
			if err != nil {
				return nil, err
			}
			copy(out[i:j], hs)
			i = j
		}
		return out, nil
	})
}

// ProveInclusion returns the proof that event seq is in the tree of
// treeSize leaves; treeSize 0 means the latest checkpoint (made now if
// the tree has grown past it).
func (l *Ledger) ProveInclusion(ctx context.Context, seq, treeSize int64) (*InclusionProof, error) {
	cp, treeSize, err := l.proofTree(ctx, treeSize)
	if err != nil {
		return nil, err
	}
	if seq < 1 || seq > treeSize {
		return nil, fmt.Errorf("%w: seq %d is not in the tree of size %d", ErrInvalid, seq, treeSize)
	}
	r := l.storeReader(ctx)
	proof, err := tlog.ProveRecord(treeSize, seq-1, r)
	if err != nil {
		return nil, fmt.Errorf("audit: inclusion proof: %w", err)
	}
	leaf, err := r.ReadHashes([]int64{tlog.StoredHashIndex(0, seq-1)})
	if err != nil {
		return nil, err
	}
	p := &InclusionProof{Seq: seq, TreeSize: treeSize, LeafHash: leaf[0], Proof: proof}
	if cp != nil {
		p.Checkpoint = string(cp.Note)
	}
	if recs, err := l.store.ScanRecords(ctx, seq-1, 1); err == nil && len(recs) == 1 && recs[0].Seq == seq {
		p.Event = recs[0].Data
	}
	return p, nil
}

// ProveConsistency returns the proof that the tree of newSize leaves
// extends the tree of oldSize leaves; newSize 0 means the latest
// checkpoint.
func (l *Ledger) ProveConsistency(ctx context.Context, oldSize, newSize int64) (*ConsistencyProof, error) {
	cp, newSize, err := l.proofTree(ctx, newSize)
	if err != nil {
		return nil, err
	}
	if oldSize < 1 || oldSize > newSize {
		return nil, fmt.Errorf("%w: old size %d must be from 1 to the new size %d", ErrInvalid, oldSize, newSize)
	}
	proof, err := tlog.ProveTree(newSize, oldSize, l.storeReader(ctx))
	if err != nil {
		return nil, fmt.Errorf("audit: consistency proof: %w", err)
	}
	p := &ConsistencyProof{OldSize: oldSize, NewSize: newSize, Proof: proof}
	if cp != nil {
		p.Checkpoint = string(cp.Note)
	}
	return p, nil
}

// proofTree resolves the tree size a proof is made against: the given
// size (with its checkpoint, if one was stored at that size), or the
// latest checkpoint.
func (l *Ledger) proofTree(ctx context.Context, size int64) (*Checkpoint, int64, error) {
	if size == 0 {
		cp, err := l.Checkpoint(ctx)
		if err != nil {
			return nil, 0, err
		}
		return cp, cp.Size, nil
	}
	cur, _, err := l.Head(ctx)
	if err != nil {
		return nil, 0, err
	}
	if size < 0 || size > cur {
		return nil, 0, fmt.Errorf("%w: tree size %d: the ledger has %d events", ErrInvalid, size, cur)
	}
	cps, err := l.store.Checkpoints(ctx, 0)
	if err != nil {
		return nil, 0, err
	}
	for _, c := range cps {
		if c.Size == size {
			cp, err := parseCheckpoint(c.Note, l.verifier)
			if err != nil {
				return nil, 0, err
			}
			return cp, size, nil
		}
	}
	return nil, size, nil
}

// Key helpers: note signer keys are PRIVATE+KEY+<name>+<hash>+<base64>,
// where the decoded key is the algorithm byte (1, Ed25519) and the seed.

func parseSignerKey(skey string) (name string, seed []byte, err error) {
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 || parts[0] != "PRIVATE" || parts[1] != "KEY" {
		return "", nil, errors.New("malformed note signer key")
	}
	key, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(key) != 1+ed25519.SeedSize || key[0] != 1 {
		return "", nil, errors.New("malformed note signer key")
	}
	return parts[2], key[1:], nil
}

func ed25519Public(seed []byte) ed25519.PublicKey {
	return ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
}
