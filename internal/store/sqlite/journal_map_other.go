//go:build !linux

package sqlite

import "errors"

// Elsewhere the journal appends with writes: allocating ahead portably
// (ftruncate) would not reserve the space, so a full disk would surface
// as a fault in the mapping rather than as an error from the append.
// The cost on Linux, where both ways exist, is in docs/audit.md.

// allocate switches the journal to writes, for good.
func (j *journal) allocate(int64) error {
	j.writes = true
	return nil
}

// copyFrame is never called: the journal never maps its file here.
func (j *journal) copyFrame([]byte) error {
	return errors.New("the journal is not mapped on this platform")
}

// unmap has nothing to release: the journal never maps its file here.
func (j *journal) unmap() {}
