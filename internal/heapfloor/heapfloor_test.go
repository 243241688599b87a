package heapfloor

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

// The tests change the process's GOGC, so none runs in parallel.

func TestPercentFor(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name                       string
		floor, live, stack, global uint64
		base                       int
		want                       int
	}{
		{"before the first cycle", 64 * mib, 0, 0, 0, 100, 1600},
		{"tiny heap: capped where the runtime's minimum reaches the floor", 64 * mib, 1 * mib, 0, 0, 100, 1600},
		{"small heap", 64 * mib, 16 * mib, 0, 0, 100, 300},
		{"stacks and globals count", 64 * mib, 16 * mib, 8 * mib, 8 * mib, 100, 150},
		{"half the floor needs none", 64 * mib, 32 * mib, 0, 0, 100, 100},
		{"large heap", 64 * mib, 48 * mib, 0, 0, 100, 100},
		{"beyond the floor", 64 * mib, 80 * mib, 0, 0, 100, 100},
		{"a higher GOGC stays", 64 * mib, 16 * mib, 0, 0, 400, 400},
		{"GOGC=0 is raised too", 64 * mib, 16 * mib, 0, 0, 0, 300},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentFor(tt.floor, tt.live, tt.stack, tt.global, tt.base); got != tt.want {
				t.Errorf("percentFor(%d, %d, %d, %d, %d) = %d, want %d", tt.floor, tt.live, tt.stack, tt.global, tt.base, got, tt.want)
			}
		})
	}
}

// keepGOGC restores the test process's GOGC when the test ends.
func keepGOGC(t *testing.T) {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	t.Cleanup(func() { debug.SetGCPercent(p) })
}

func readUint(name string) uint64 {
	s := []metrics.Sample{{Name: name}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// gogc is the GOGC in force, as the runtime reports it.
func gogc() int { return int(int64(readUint("/gc/gogc:percent"))) }

// waitPercent collects until the floor has set GOGC to want: the floor
// adjusts from a cleanup, some time after each cycle.
func waitPercent(t *testing.T, want func(int) bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !want(gogc()) {
		if time.Now().After(deadline) {
			t.Fatalf("GOGC is still %d", gogc())
		}
		runtime.GC()
		time.Sleep(time.Millisecond)
	}
}

var sink []byte

// churn allocates n bytes of short-lived garbage and returns how many
// collections ran meanwhile.
func churn(n int) uint64 {
	c0 := readUint("/gc/cycles/total:gc-cycles")
	for i := 0; i < n/(32<<10); i++ {
		sink = make([]byte, 32<<10)
	}
	sink = nil
	return readUint("/gc/cycles/total:gc-cycles") - c0
}

func TestFloorSpacesCollections(t *testing.T) {
	keepGOGC(t)
	debug.SetGCPercent(100)
	runtime.GC()
	without := churn(256 << 20)

	const floor = 64 << 20
	f := Start(floor)
	if f == nil {
		t.Fatal("Start(64 MiB) = nil with GOGC=100")
	}
	defer f.Stop()
	waitPercent(t, func(p int) bool { return p > 100 })
	if goal := readUint("/gc/heap/goal:bytes"); goal < floor*9/10 {
		t.Errorf("heap goal %d MiB with a floor of 64 MiB and GOGC=%d", goal>>20, gogc())
	}
	with := churn(256 << 20)
	// 256 MiB of garbage fills a 64 MiB goal four times; at Go's 4 MiB
	// minimum, over fifty.
	if with > 8 {
		t.Errorf("%d collections for 256 MiB of garbage with a 64 MiB floor, want at most 8", with)
	}
	t.Logf("256 MiB of garbage: %d collections at Go's minimum, %d with a 64 MiB floor (GOGC=%d)", without, with, gogc())
	if without < 4*with {
		t.Errorf("%d collections without a floor, %d with it: want at least 4 times fewer", without, with)
	}
}

func TestFloorYieldsToLargeHeap(t *testing.T) {
	keepGOGC(t)
	debug.SetGCPercent(100)
	f := Start(64 << 20)
	defer f.Stop()
	waitPercent(t, func(p int) bool { return p > 100 })

	live := make([][]byte, 48)
	for i := range live {
		live[i] = make([]byte, 1<<20)
	}
	waitPercent(t, func(p int) bool { return p == 100 })
	runtime.KeepAlive(live)

	live = nil
	waitPercent(t, func(p int) bool { return p > 100 })
}

func TestStopRestoresGOGC(t *testing.T) {
	keepGOGC(t)
	debug.SetGCPercent(150)
	f := Start(64 << 20)
	waitPercent(t, func(p int) bool { return p > 150 })
	f.Stop()
	f.Stop()
	if p := debug.SetGCPercent(100); p != 150 {
		t.Errorf("GOGC after Stop = %d, want 150", p)
	}
	// No cleanup sets it again.
	runtime.GC()
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if p := debug.SetGCPercent(100); p != 100 {
		t.Errorf("GOGC after Stop and two cycles = %d, want 100 as set", p)
	}
}

func TestStartLeavesGCOff(t *testing.T) {
	keepGOGC(t)
	debug.SetGCPercent(-1)
	if f := Start(64 << 20); f != nil {
		f.Stop()
		t.Fatal("Start with GOGC=off returned a floor")
	}
	if p := debug.SetGCPercent(-1); p != -1 {
		t.Errorf("GOGC = %d, want off", p)
	}
	if f := Start(0); f != nil {
		t.Error("Start(0) returned a floor")
	}
	var none *Floor
	none.Stop() // a nil floor does nothing
}
