// Package heapfloor keeps Go's garbage collector from collecting a small
// heap over and over.
//
// The collector starts a cycle once the heap has grown by GOGC percent
// over what the last cycle found live, and it never aims below 4 MiB
// (scaled by GOGC). A server whose live heap is a few MiB but which
// allocates hundreds of MiB a second in short-lived request buffers
// therefore collects a hundred times a second: each cycle's fixed costs
// (stopping the world twice, scanning every goroutine's stack, waking
// workers) take a tenth or more of its CPU and add milliseconds to its
// tail latency, while its memory stays far below any budget.
//
// A floor lets the heap grow to a fixed size between cycles while the
// live heap is small. It changes nothing once the live heap is half the
// floor or more, where GOGC alone sets the pace as before; a memory limit
// (GOMEMLIMIT) still caps the heap, floor or not. The memory it costs is
// bounded by the floor.
//
// The runtime has no such setting, so Start emulates one: after every
// cycle it sets GOGC to whatever puts the next cycle's goal at the floor,
// never below the GOGC the process started with.
package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// runtimeMinimum is the heap goal the runtime never aims below at
// GOGC=100 (runtime.defaultHeapMinimum); at other settings it scales with
// GOGC.
const runtimeMinimum = 4 << 20

// The runtime/metrics the heap goal is computed from, in the order of
// Floor.samples.
var sampleNames = [...]string{
	"/gc/gogc:percent",
	"/gc/heap/live:bytes",
	"/gc/scan/stack:bytes",
	"/gc/scan/globals:bytes",
}

// A Floor keeps the collector's heap goal at or above a size. Its methods
// are safe for concurrent use; a nil *Floor does nothing.
type Floor struct {
	floor uint64
	base  int // GOGC as Start found it

	mu      sync.Mutex
	samples []metrics.Sample
	percent int // GOGC as last set
	stopped bool
}

// Start keeps the heap goal at floor bytes or more until Stop: after every
// collection it sets GOGC to the larger of the value the process had at
// Start and the percent that puts the next goal at floor. It returns nil,
// changing nothing, when floor is 0 or the collector is off (GOGC=off).
//
// GOGC is process-wide: start one Floor per process, from main.
func Start(floor uint64) *Floor {
	if floor == 0 {
		return nil
	}
	f := &Floor{floor: floor, samples: make([]metrics.Sample, len(sampleNames))}
	for i, name := range sampleNames {
		f.samples[i].Name = name
	}
	metrics.Read(f.samples)
	for _, s := range f.samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return nil // a runtime without these metrics: leave it be
		}
	}
	// GOGC=off reads as -1 (the runtime's int32, converted).
	if f.base = int(int64(f.samples[0].Value.Uint64())); f.base < 0 {
		return nil
	}
	f.percent = f.base
	f.tune()
	f.arm()
	return f
}

// Stop ends the adjustments and restores the GOGC that Start found.
func (f *Floor) Stop() {
	if f == nil {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return
	}
	f.stopped = true
	if f.percent != f.base {
		debug.SetGCPercent(f.base)
	}
}

// sentinel is allocated and dropped once per cycle so that its cleanup
// tells the floor that a cycle has ended. It holds a pointer so that the
// runtime never batches it with other small objects into one allocation,
// where its cleanup might never run.
type sentinel struct{ _ *Floor }

// arm allocates a sentinel whose cleanup, once a collection has found it
// unreachable, adjusts GOGC to what that collection found and arms the
// next.
func (f *Floor) arm() {
	runtime.AddCleanup(&sentinel{}, func(f *Floor) {
		if f.tune() {
			f.arm()
		}
	}, f)
}

// tune sets GOGC for the heap the last cycle found live. It reports false
// once the floor is stopped.
func (f *Floor) tune() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.stopped {
		return false
	}
	metrics.Read(f.samples)
	p := percentFor(f.floor, f.samples[1].Value.Uint64(), f.samples[2].Value.Uint64(), f.samples[3].Value.Uint64(), f.base)
	if p != f.percent {
		debug.SetGCPercent(p)
		f.percent = p
	}
	return true
}

// percentFor returns the GOGC that makes the runtime's next heap goal
// about floor bytes after a cycle that found live bytes of heap live and
// scanned stacks and globals bytes of stacks and globals, never less than
// base.
//
// The runtime's goal is live + (live+stacks+globals)·GOGC/100, but at
// least runtimeMinimum·GOGC/100. The percent is capped where that minimum
// alone reaches floor; above the cap it would set the goal, beyond floor.
func percentFor(floor, live, stacks, globals uint64, base int) int {
	if live >= floor {
		return base
	}
	p := floor * 100 / runtimeMinimum
	if scanned := live + stacks + globals; scanned > 0 {
		p = min(p, (floor-live)*100/scanned)
	}
	return max(base, int(p))
}
