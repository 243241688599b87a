package approval_test

import (
	"context"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/approval"
	"github.com/mandatehq/mandate/internal/task"
)

// BenchmarkHeldCalls holds 1,000 calls at once, each waiting for its own
// request (as the gateway's held calls do), then approves them all; it
// reports the heap the waiting takes per held call (the waiters and their
// requests, not the HTTP connections around them) and how long waking
// all of them takes.
func BenchmarkHeldCalls(b *testing.B) {
	const held = 1000
	for range b.N {
		b.StopTimer()
		f := newFixture(b)
		ctx := context.Background()
		ids := make([]approval.ID, held)
		for i := range ids {
			o := deploy("x")
			o.Task = task.ID("tsk_" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)) + string(rune('a'+i/676)))
			r, err := f.svc.Open(ctx, o)
			if err != nil {
				b.Fatal(err)
			}
			ids[i] = r.ID
		}
		runtime.GC()
		var before, during runtime.MemStats
		runtime.ReadMemStats(&before)
		var wg sync.WaitGroup
		var waiting sync.WaitGroup
		waiting.Add(held)
		for _, id := range ids {
			wg.Go(func() {
				waiting.Done()
				if r, err := f.svc.Wait(ctx, id); err != nil || r.Status != approval.StatusApproved {
					b.Errorf("Wait = %v, %v", r, err)
				}
			})
		}
		waiting.Wait()
		time.Sleep(50 * time.Millisecond) // every waiter is in Wait
		runtime.GC()
		runtime.ReadMemStats(&during)
		b.ReportMetric(float64(int64(during.HeapInuse+during.StackInuse)-int64(before.HeapInuse+before.StackInuse))/held, "bytes/held-call")
		b.StartTimer()
		for _, id := range ids {
			f.approve(b, id, approval.ReachOnce)
		}
		wg.Wait()
	}
}
