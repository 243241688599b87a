//go:build unix

package agentrun

import (
	"bytes"
	"errors"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// TestRunSignals: SIGTERM or SIGINT sent to mandate run (not from a
// terminal) is passed on to the command; the command dies of it, mandate
// run exits 128+n as a shell would, and the task ends.
func TestRunSignals(t *testing.T) {
	t.Parallel()
	e := newTestEnv(t, nil)
	bin := mandateBinary(t)
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT} {
		out := filepath.Join(e.dir, sig.String()+".json")
		cmd := exec.Command(bin, append(e.runArgs("--"), helperCommand("sleep", out)...)...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		rep := waitReport(t, out)
		if err := cmd.Process.Signal(sig); err != nil {
			t.Fatal(err)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 128+int(sig) {
			t.Errorf("%v: mandate run = %v, want exit status %d\n%s", sig, err, 128+int(sig), stderr.String())
		}
		if st := e.decide(rep["token"]); st != http.StatusUnauthorized {
			t.Errorf("%v: a decision with the token after the run = %d, want 401", sig, st)
		}
		if got := e.task(t, rep["task_id"]); got["status"] != "ended" {
			t.Errorf("%v: task status %v, want ended", sig, got["status"])
		}
		if _, err := os.Stat(rep["token_file"]); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%v: the token file is still there", sig)
		}
	}
}
