package serveproc

import (
	"os/exec"
	"syscall"
)

// dieWithParent has the kernel send the child SIGTERM if this process
// dies without stopping it (killed, or a test binary's -timeout panic).
// The signal follows the thread that started the child; Go ends threads
// only when a goroutine locked to one exits, which the harnesses do not.
func dieWithParent(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
}
