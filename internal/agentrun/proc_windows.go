//go:build windows

package agentrun

import "os"

// forwardedSignals are caught while the command runs, so that mandate
// run outlives an interrupt and ends the task once the command is gone.
var forwardedSignals = []os.Signal{os.Interrupt}

// forward does nothing on Windows: Ctrl+C and Ctrl+Break reach every
// process attached to the console, the command included, and Windows has
// no way to send os.Interrupt to one process.
func forward(*os.Process, os.Signal) {}

// terminate stops p (Windows has no polite way to ask).
func terminate(p *os.Process) { _ = p.Kill() }

// exitStatus is the command's exit code.
func exitStatus(ps *os.ProcessState) (int, bool) {
	if ps == nil {
		return 0, false
	}
	return ps.ExitCode(), true
}
