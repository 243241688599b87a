package agentrun

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// TokenFileName is the task token's file name in the run's directory.
const TokenFileName = "task-token"

// privateDir is the run's private directory: mode 0700, holding the task
// token file (0600) and what else the command is handed by path.
type privateDir struct {
	path string
}

// newPrivateDir makes a fresh private directory under the system's
// temporary directory (os.MkdirTemp creates it 0700 on Unix; on Windows
// the user's temporary directory is private to the user).
func newPrivateDir() (*privateDir, error) {
	p, err := os.MkdirTemp("", "mandate-run-")
	if err != nil {
		return nil, fmt.Errorf("private directory: %w", err)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Lstat(p)
		if err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
			os.RemoveAll(p)
			return nil, fmt.Errorf("private directory %s is not mode 0700", p)
		}
	}
	return &privateDir{path: p}, nil
}

// file is the path of name in the directory.
func (d *privateDir) file(name string) string { return filepath.Join(d.path, name) }

// write replaces the file name with data atomically: written to a
// temporary file (0600) in the same directory, synced, then renamed over
// it, so a reader sees the old content or the new, never a torn one.
func (d *privateDir) write(name string, data []byte) error {
	tmp, err := os.CreateTemp(d.path, "."+name+"-*")
	if err != nil {
		return err
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := renameRetry(tmp.Name(), d.file(name)); err != nil {
		return err
	}
	ok = true
	return nil
}

// renameRetry is os.Rename, retried briefly: on Windows a reader holding
// the old file open makes the replace fail for a moment.
func renameRetry(from, to string) error {
	var err error
	for i := range 20 {
		if err = os.Rename(from, to); err == nil || runtime.GOOS != "windows" {
			return err
		}
		time.Sleep(time.Duration(i+1) * 5 * time.Millisecond)
	}
	return err
}

// remove deletes the directory and everything in it.
func (d *privateDir) remove() error {
	err := os.RemoveAll(d.path)
	if _, serr := os.Lstat(d.path); err == nil && !errors.Is(serr, os.ErrNotExist) {
		err = fmt.Errorf("%s still exists", d.path)
	}
	return err
}

// newSecret is a random secret for this run only.
func newSecret() string { return rand.Text() }
