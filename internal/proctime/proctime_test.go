package proctime_test

import (
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/proctime"
)

// TestCPUCountsWork: 50 ms of spinning adds to the process's CPU time.
func TestCPUCountsWork(t *testing.T) {
	before := proctime.CPU()
	x := 0
	for start := time.Now(); time.Since(start) < 50*time.Millisecond; {
		for i := range 1 << 16 {
			x += i
		}
	}
	if got := proctime.CPU(); got <= before {
		t.Fatalf("CPU() = %v after spinning, want more than %v (%d)", got, before, x)
	}
}
