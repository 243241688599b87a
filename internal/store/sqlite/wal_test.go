package sqlite_test

import (
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// TestWALStaysBounded: under steady writes and reads, which never leave
// a moment for a passive checkpoint to restart the write-ahead log, the
// background checkpoint still restarts it whenever it passes its limit,
// and the file is trimmed back (without restarts it only ever grows).
// Under the race detector the writes may be slow enough for passive
// checkpoints to restart the WAL by themselves; without it they are not.
func TestWALStaysBounded(t *testing.T) {
	const limit = 256 << 10
	db := openTemp(t, sqlite.WithWALLimit(limit))
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring()})
	if err != nil {
		t.Fatal(err)
	}
	ev := audit.Event{Type: audit.TypeActionDecided, Agent: "spiffe://example.org/agent/a", Task: "tsk_1", Action: "tool.call", Resource: "tool:x/y", Decision: audit.DecisionAllow}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := led.Record(t.Context(), ev); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := led.Events(t.Context(), audit.Query{Agent: ev.Agent, Limit: 10}); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	var sizes []int64
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		if fi, err := os.Stat(db.Path() + "-wal"); err == nil {
			sizes = append(sizes, fi.Size())
		}
	}
	close(stop)
	wg.Wait()
	shrank := false
	for i := 1; i < len(sizes); i++ {
		shrank = shrank || sizes[i] < sizes[i-1]
	}
	if !shrank {
		t.Fatalf("the WAL never restarted under load (limit %d): sizes %v", limit, sizes)
	}
	if largest := slices.Max(sizes); largest > 64<<20 {
		t.Fatalf("the WAL reached %d bytes (limit %d): %v", largest, limit, sizes)
	}
}
