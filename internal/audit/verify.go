package audit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// maxProblems caps the problems one verification reports.
const maxProblems = 100

// MaxExportLine is the longest line VerifyExport reads.
const MaxExportLine = MaxEventSize + 1024

// Problem is one thing verification found wrong, and where.
type Problem struct {
	// Seq is the first event the problem concerns (leaf index Seq-1), if
	// it concerns events.
	Seq int64 `json:"seq,omitempty"`
	// Line is the export line, when verifying an export.
	Line int `json:"line,omitempty"`
	// CheckpointSize is the tree size of the checkpoint concerned, if any.
	CheckpointSize int64  `json:"checkpoint_size,omitempty"`
	Message        string `json:"message"`
}

// String formats the problem with its location first:
// "line 5, seq 5: …".
func (p Problem) String() string {
	var where []string
	if p.Line > 0 {
		where = append(where, fmt.Sprintf("line %d", p.Line))
	}
	if p.Seq > 0 {
		where = append(where, fmt.Sprintf("seq %d", p.Seq))
	}
	if p.CheckpointSize > 0 {
		where = append(where, fmt.Sprintf("checkpoint %d", p.CheckpointSize))
	}
	if len(where) == 0 {
		return p.Message
	}
	return strings.Join(where, ", ") + ": " + p.Message
}

// Report is the result of verifying the ledger or an export.
type Report struct {
	// TreeSize is the number of leaves verified against.
	TreeSize int64 `json:"tree_size"`
	// PrunedThrough is the last seq removed by retention (its tree hashes
	// were taken as given, and checked against checkpoints).
	PrunedThrough int64 `json:"pruned_through,omitempty"`
	// Events is how many events were checked.
	Events int64 `json:"events"`
	// Checkpoints is how many signed checkpoints were checked.
	Checkpoints int `json:"checkpoints"`
	// FirstBadSeq is the first seq found bad (0 if none was localized).
	FirstBadSeq int64     `json:"first_bad_seq,omitempty"`
	Problems    []Problem `json:"problems,omitempty"`
	// Notes are limits of what could be checked; they are not failures.
	Notes []string `json:"notes,omitempty"`
}

// OK reports whether verification found no problem.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

func (r *Report) problem(p Problem) {
	if p.Seq > 0 && (r.FirstBadSeq == 0 || p.Seq < r.FirstBadSeq) {
		r.FirstBadSeq = p.Seq
	}
	if len(r.Problems) < maxProblems {
		r.Problems = append(r.Problems, p)
	}
}

// treeBuilder recomputes a tree's stored hashes leaf by leaf, keeping only
// the frontier (the hashes the next leaf and the root need).
type treeBuilder struct {
	size   int64
	hashes map[int64]tlog.Hash
}

// ReadHashes implements tlog.HashReader over the frontier.
func (t *treeBuilder) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(idx))
	for i, x := range idx {
		h, ok := t.hashes[x]
		if !ok {
			return nil, fmt.Errorf("tree hash %d unavailable", x)
		}
		out[i] = h
	}
	return out, nil
}

// add appends a leaf hash and returns the stored hashes it adds.
func (t *treeBuilder) add(leaf tlog.Hash) ([]tlog.Hash, error) {
	hs, err := tlog.StoredHashesForRecordHash(t.size, leaf, t)
	if err != nil {
		return nil, err
	}
	start := tlog.StoredHashCount(t.size)
	for i, h := range hs {
		t.hashes[start+int64(i)] = h
	}
	t.size++
	keep := frontierIndexes(t.size)
	for x := range t.hashes {
		if !slices.Contains(keep, x) {
			delete(t.hashes, x)
		}
	}
	return hs, nil
}

func (t *treeBuilder) root() (tlog.Hash, error) { return tlog.TreeHash(t.size, t) }

// checkpointSet holds the checkpoints a verification checks, by size.
type checkpointSet struct {
	bySize map[int64]*Checkpoint
	sizes  []int64
	// lastGood is the largest checkpoint size whose root matched so far.
	lastGood int64
}

func newCheckpointSet(r *Report, cps []*Checkpoint) *checkpointSet {
	s := &checkpointSet{bySize: make(map[int64]*Checkpoint)}
	for _, c := range cps {
		if prev, ok := s.bySize[c.Size]; ok {
			if prev.Root != c.Root {
				r.problem(Problem{CheckpointSize: c.Size, Message: "two checkpoints of the same size have different roots: the log was forked"})
			}
			continue
		}
		s.bySize[c.Size] = c
		s.sizes = append(s.sizes, c.Size)
	}
	slices.Sort(s.sizes)
	r.Checkpoints = len(s.sizes)
	return s
}

// check compares the root of the tree of size n with the checkpoint of
// that size, if there is one.
func (s *checkpointSet) check(r *Report, n int64, root tlog.Hash) {
	c, ok := s.bySize[n]
	if !ok {
		return
	}
	if c.Root == root {
		s.lastGood = n
		return
	}
	r.problem(Problem{Seq: s.lastGood + 1, CheckpointSize: n, Message: fmt.Sprintf(
		"the events do not hash to this signed checkpoint's root (%s, checkpoint says %s): an event from seq %d to %d was altered, or the checkpoint is not consistent with earlier ones",
		root, c.Root, s.lastGood+1, n)})
}

// exportPrefix is the first line of an export that does not start at seq
// 1 (because older events were pruned): the frontier of the tree before
// the export's first event.
type exportPrefix struct {
	Prefix struct {
		Size   int64       `json:"size"`
		Hashes []tlog.Hash `json:"hashes"`
	} `json:"ledger_prefix"`
}

// ExportLine is one event line of a verifiable export: the event's fields
// (its canonical form) plus the leaf hash the ledger stored for it.
type ExportLine struct {
	Event
	LeafHash tlog.Hash `json:"leaf_hash"`
}

// VerifyExport checks an export (the JSON lines written by Ledger.Export)
// offline against signed checkpoints and the ledger's public key vkey: it
// needs no access to the ledger. It reports edited, missing, reordered,
// inserted and forged events, truncation, and checkpoints that are forged,
// signed by another key, or inconsistent with the events or each other.
// The error is for unusable input (a malformed key, a read failure);
// problems with the export itself are in the report.
func VerifyExport(r io.Reader, checkpoints [][]byte, vkey string) (*Report, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w", err)
	}
	rep := &Report{}
	var cps []*Checkpoint
	for i, msg := range checkpoints {
		c, err := parseCheckpoint(msg, v)
		if err != nil {
			rep.problem(Problem{Message: fmt.Sprintf("checkpoint %d: %v", i+1, err)})
			continue
		}
		cps = append(cps, c)
	}
	set := newCheckpointSet(rep, cps)
	if len(checkpoints) == 0 {
		rep.Notes = append(rep.Notes, "no checkpoint given: only the export's internal consistency was checked, not that the ledger signed it")
	}

	b := &treeBuilder{hashes: make(map[int64]tlog.Hash)}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), MaxExportLine)
	line := 0
	broken := false
	for sc.Scan() {
		line++
		raw := bytes.TrimSpace(sc.Bytes())
		if len(raw) == 0 {
			continue
		}
		if line == 1 && bytes.HasPrefix(raw, []byte(`{"ledger_prefix"`)) {
			var p exportPrefix
			if err := strictUnmarshal(raw, &p); err != nil {
				rep.problem(Problem{Line: line, Message: "malformed ledger prefix: " + err.Error()})
				broken = true
				break
			}
			idx := frontierIndexes(p.Prefix.Size)
			if p.Prefix.Size < 0 || len(idx) != len(p.Prefix.Hashes) {
				rep.problem(Problem{Line: line, Message: fmt.Sprintf("ledger prefix of size %d needs %d hashes, has %d", p.Prefix.Size, len(idx), len(p.Prefix.Hashes))})
				broken = true
				break
			}
			for i, x := range idx {
				b.hashes[x] = p.Prefix.Hashes[i]
			}
			b.size = p.Prefix.Size
			rep.PrunedThrough = b.size
			if root, err := b.root(); err == nil {
				set.check(rep, b.size, root)
			}
			continue
		}
		want := b.size + 1
		var el ExportLine
		if err := strictUnmarshal(raw, &el); err != nil {
			rep.problem(Problem{Line: line, Seq: want, Message: "not a ledger event: " + err.Error()})
			broken = true
			break
		}
		switch {
		case el.Seq > want:
			rep.problem(Problem{Line: line, Seq: want, Message: fmt.Sprintf("expected seq %d, found %d: events %d to %d are missing (deleted or moved)", want, el.Seq, want, el.Seq-1)})
			broken = true
		case el.Seq < want:
			rep.problem(Problem{Line: line, Seq: want, Message: fmt.Sprintf("expected seq %d, found %d: events are out of order or duplicated", want, el.Seq)})
			broken = true
		}
		if broken {
			break
		}
		data, err := Canonical(&el.Event)
		if err != nil {
			rep.problem(Problem{Line: line, Seq: want, Message: err.Error()})
		} else if LeafHash(data) != el.LeafHash {
			rep.problem(Problem{Line: line, Seq: want, Message: "the event does not match its leaf hash: it was edited"})
		}
		if _, err := b.add(el.LeafHash); err != nil {
			return nil, err
		}
		rep.Events++
		if _, ok := set.bySize[b.size]; ok {
			root, err := b.root()
			if err != nil {
				return nil, err
			}
			set.check(rep, b.size, root)
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			rep.problem(Problem{Line: line + 1, Seq: b.size + 1, Message: fmt.Sprintf("line longer than %d bytes", MaxExportLine)})
		} else {
			return nil, err
		}
	}
	rep.TreeSize = b.size
	if !broken {
		for _, n := range set.sizes {
			if n > b.size {
				rep.problem(Problem{Seq: b.size + 1, CheckpointSize: n, Message: fmt.Sprintf("the export ends at seq %d but this checkpoint covers %d events: it was truncated", b.size, n)})
				break
			}
			if n < rep.PrunedThrough {
				rep.Notes = append(rep.Notes, fmt.Sprintf("checkpoint %d predates the export's first event and was not checked", n))
			}
		}
	}
	return rep, nil
}

// Verify checks the live ledger: every stored event against its leaf hash
// and its indexed columns, every stored tree hash against the hashes
// recomputed from the leaves, every checkpoint's signature and root, and
// consistency between consecutive checkpoints (tlog.ProveTree and
// CheckTree). It reports deleted, edited, swapped and forged rows by seq.
//
// A store holding fewer events than this ledger recorded (ErrRolledBack)
// is a problem at the first missing seq; what it still holds is checked.
func (l *Ledger) Verify(ctx context.Context) (*Report, error) {
	size, _, err := l.Head(ctx)
	rolledBack := errors.Is(err, ErrRolledBack)
	if err != nil && !rolledBack {
		return nil, err
	}
	st, err := l.store.LedgerState(ctx)
	if err != nil {
		return nil, err
	}
	rep := &Report{TreeSize: size, PrunedThrough: st.PrunedThrough}
	if rolledBack {
		size = st.Size
		rep.problem(Problem{Seq: size + 1, Message: fmt.Sprintf(
			"events %d to %d were removed: this server recorded them, but the store now ends at %d (deleted behind mandate's back, or an older copy of the database was put in place)",
			size+1, rep.TreeSize, size)})
	}
	if st.PrunedThrough > 0 {
		note := fmt.Sprintf("events 1 to %d were pruned: their tree hashes were checked against the checkpoints, the events themselves cannot be", st.PrunedThrough)
		if l.cfg.Retention == 0 {
			note += "; retention is off now, so if it never was on, someone deleted them"
		}
		rep.Notes = append(rep.Notes, note)
	}
	stored, err := l.store.Checkpoints(ctx, 0)
	if err != nil {
		return nil, err
	}
	var cps []*Checkpoint
	for _, sc := range stored {
		c, err := parseCheckpoint(sc.Note, l.verifier)
		if err != nil {
			rep.problem(Problem{CheckpointSize: sc.Size, Message: err.Error()})
			continue
		}
		if c.Size != sc.Size {
			rep.problem(Problem{CheckpointSize: sc.Size, Message: fmt.Sprintf("stored as size %d but signed for size %d", sc.Size, c.Size)})
			continue
		}
		cps = append(cps, c)
	}
	// A larger one may have been signed since Head; a tree shorter than
	// one this ledger signed is ErrRolledBack, and the anchor file's is
	// checked against the store at every start.
	for _, c := range l.outsideCheckpoints(rep) {
		if c.Size <= size {
			cps = append(cps, c)
		}
	}
	set := newCheckpointSet(rep, cps)
	sr := l.storeReader(ctx)
	// Checkpoints inside the pruned prefix are checked against the stored
	// hashes; the rest against hashes recomputed from the events.
	for _, n := range set.sizes {
		if n <= st.PrunedThrough && n <= size {
			root, err := tlog.TreeHash(n, sr)
			if err != nil {
				return nil, err
			}
			set.check(rep, n, root)
		}
	}

	b := &treeBuilder{size: st.PrunedThrough, hashes: make(map[int64]tlog.Hash)}
	if st.PrunedThrough > 0 {
		idx := frontierIndexes(st.PrunedThrough)
		hs, err := sr.ReadHashes(idx)
		if err != nil {
			return nil, err
		}
		for i, x := range idx {
			b.hashes[x] = hs[i]
		}
	}
	var beyond []int64
	after, broken := st.PrunedThrough, false
	const page = 1000
	for !broken {
		recs, err := l.store.ScanRecords(ctx, after, page)
		if err != nil {
			return nil, err
		}
		if len(recs) == 0 {
			break
		}
		after = recs[len(recs)-1].Seq
		// The stored hashes of the page's records that are in the tree.
		first, last := recs[0].Seq, min(recs[len(recs)-1].Seq, size)
		var storedHashes []tlog.Hash
		hashStart := tlog.StoredHashCount(first - 1)
		if first <= size {
			if storedHashes, err = l.store.ReadHashes(ctx, hashStart, tlog.StoredHashCount(last)); err != nil {
				if !errors.Is(err, ErrNotFound) {
					return nil, err
				}
				rep.problem(Problem{Seq: first, Message: "the tree hashes of these events are missing from the store: deleted"})
				break
			}
		}
		// Decoding the events is the costly part: check the page's
		// records in parallel, then report in order.
		recProblems := checkRecords(recs)
		for i, rec := range recs {
			if rec.Seq > size {
				beyond = append(beyond, rec.Seq)
				continue
			}
			want := b.size + 1
			if rec.Seq != want {
				rep.problem(Problem{Seq: want, Message: fmt.Sprintf("event %d is missing (the next stored event is %d): deleted", want, rec.Seq)})
				broken = true
				break
			}
			if recProblems[i] != nil {
				rep.problem(*recProblems[i])
			}
			off := tlog.StoredHashCount(rec.Seq-1) - hashStart
			leaf := storedHashes[off]
			if LeafHash(rec.Data) != leaf {
				rep.problem(Problem{Seq: rec.Seq, Message: "the stored event does not match its leaf hash in the ledger: edited, replaced or swapped"})
			}
			hs, err := b.add(leaf)
			if err != nil {
				return nil, err
			}
			for i, h := range hs {
				if storedHashes[off+int64(i)] != h {
					rep.problem(Problem{Seq: rec.Seq, Message: fmt.Sprintf("stored tree hash %d does not match the hash recomputed from the leaves: the tree hashes were edited", tlog.StoredHashCount(rec.Seq-1)+int64(i))})
					break
				}
			}
			rep.Events++
			if _, ok := set.bySize[b.size]; ok {
				root, err := b.root()
				if err != nil {
					return nil, err
				}
				set.check(rep, b.size, root)
			}
		}
	}
	if !broken && b.size < size {
		rep.problem(Problem{Seq: b.size + 1, Message: fmt.Sprintf("events %d to %d are missing: deleted", b.size+1, size)})
	}
	if len(beyond) > 0 {
		// Events appended while we verified are legitimate.
		now, err := l.store.LedgerState(ctx)
		if err != nil {
			return nil, err
		}
		for _, seq := range beyond {
			if seq > now.Size {
				rep.problem(Problem{Seq: seq, Message: fmt.Sprintf("event %d is not in the ledger (the tree has %d leaves): it was inserted outside mandate", seq, now.Size)})
				break
			}
		}
	}
	// Consistency between consecutive checkpoints, proved from the stored
	// hashes and checked as an auditor would.
	for i := 1; i < len(set.sizes); i++ {
		o, n := set.bySize[set.sizes[i-1]], set.bySize[set.sizes[i]]
		if n.Size > size {
			rep.problem(Problem{CheckpointSize: n.Size, Message: fmt.Sprintf("checkpoint covers %d events but the ledger has %d: events were removed", n.Size, size)})
			continue
		}
		p, err := tlog.ProveTree(n.Size, o.Size, sr)
		if errors.Is(err, ErrNotFound) {
			rep.problem(Problem{CheckpointSize: n.Size, Message: fmt.Sprintf("cannot prove it consistent with the checkpoint of size %d: tree hashes are missing from the store: deleted", o.Size)})
			continue
		}
		if err != nil {
			return nil, err
		}
		if err := tlog.CheckTree(p, n.Size, n.Root, o.Size, o.Root); err != nil {
			rep.problem(Problem{CheckpointSize: n.Size, Message: fmt.Sprintf("not consistent with the checkpoint of size %d: %v", o.Size, err)})
		}
	}
	return rep, nil
}

// checkRecords runs checkRecord on recs in parallel; the result holds
// each record's problem, or nil.
func checkRecords(recs []Record) []*Problem {
	out := make([]*Problem, len(recs))
	workers := min(runtime.GOMAXPROCS(0), 8)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < len(recs); i += workers {
				out[i] = checkRecord(recs[i])
			}
		})
	}
	wg.Wait()
	return out
}

// checkRecord checks a stored record's indexed columns against its event.
func checkRecord(rec Record) *Problem {
	ev, err := ParseEvent(rec.Data)
	if err != nil {
		return &Problem{Seq: rec.Seq, Message: "the stored event is not a canonical event: " + err.Error()}
	}
	var bad []string
	if ev.Seq != rec.Seq {
		bad = append(bad, fmt.Sprintf("seq (event says %d)", ev.Seq))
	}
	if !ev.Time.Equal(rec.Time) {
		bad = append(bad, "time")
	}
	if ev.Type != rec.Type {
		bad = append(bad, "type")
	}
	if ev.Agent != rec.Agent {
		bad = append(bad, "agent")
	}
	if ev.Task != rec.Task {
		bad = append(bad, "task")
	}
	if ev.Decision != rec.Decision {
		bad = append(bad, "decision")
	}
	if len(bad) > 0 {
		return &Problem{Seq: rec.Seq, Message: "indexed columns do not match the event: " + strings.Join(bad, ", ") + " edited"}
	}
	return nil
}

// Export writes the ledger as verifiable JSON lines (see ExportLine): a
// ledger_prefix line first if older events were pruned, then every event
// of the current tree in order with its stored leaf hash. It returns the
// tree size exported.
func (l *Ledger) Export(ctx context.Context, w io.Writer) (int64, error) {
	size, _, err := l.Head(ctx)
	if err != nil {
		return 0, err
	}
	st, err := l.store.LedgerState(ctx)
	if err != nil {
		return 0, err
	}
	bw := bufio.NewWriter(w)
	if st.PrunedThrough > 0 {
		var p exportPrefix
		p.Prefix.Size = st.PrunedThrough
		if p.Prefix.Hashes, err = l.storeReader(ctx).ReadHashes(frontierIndexes(st.PrunedThrough)); err != nil {
			return 0, err
		}
		b, err := json.Marshal(p)
		if err != nil {
			return 0, err
		}
		bw.Write(b)
		bw.WriteByte('\n')
	}
	after := st.PrunedThrough
	for after < size {
		recs, err := l.store.ScanRecords(ctx, after, 1000)
		if err != nil {
			return 0, err
		}
		if len(recs) == 0 {
			break
		}
		last := min(recs[len(recs)-1].Seq, size)
		hashStart := tlog.StoredHashCount(recs[0].Seq - 1)
		hs, err := l.store.ReadHashes(ctx, hashStart, tlog.StoredHashCount(last))
		if err != nil {
			return 0, err
		}
		for _, rec := range recs {
			if rec.Seq > size {
				break
			}
			leaf := hs[tlog.StoredHashCount(rec.Seq-1)-hashStart]
			// The line is the stored event with "leaf_hash" appended: the
			// event bytes are exported exactly as stored.
			bw.Write(bytes.TrimSuffix(rec.Data, []byte("}")))
			if len(rec.Data) > 2 {
				bw.WriteByte(',')
			}
			fmt.Fprintf(bw, `"leaf_hash":"%s"}`+"\n", leaf)
		}
		if err := bw.Flush(); err != nil {
			return 0, err
		}
		after = recs[len(recs)-1].Seq
	}
	return size, bw.Flush()
}
