//go:build unix

package sqlite

import (
	"os"
	"syscall"
)

// errWouldBlock is what lockFile returns when another holder has the lock.
var errWouldBlock = syscall.EWOULDBLOCK

// lockFile takes an exclusive advisory lock on f without waiting; it is
// released when f is closed.
func lockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
