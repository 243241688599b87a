//go:build unix

package agentrun

import (
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// forwardedSignals are caught while the command runs and passed on to
// it: an interrupt, a termination request, a hang-up and a quit all end
// up ending the task once the command is gone, instead of killing mandate
// run before it can.
var forwardedSignals = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT}

// forward passes s on to p. A signal the terminal sends (interrupt,
// quit, hang-up) reaches every process of its foreground group, the
// command included, when mandate run is in it: passing it on again would
// deliver it twice (two Ctrl-C are "exit now" to many programs), so it is
// passed on only when mandate run is not in the terminal's foreground
// group — that is, when someone sent it to mandate run alone.
func forward(p *os.Process, s os.Signal) {
	if s != syscall.SIGTERM && inForegroundGroup() {
		return
	}
	_ = p.Signal(s)
}

// inForegroundGroup reports whether this process's group is the
// foreground group of the terminal on stdin.
func inForegroundGroup() bool {
	fg, err := unix.IoctlGetInt(int(os.Stdin.Fd()), unix.TIOCGPGRP)
	return err == nil && fg == unix.Getpgrp()
}

// terminate asks p to stop (SIGTERM).
func terminate(p *os.Process) { _ = p.Signal(syscall.SIGTERM) }

// exitStatus is the command's exit status as a shell reports it: its
// code, or 128+n when signal n killed it.
func exitStatus(ps *os.ProcessState) (int, bool) {
	if ps == nil {
		return 0, false
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal()), true
	}
	return ps.ExitCode(), true
}
