// Package proctime reads the CPU time the current process has used, for
// benchmarks and load harnesses that report CPU per operation rather
// than wall time alone.
package proctime

import "time"

// CPU is the CPU time (user and system) the process has used so far, or 0
// if the operating system will not say.
func CPU() time.Duration { return cpu() }
