package audit

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/seal"
)

// Names of the keys the ledger keeps in its Store.
const (
	keySigner = "checkpoint-signer" // note signer key (PRIVATE+KEY+...)
	keyHMAC   = "hmac"              // 32 random bytes
)

// Defaults of LedgerConfig.
const (
	DefaultOrigin             = "mandate.local/audit"
	DefaultMaxBatch           = 2048
	DefaultCommitTimeout      = 10 * time.Second
	DefaultUnhurriedWait      = 5 * time.Millisecond
	DefaultCheckpointInterval = time.Minute
	DefaultPruneInterval      = time.Hour
)

// LedgerConfig configures a Ledger.
type LedgerConfig struct {
	// Store persists the ledger. Required.
	Store Store
	// Sealer seals the ledger keys kept in Store (the generated checkpoint
	// signing key and the HMAC key). Required.
	Sealer *seal.Keyring
	// Origin names the log in its checkpoints and its signing key. It is
	// used only when the key is first generated; afterwards the stored
	// key's name is the origin. Default DefaultOrigin.
	Origin string
	// SignerKey, if set, is the checkpoint signing key in note signer
	// format (PRIVATE+KEY+<origin>+<hash>+<base64>, see GenerateSignerKey),
	// kept outside the store so that someone who can write the database
	// cannot also sign checkpoints. Empty: a key generated once and kept
	// in the store. Checkpoints signed by a previous key verify only
	// against that key.
	SignerKey string
	// FailOpen makes Record return nil when an event cannot be written, so
	// that the action proceeds unaudited. Every such failure is logged at
	// error level, and New logs a warning. Off by default: fail closed.
	FailOpen bool
	// RedactFields are argument fields always replaced by keyed hashes.
	RedactFields []string
	// Sinks receive every durable event, each through its own bounded
	// buffer (see SinkConfig).
	Sinks []SinkConfig
	// AnchorFile, if set, is rewritten with every new checkpoint (see
	// WriteAnchor), so that the ledger's signed head survives outside the
	// store; check a store against it with CheckAnchor.
	AnchorFile string
	// CheckpointInterval is how often Run signs a checkpoint if the tree
	// grew. Default DefaultCheckpointInterval; negative disables.
	CheckpointInterval time.Duration
	// Retention is how long events are kept; older ones are pruned by Run,
	// keeping their tree hashes. Zero keeps everything.
	Retention time.Duration
	// MaxBatch caps the events in one group commit. Default
	// DefaultMaxBatch.
	MaxBatch int
	// CommitTimeout bounds one commit. Default DefaultCommitTimeout.
	CommitTimeout time.Duration
	// UnhurriedWait is how long an event recorded under Unhurried waits
	// for another commit to carry it before it starts one. Default
	// DefaultUnhurriedWait.
	UnhurriedWait time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Logger receives the ledger's logs; nil discards them.
	Logger *slog.Logger
}

// Ledger is the tamper-evident audit ledger: a Recorder whose events are
// leaves of a Merkle tree with signed checkpoints. It is safe for
// concurrent use. Create it with NewLedger; call Run to make periodic
// checkpoints, apply retention and feed the sinks; call Close when done.
type Ledger struct {
	cfg      LedgerConfig
	store    Store
	log      *slog.Logger
	now      func() time.Time
	signer   note.Signer
	verifier note.Verifier
	vkey     string
	redactor *Redactor
	sinks    []*sink
	metrics  ledgerMetrics
	started  atomic.Bool // Run or Close has been called

	amu      sync.Mutex
	anchored int64       // the size of the checkpoint last written to AnchorFile
	anchorCP *Checkpoint // that checkpoint
	signed   *Checkpoint // the largest checkpoint this ledger signed or stood by, kept outside the store

	// Group commit. A caller whose event is queued either sees it
	// committed by another caller, or takes the token (a one-slot
	// channel, so that waiting for it can be combined with waiting for
	// the result) and commits everything queued.
	token chan struct{}
	qmu   sync.Mutex
	queue []*pending

	// Guarded by token.
	size     int64
	frontier map[int64]tlog.Hash // the stored hashes TreeHash(size) and the next append read
	stale    bool                // reload size and frontier before the next commit
	// spare is the frontier before the last commit, emptied and refilled
	// by the next (a commit per decision at low load should not cost a
	// map), and idxs the indexes it reads.
	spare map[int64]tlog.Hash
	idxs  []int64
}

type pending struct {
	ev Event
	// data is seqRoom bytes of room, then Canonical(ev) without a seq:
	// computed by the caller, so that the committing goroutine only
	// writes the seq into the room (see withSeq).
	data []byte
	done chan error
}

// NewLedger loads (or, for an empty store, creates) the ledger: its tree
// state, its checkpoint signing key and its HMAC key.
func NewLedger(ctx context.Context, cfg LedgerConfig) (*Ledger, error) {
	if cfg.Store == nil {
		return nil, errors.New("audit: NewLedger: Store is required")
	}
	if cfg.Sealer == nil {
		return nil, errors.New("audit: NewLedger: Sealer is required (ledger keys are sealed at rest)")
	}
	if cfg.Origin == "" {
		cfg.Origin = DefaultOrigin
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = DefaultMaxBatch
	}
	if cfg.CommitTimeout <= 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.UnhurriedWait <= 0 {
		cfg.UnhurriedWait = DefaultUnhurriedWait
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	l := &Ledger{cfg: cfg, store: cfg.Store, log: cfg.Logger, now: cfg.Now, token: make(chan struct{}, 1), metrics: newLedgerMetrics()}
	if l.log == nil {
		l.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if l.now == nil {
		l.now = time.Now
	}
	skey := []byte(cfg.SignerKey)
	if len(skey) == 0 {
		var err error
		skey, err = openLedgerKey(ctx, cfg.Store, cfg.Sealer, keySigner, func() ([]byte, error) {
			skey, _, err := note.GenerateKey(rand.Reader, cfg.Origin)
			return []byte(skey), err
		})
		if err != nil {
			return nil, fmt.Errorf("audit: ledger signing key: %w", err)
		}
	}
	var err error
	if l.signer, err = note.NewSigner(string(skey)); err != nil {
		return nil, fmt.Errorf("audit: ledger signing key: %w", err)
	}
	if l.vkey, err = verifierKey(string(skey)); err != nil {
		return nil, err
	}
	if l.verifier, err = note.NewVerifier(l.vkey); err != nil {
		return nil, fmt.Errorf("audit: ledger verifier key: %w", err)
	}
	hkey, err := openLedgerKey(ctx, cfg.Store, cfg.Sealer, keyHMAC, func() ([]byte, error) {
		k := make([]byte, 32)
		_, err := rand.Read(k)
		return k, err
	})
	if err != nil {
		return nil, fmt.Errorf("audit: ledger HMAC key: %w", err)
	}
	l.redactor = NewRedactor(hkey, cfg.RedactFields)
	if err := l.load(ctx); err != nil {
		return nil, err
	}
	for _, sc := range cfg.Sinks {
		l.sinks = append(l.sinks, newSink(sc, l.log, l.metrics))
	}
	if cfg.FailOpen {
		l.log.Warn("AUDIT FAIL-OPEN is configured: actions will proceed even when their audit event cannot be written; the ledger will have gaps you cannot prove (set audit.fail_open=false to fail closed)")
	}
	return l, nil
}

// verifierKey derives the public verifier key from a note signer key
// (PRIVATE+KEY+<name>+<hash>+<base64 of 0x01 || ed25519 seed>).
func verifierKey(skey string) (string, error) {
	name, seed, err := parseSignerKey(skey)
	if err != nil {
		return "", fmt.Errorf("audit: ledger signing key: %w", err)
	}
	return note.NewEd25519VerifierKey(name, ed25519Public(seed))
}

// load reads the tree size and the frontier hashes from the store. It
// refuses a tree smaller than the one already loaded (ErrRolledBack).
func (l *Ledger) load(ctx context.Context) error {
	st, err := l.store.LedgerState(ctx)
	if err != nil {
		return fmt.Errorf("audit: load ledger: %w", err)
	}
	if st.Size < l.size {
		// Another writer on the store can only make the tree grow.
		return fmt.Errorf("%w: the store has %d events, this ledger recorded %d: events %d to %d were removed behind mandate's back, "+
			"or an older copy of the database was put in place; nothing more is recorded until the server is restarted on the right store",
			ErrRolledBack, st.Size, l.size, st.Size+1, l.size)
	}
	fr := make(map[int64]tlog.Hash)
	for _, idx := range frontierIndexes(st.Size) {
		hs, err := l.store.ReadHashes(ctx, idx, idx+1)
		if err != nil {
			return fmt.Errorf("audit: load ledger: %w", err)
		}
		fr[idx] = hs[0]
	}
	l.size, l.frontier, l.stale = st.Size, fr, false
	l.metrics.treeSize.Set(float64(st.Size))
	return nil
}

// frontierIndexes returns the stored-hash indexes of the roots of the
// complete subtrees that make up a tree of size n, left to right: all that
// TreeHash(n) and StoredHashes(n, …) read.
func frontierIndexes(n int64) []int64 { return appendFrontierIndexes(nil, n) }

// appendFrontierIndexes appends frontierIndexes(n) to out.
func appendFrontierIndexes(out []int64, n int64) []int64 {
	var start int64
	for level := 62; level >= 0; level-- {
		if n&(1<<level) != 0 {
			out = append(out, tlog.StoredHashIndex(level, start>>level))
			start += 1 << level
		}
	}
	return out
}

// VerifierKey returns the ledger's public key in note verifier format
// (<origin>+<hash>+<base64>): what auditors pin to check checkpoints.
func (l *Ledger) VerifierKey() string { return l.vkey }

// Origin returns the log's origin, the first line of its checkpoints.
func (l *Ledger) Origin() string { return l.verifier.Name() }

// Redactor returns the ledger's argument redactor, keyed per installation.
func (l *Ledger) Redactor() *Redactor { return l.redactor }

// Collectors returns the ledger's Prometheus metrics, for registration.
func (l *Ledger) Collectors() []prometheus.Collector { return l.metrics.collectors() }

// Record normalizes ev, appends it and returns once it is durable. If it
// cannot be written, Record returns an error wrapping ErrUnavailable (the
// caller must deny the action) — unless the ledger fails open, in which
// case it logs the failure and returns nil. An invalid event returns an
// error wrapping ErrInvalid either way. If ctx ends while the event waits
// for its commit, Record returns an error (the caller must deny) although
// the event may still be committed: the ledger then shows an attempt that
// was refused, never an action that went unrecorded.
func (l *Ledger) Record(ctx context.Context, ev Event) error {
	err := l.record(ctx, ev)
	if err == nil {
		return nil
	}
	l.metrics.failures.Inc()
	if errors.Is(err, ErrInvalid) {
		return err
	}
	if l.cfg.FailOpen {
		l.log.Error("AUDIT FAIL-OPEN: event NOT recorded; the action proceeds unaudited", "type", ev.Type, "agent", ev.Agent, "task", ev.Task, "err", err)
		return nil
	}
	l.log.Error("audit event could not be written; the action is refused", "type", ev.Type, "err", err)
	return errors.Join(ErrUnavailable, err)
}

func (l *Ledger) record(ctx context.Context, ev Event) error {
	if ev.Type == "" {
		return fmt.Errorf("%w: event type is required", ErrInvalid)
	}
	// One allocation holds the event from here until the sinks are done
	// with it.
	p := &pending{ev: ev, done: make(chan error, 1)}
	if err := Normalize(&p.ev, l.now()); err != nil {
		return err
	}
	p.ev.Seq = 0
	var err error
	p.data, err = canonical(&p.ev, seqRoom) // here, so that one bad event cannot fail a batch
	if err != nil {
		return err
	}
	l.qmu.Lock()
	l.queue = append(l.queue, p)
	l.qmu.Unlock()
	if isUnhurried(ctx) {
		// Ride along with a commit that another event starts.
		t := time.NewTimer(l.cfg.UnhurriedWait)
		select {
		case err := <-p.done:
			t.Stop()
			return err
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for the audit event to be written: %w", ctx.Err())
		}
	}
	for {
		select {
		case err := <-p.done:
			return err
		case l.token <- struct{}{}:
			select {
			case err := <-p.done:
				<-l.token
				return err
			default:
			}
			l.commitQueued()
			<-l.token
		case <-ctx.Done():
			// The event stays queued and may still be committed; the caller
			// gives up waiting and must treat the action as not audited.
			return fmt.Errorf("waiting for the audit event to be written: %w", ctx.Err())
		}
	}
}

// commitQueued takes up to MaxBatch queued events and commits them.
// The caller holds the token.
func (l *Ledger) commitQueued() {
	// Let callers that are about to enqueue (typically those the previous
	// commit just released) join this batch: a yield costs microseconds, a
	// commit hundreds, so fuller batches mean fewer commits.
	for range 8 {
		l.qmu.Lock()
		n := len(l.queue)
		l.qmu.Unlock()
		if n >= l.cfg.MaxBatch {
			break
		}
		runtime.Gosched()
		l.qmu.Lock()
		grew := len(l.queue) > n
		l.qmu.Unlock()
		if !grew {
			break
		}
	}
	l.qmu.Lock()
	n := min(len(l.queue), l.cfg.MaxBatch)
	batch := l.queue[:n:n]
	l.queue = l.queue[n:]
	if len(l.queue) == 0 {
		l.queue = nil
	}
	l.qmu.Unlock()
	if n == 0 {
		return
	}
	start := time.Now()
	err := l.commit(batch)
	l.metrics.commitSeconds.Observe(time.Since(start).Seconds())
	for _, p := range batch {
		p.done <- err
	}
	if err != nil {
		return
	}
	l.metrics.events.Add(float64(n))
	l.metrics.batchSize.Observe(float64(n))
	if len(l.sinks) > 0 {
		evs := make([]*Event, n)
		for i, p := range batch {
			evs[i] = &p.ev
		}
		for _, s := range l.sinks {
			s.offer(evs)
		}
	}
}

// commit appends batch. When another writer on the same store (a replica)
// appended first, the batch is rebuilt on the new tree and retried, after
// a short random pause so that competing writers do not keep colliding,
// until CommitTimeout.
func (l *Ledger) commit(batch []*pending) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.cfg.CommitTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		if l.stale {
			if err := l.load(ctx); err != nil {
				return err
			}
		}
		err := l.commitOnce(ctx, batch)
		if !errors.Is(err, ErrConflict) {
			return err
		}
		pause := time.Duration(mrand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
		select {
		case <-time.After(pause):
		case <-ctx.Done():
			return err
		}
	}
}

func (l *Ledger) commitOnce(ctx context.Context, batch []*pending) error {
	size := l.size
	b := &Batch{Records: make([]Record, len(batch)), HashStart: tlog.StoredHashCount(size), Size: size + int64(len(batch))}
	b.Hashes = make([]tlog.Hash, 0, tlog.StoredHashCount(b.Size)-b.HashStart)
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			switch {
			case x >= b.HashStart && x-b.HashStart < int64(len(b.Hashes)):
				out[i] = b.Hashes[x-b.HashStart]
			default:
				h, ok := l.frontier[x]
				if !ok {
					return nil, fmt.Errorf("audit: tree hash %d not in the frontier", x)
				}
				out[i] = h
			}
		}
		return out, nil
	})
	for i, p := range batch {
		p.ev.Seq = size + int64(i) + 1
		data, err := withSeq(&p.ev, p.data)
		if err != nil {
			return err
		}
		hs, err := tlog.StoredHashes(size+int64(i), data, r)
		if err != nil {
			return err
		}
		b.Hashes = append(b.Hashes, hs...)
		b.Records[i] = Record{Seq: p.ev.Seq, Time: p.ev.Time, Type: p.ev.Type, Agent: p.ev.Agent, Task: p.ev.Task, Decision: p.ev.Decision, Data: data}
	}
	if err := l.store.AppendLedger(ctx, b); err != nil {
		// The store may have moved on without us (another writer) or be in
		// an unknown state: reload before the next commit.
		l.stale = true
		return err
	}
	l.idxs = appendFrontierIndexes(l.idxs[:0], b.Size)
	hs, err := r.ReadHashes(l.idxs)
	if err != nil {
		l.stale = true
		return nil // committed; the frontier is reloaded next time
	}
	fr := l.spare
	if fr == nil {
		fr = make(map[int64]tlog.Hash, len(l.idxs))
	}
	clear(fr)
	for i, x := range l.idxs {
		fr[x] = hs[i]
	}
	l.size, l.frontier, l.spare = b.Size, fr, l.frontier
	l.metrics.treeSize.Set(float64(b.Size))
	return nil
}

// lock takes the commit token, so that the tree does not change; it gives
// up when ctx ends.
func (l *Ledger) lock(ctx context.Context) error {
	select {
	case l.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (l *Ledger) unlock() { <-l.token }

// Head returns the current tree size and root hash, as stored (another
// writer on the same store may have appended since this one did).
func (l *Ledger) Head(ctx context.Context) (int64, tlog.Hash, error) {
	if err := l.lock(ctx); err != nil {
		return 0, tlog.Hash{}, err
	}
	defer l.unlock()
	st, err := l.store.LedgerState(ctx)
	if err != nil {
		return 0, tlog.Hash{}, err
	}
	if l.stale || st.Size != l.size {
		if err := l.load(ctx); err != nil {
			return 0, tlog.Hash{}, err
		}
	}
	h, err := tlog.TreeHash(l.size, tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := l.frontier[x]
			if !ok {
				return nil, fmt.Errorf("audit: tree hash %d not in the frontier", x)
			}
			out[i] = h
		}
		return out, nil
	}))
	return l.size, h, err
}

// Run signs checkpoints every CheckpointInterval (and one at once if an
// AnchorFile is configured), applies retention and
// feeds the sinks until ctx ends; then it makes a last checkpoint,
// flushes the sinks and closes their writers. It runs once.
func (l *Ledger) Run(ctx context.Context) error {
	if !l.started.CompareAndSwap(false, true) {
		return errors.New("audit: the ledger's Run was already called, or the ledger closed")
	}
	var wg sync.WaitGroup
	sctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	for _, s := range l.sinks {
		wg.Go(func() { s.run(sctx) })
	}
	defer func() {
		for _, s := range l.sinks {
			s.close()
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			l.log.Warn("audit sinks did not drain within 5s")
		}
		stop()
		wg.Wait()
	}()
	var cpTick, pruneTick <-chan time.Time
	if l.cfg.CheckpointInterval > 0 {
		t := time.NewTicker(l.cfg.CheckpointInterval)
		defer t.Stop()
		cpTick = t.C
	}
	if l.cfg.AnchorFile != "" {
		// Anchor what was recorded before Run at once, rather than a
		// CheckpointInterval later: until the first anchor, a lost store
		// would not be seen at the next start.
		if _, err := l.Checkpoint(ctx); err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
			l.log.Error("audit checkpoint failed", "err", err)
		}
	}
	if l.cfg.Retention > 0 {
		t := time.NewTicker(min(DefaultPruneInterval, l.cfg.Retention))
		defer t.Stop()
		pruneTick = t.C
		l.prune(ctx)
	}
	for {
		select {
		case <-ctx.Done():
			cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			if _, err := l.Checkpoint(cctx); err != nil && !errors.Is(err, ErrNotFound) {
				l.log.Warn("final audit checkpoint failed", "err", err)
			}
			cancel()
			return nil
		case <-cpTick:
			if _, err := l.Checkpoint(ctx); err != nil && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
				l.log.Error("audit checkpoint failed", "err", err)
			}
		case <-pruneTick:
			l.prune(ctx)
		}
	}
}

func (l *Ledger) prune(ctx context.Context) {
	n, through, err := l.Prune(ctx, l.now().Add(-l.cfg.Retention))
	if err != nil {
		if ctx.Err() == nil {
			l.log.Error("audit retention: pruning failed", "err", err)
		}
		return
	}
	if n > 0 {
		l.log.Info("audit retention: pruned old events; their tree hashes are kept", "events", n, "through_seq", through)
	}
}

// Close closes the sink writers of a ledger whose Run was never called
// (Run closes them itself), for a program that fails to start after
// opening its ledger. Recording still works; sinks get nothing more.
func (l *Ledger) Close() error {
	if !l.started.CompareAndSwap(false, true) {
		return nil
	}
	var errs []error
	for _, s := range l.sinks {
		s.close()
		errs = append(errs, s.w.Close())
	}
	return errors.Join(errs...)
}

// Prune deletes the events recorded before cutoff (a contiguous prefix of
// the ledger), first signing a checkpoint that covers them, and keeps
// their tree hashes so that checkpoints and proofs still verify. It
// returns how many events were deleted and the last pruned seq.
func (l *Ledger) Prune(ctx context.Context, cutoff time.Time) (int64, int64, error) {
	// The prefix ends before the first event at or after the cutoff, so
	// that no newer event goes even if times are not in seq order.
	var through int64
	next, err := l.store.ListEvents(ctx, Query{Since: cutoff, Limit: 1})
	if err != nil {
		return 0, 0, err
	}
	if len(next) > 0 {
		through = next[0].Seq - 1
	} else if through, _, err = l.Head(ctx); err != nil {
		return 0, 0, err
	}
	st, err := l.store.LedgerState(ctx)
	if err != nil {
		return 0, 0, err
	}
	if through <= st.PrunedThrough {
		return 0, 0, nil
	}
	if _, err := l.Checkpoint(ctx); err != nil {
		return 0, 0, fmt.Errorf("checkpoint before pruning: %w", err)
	}
	n, err := l.store.PruneEvents(ctx, through)
	return n, through, err
}

// Events returns the events matching q, in sequence order.
func (l *Ledger) Events(ctx context.Context, q Query) ([]*Event, error) {
	return l.store.ListEvents(ctx, q)
}

// seqPrefix opens an event's canonical form when it has a seq: Seq is
// the first field encoding/json writes, and is omitted while zero.
const seqPrefix = `{"seq":`

// seqRoom is the room before an event's canonical form that withSeq
// writes the seq into: the prefix, up to 19 digits and a comma, less the
// opening brace they replace.
const seqRoom = len(seqPrefix) + 19 + 1 - 1

// withSeq returns Canonical(ev) given data: seqRoom bytes of room, then
// the canonical form of ev without its seq (at version 0). It writes the
// seq into the room, just before the first field, and returns the
// subslice that starts there: the event is not copied. For any other
// version the event is encoded again.
func withSeq(ev *Event, data []byte) ([]byte, error) {
	// The brace at data[seqRoom] is overwritten by the first call (the
	// comma goes there), so a retried commit checks the first field's
	// opening quote instead.
	if len(data) < seqRoom+2 || ev.V != 0 || data[seqRoom+1] != '"' || ev.Seq < 0 {
		return Canonical(ev)
	}
	var num [20]byte
	digits := strconv.AppendInt(num[:0], ev.Seq, 10)
	start := seqRoom + 1 - len(seqPrefix) - len(digits) - 1
	n := start + copy(data[start:], seqPrefix)
	n += copy(data[n:], digits)
	data[n] = ','
	return data[start:], nil
}

// GenerateSignerKey returns a new Ed25519 checkpoint signing key for
// origin, in note signer format, and its public verifier key.
func GenerateSignerKey(origin string) (skey, vkey string, err error) {
	return note.GenerateKey(rand.Reader, origin)
}
