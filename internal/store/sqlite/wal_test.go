package sqlite_test

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// TestWALStaysBounded: under steady writes and reads, which never leave
// a moment for a passive checkpoint to restart the write-ahead log, the
// background checkpoint still empties it whenever it passes its limit
// (passive checkpoints reuse a WAL file but never shrink it).
func TestWALStaysBounded(t *testing.T) {
	const limit = 256 << 10
	db := openTemp(t, sqlite.WithWALLimit(limit))
	led, err := audit.NewLedger(t.Context(), audit.LedgerConfig{Store: db})
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
	emptied := false
	for i := 1; i < len(sizes); i++ {
		emptied = emptied || sizes[i] < sizes[i-1]
	}
	if !emptied {
		t.Fatalf("the WAL was never emptied under load (limit %d): sizes %v", limit, sizes)
	}
	time.Sleep(1200 * time.Millisecond) // two checkpoint ticks
	if fi, err := os.Stat(db.Path() + "-wal"); err != nil || fi.Size() > limit {
		t.Fatalf("the WAL after the load: %v bytes (%v), want at most %d", fi.Size(), err, limit)
	}
}
