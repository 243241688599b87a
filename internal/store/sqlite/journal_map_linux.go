//go:build linux

package sqlite

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// On Linux the journal allocates its file ahead with fallocate(2) and
// appends by copying frames into a shared mapping of the allocated space
// (see the journal's doc in journal.go).

// journalChunk is how much space the journal allocates ahead of its
// frames at a time, and about how much of it is mapped.
const journalChunk = 4 << 20

// allocate makes sure the file has space allocated, and mapped, up to
// byte n (the end of the frame about to be appended); it moves the
// window forward a chunk at a time, and falls back to writes for good
// where the file system cannot allocate ahead or the file be mapped.
func (j *journal) allocate(n int64) error {
	if j.writes || j.m != nil && n <= j.mapOff+int64(len(j.m)) {
		return nil
	}
	start := j.size &^ int64(pageSize-1)
	end := (n + journalChunk - 1) / journalChunk * journalChunk
	if err := unix.Fallocate(int(j.f.Fd()), 0, 0, end); err != nil {
		if errors.Is(err, unix.ENOSPC) || errors.Is(err, unix.EDQUOT) {
			return fmt.Errorf("ledger journal: allocate %d bytes: %w", end, err)
		}
		// The file system cannot allocate ahead (EOPNOTSUPP, or EINVAL
		// from some): write instead, rather than refuse every action.
		j.unmap()
		j.writes = true
		return nil
	}
	j.unmap()
	m, err := unix.Mmap(int(j.f.Fd()), start, int(end-start), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		j.writes = true
		return nil
	}
	j.m, j.mapOff = m, start
	return nil
}

// copyFrame copies frame into the mapping at the end of the journal and,
// if synchronous, syncs the pages it touched. A fault (the file was cut
// short by something else) is an error, not a crash.
func (j *journal) copyFrame(frame []byte) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("the mapped file faulted (was it cut short?): %v", r)
		}
	}()
	at := j.size - j.mapOff
	end := at + int64(len(frame))
	copy(j.m[at:end], frame)
	if !j.sync {
		return nil
	}
	if err := unix.Msync(j.m[at&^int64(pageSize-1):end], unix.MS_SYNC); err != nil {
		// Not durable, so not acknowledged: keep it from reading as a
		// frame should the pages reach the disk later.
		clear(j.m[at : at+frameHeader])
		return err
	}
	return nil
}

var pageSize = os.Getpagesize()

// unmap releases the mapping, if any.
func (j *journal) unmap() {
	if j.m != nil {
		_ = unix.Munmap(j.m)
		j.m = nil
	}
}
