package sqlite_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

const journalChildEnv = "MANDATE_TEST_JOURNAL_CHILD"

func journalEvent(i int) audit.Event {
	return audit.Event{Type: audit.TypeActionDecided, Agent: fmt.Sprintf("spiffe://example.org/agent/a%d", i%3),
		Task: fmt.Sprintf("tsk_%d", i%5), Action: "tool.call", Resource: fmt.Sprintf("tool:fs/read_%d", i), Decision: audit.DecisionAllow}
}

// TestJournalSurvivesKill: a process killed right after its ledger
// acknowledged events, before the indexer copied them into the tables,
// loses none of them: the next Open copies them from the journal, and the
// ledger verifies. A torn frame at the end (a write the kill cut short)
// is dropped.
func TestJournalSurvivesKill(t *testing.T) {
	if path := os.Getenv(journalChildEnv); path != "" {
		recordAndDie(path)
		return
	}
	// 300 events fit in the first chunk the journal maps; 15,000 (about
	// 5 MB) move its window on.
	for _, events := range []int{300, 15000} {
		t.Run(strconv.Itoa(events), func(t *testing.T) { killAndRecover(t, events) })
	}
}

// killAndRecover has a child process record events and kill itself, then
// recovers the ledger it left.
func killAndRecover(t *testing.T, events int) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalSurvivesKill$")
	cmd.Env = append(os.Environ(), journalChildEnv+"="+path, "MANDATE_TEST_JOURNAL_EVENTS="+strconv.Itoa(events))
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	// Killed: on Unix by a signal; on Windows terminated with exit code 1.
	if !errors.As(err, &ee) || ee.Exited() && (runtime.GOOS != "windows" || ee.ExitCode() != 1) {
		t.Fatalf("child: %v, want killed; output:\n%s", err, out)
	}
	journal := path + "-ledger"
	end := framesEnd(t, journal)
	t.Logf("the journal holds %d bytes of frames", end)
	if end == 0 {
		t.Fatal("journal after the kill holds no frames; want those the indexer had not copied")
	}
	// A write cut short by the kill: half a frame header after the last
	// whole frame.
	f, err := os.OpenFile(journal, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0x00, 0x00}, end); err != nil {
		t.Fatal(err)
	}
	f.Close()

	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open after the kill = %v", err)
	}
	defer db.Close()
	if end := framesEnd(t, journal); end != bindingFrameSize {
		t.Errorf("journal after recovery holds %d bytes of frames; want it emptied but for its binding frame (%d bytes)", end, bindingFrameSize)
	}
	// Read the tables directly, as a backup would: recovery put the
	// events there, not just in memory.
	var n int64
	if err := rawOpen(t, path).QueryRow(`SELECT count(*) FROM events`).Scan(&n); err != nil || n != int64(events) {
		t.Fatalf("events in the table = %d, %v; want %d", n, err, events)
	}
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := led.Verify(t.Context())
	if err != nil || !rep.OK() || rep.Events != int64(events) {
		t.Fatalf("Verify() = %+v, %v; want OK with %d events", rep, err, events)
	}
	// The ledger goes on where it stopped.
	if err := led.Record(t.Context(), journalEvent(events)); err != nil {
		t.Fatal(err)
	}
	if size, _, err := led.Head(t.Context()); err != nil || size != int64(events)+1 {
		t.Errorf("Head() = %d, %v; want %d", size, err, events+1)
	}
}

// framesEnd returns where the whole frames in the journal at path end:
// the offset of the first zero length (the space allocated ahead) or of
// the file's end.
// bindingFrameSize is the size of the journal's binding frame (see
// bind.go), all an emptied journal holds.
const bindingFrameSize = 13

func framesEnd(t *testing.T, path string) int64 {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var off int64
	for off+8 <= int64(len(data)) {
		n := int64(binary.LittleEndian.Uint32(data[off:]))
		if n == 0 || off+8+n > int64(len(data)) {
			break
		}
		off += 8 + n
	}
	return off
}

// recordAndDie records events in the database at path and kills its own
// process as soon as the last is acknowledged.
func recordAndDie(path string) {
	ctx := context.Background()
	events, _ := strconv.Atoi(os.Getenv("MANDATE_TEST_JOURNAL_EVENTS"))
	db, err := sqlite.Open(ctx, path)
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	led, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), CheckpointInterval: -1})
	if err != nil {
		fmt.Println(err)
		os.Exit(3)
	}
	for i := range events {
		if err := led.Record(ctx, journalEvent(i)); err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
	}
	self, _ := os.FindProcess(os.Getpid())
	_ = self.Kill() // SIGKILL on Unix: no chance to close anything
	time.Sleep(time.Minute)
}

// TestJournalLocked: one database, one process appending to its ledger.
func TestJournalLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	if db2, err := sqlite.Open(t.Context(), path); !errors.Is(err, sqlite.ErrLocked) {
		if db2 != nil {
			db2.Close()
		}
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open after Close = %v", err)
	}
	db.Close()
}

// TestJournalMismatch: a journal that does not continue the database's
// ledger (a database restored from an older backup beside a newer
// journal) is refused, not silently dropped or spliced in.
func TestJournalMismatch(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "mandate.db")
	child := filepath.Join(dir, "child.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestJournalSurvivesKill$")
	cmd.Env = append(os.Environ(), journalChildEnv+"="+child, "MANDATE_TEST_JOURNAL_EVENTS=40")
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Fatalf("child exited normally:\n%s", out)
	}
	// The database at path holds 3 events; the journal continues one
	// that ended somewhere else.
	db := openAt(t, path)
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := led.Record(t.Context(), journalEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(child+"-ledger", path+"-ledger"); err != nil {
		t.Fatal(err)
	}
	// The child's journal holds its events from the first: its first
	// three are not the database's.
	_, err = sqlite.Open(t.Context(), path)
	if err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("Open with a foreign journal = %v, want a refusal", err)
	}
}

func openAt(t *testing.T, path string) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// openLedger opens the database at path and a ledger on it; the caller
// closes the database.
func openLedger(t *testing.T, path string) (*sqlite.DB, *audit.Ledger) {
	t.Helper()
	db := openAt(t, path)
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), CheckpointInterval: -1, CommitTimeout: time.Second})
	if err != nil {
		db.Close()
		t.Fatal(err)
	}
	return db, led
}

// TestJournalTrimmed: the journal is emptied whenever it passes its
// limit, under steady appends, and every event still reaches the tables.
func TestJournalTrimmed(t *testing.T) {
	const limit = 16 << 10
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, err := sqlite.Open(t.Context(), path, sqlite.WithJournalLimit(limit))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	journalBytes := db.Collectors()[1].(prometheus.GaugeFunc)
	const events = 5000
	var largest, largestFile int64
	for i := range events {
		if err := led.Record(t.Context(), journalEvent(i)); err != nil {
			t.Fatal(err)
		}
		largest = max(largest, int64(testutil.ToFloat64(journalBytes)))
		if st, err := os.Stat(path + "-ledger"); err == nil {
			largestFile = max(largestFile, st.Size())
		}
	}
	// One frame of a few hundred bytes per event here (records are
	// sequential), 1.5 MB in all. Past the limit the indexer is woken to
	// trim it; past four times the limit appends wait for it.
	if largest > 4*limit+4<<10 {
		t.Errorf("journal grew to %d bytes, limit %d", largest, limit)
	}
	if largest == 0 {
		t.Error("journal never held anything")
	}
	// The file holds the frames and up to one chunk allocated ahead.
	if largestFile > 4*limit+4<<10+4<<20 {
		t.Errorf("journal file grew to %d bytes, limit %d", largestFile, limit)
	}
	evs, err := db.ListEvents(t.Context(), audit.Query{})
	if err != nil || len(evs) != events {
		t.Fatalf("ListEvents() = %d events, %v; want %d", len(evs), err, events)
	}
}

// TestJournalIndexFailureFailsClosed: when the indexer cannot copy the
// journal into the tables (here a row written behind mandate's back takes
// the next event's seq), appends and reads fail instead of the journal
// growing without bound or a reader missing events.
func TestJournalIndexFailureFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, led := openLedger(t, path)
	defer db.Close()
	if err := led.Record(t.Context(), journalEvent(1)); err != nil {
		t.Fatal(err)
	}
	if err := db.SyncLedger(t.Context()); err != nil {
		t.Fatal(err)
	}
	raw := rawOpen(t, "file:"+path+"?_pragma=busy_timeout(5000)")
	if _, err := raw.Exec(`INSERT INTO events (seq, time, type, data) VALUES (2, 0, 'forged', X'7b7d')`); err != nil {
		t.Fatal(err)
	}
	if err := led.Record(t.Context(), journalEvent(2)); err != nil {
		t.Fatalf("Record() = %v; the journal takes it, the indexer fails later", err)
	}
	if _, err := db.ListEvents(t.Context(), audit.Query{}); err == nil {
		t.Fatal("ListEvents() with the index failing = nil error, want one")
	}
	failures := db.Collectors()[2].(prometheus.Counter)
	if n := testutil.ToFloat64(failures); n < 1 {
		t.Errorf("mandate_audit_index_failures_total = %v, want at least 1", n)
	}
	if err := led.Record(t.Context(), journalEvent(3)); !errors.Is(err, audit.ErrUnavailable) {
		t.Fatalf("Record() with the index failing = %v, want ErrUnavailable", err)
	}
	// Remove the obstacle: the indexer catches up and the ledger works.
	if _, err := raw.Exec(`DELETE FROM events WHERE type = 'forged'`); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := led.Record(t.Context(), journalEvent(4))
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Record() after the obstacle went = %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	rep, err := led.Verify(t.Context())
	if err != nil || !rep.OK() || rep.Events != 3 {
		t.Fatalf("Verify() = %+v, %v; want OK with 3 events", rep, err)
	}
}

// TestJournalCutShortFailsClosed: a journal file cut short behind the
// server's back (its frames live in a shared mapping, where that would
// otherwise be a crash) fails appends, and so the actions they record,
// instead of taking the process down or acknowledging events that are
// not in the file.
func TestJournalCutShortFailsClosed(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, led := openLedger(t, path)
	defer db.Close()
	if err := led.Record(t.Context(), journalEvent(1)); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path+"-ledger", 0); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if err := led.Record(t.Context(), journalEvent(2+i)); !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "faulted") {
			t.Fatalf("Record() into a journal cut short = %v, want ErrUnavailable", err)
		}
	}
}

// TestJournalCloseKeepsNoSpare: the space the journal allocates ahead of
// its frames is not left behind when the database closes.
func TestJournalCloseKeepsNoSpare(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mandate.db")
	db, led := openLedger(t, path)
	for i := range 10 {
		if err := led.Record(t.Context(), journalEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if st, err := os.Stat(path + "-ledger"); err != nil || st.Size() < 4<<20 {
		t.Fatalf("journal file while open: %v, %v; want space allocated ahead", st, err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path + "-ledger"); err != nil || st.Size() != bindingFrameSize {
		t.Fatalf("journal file after Close: size %d, %v; want only its binding frame (everything indexed)", st.Size(), err)
	}
	db = openAt(t, path)
	defer db.Close()
	if evs, err := db.ListEvents(t.Context(), audit.Query{}); err != nil || len(evs) != 10 {
		t.Fatalf("ListEvents() after reopening = %d events, %v; want 10", len(evs), err)
	}
}
