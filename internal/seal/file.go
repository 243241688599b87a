package seal

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
)

// maxKEKFileSize bounds what ReadKEKFile reads.
const maxKEKFileSize = 4 << 10

// ReadKEKFile reads a KEK (text form, see ParseKEK) from a regular file
// that only its owner may read: on unix a file whose mode gives the group
// or others any access is refused.
func ReadKEKFile(path string) (KEK, error) {
	f, err := os.Open(path)
	if err != nil {
		return KEK{}, fmt.Errorf("seal: key-encryption key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return KEK{}, fmt.Errorf("seal: key-encryption key file: %w", err)
	}
	if err := checkMode(path, st); err != nil {
		return KEK{}, err
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKEKFileSize+1))
	if err != nil {
		return KEK{}, fmt.Errorf("seal: read key-encryption key file %s: %w", path, err)
	}
	if len(b) > maxKEKFileSize {
		return KEK{}, fmt.Errorf("seal: key-encryption key file %s is too large to be a key", path)
	}
	k, err := ParseKEK(b)
	if err != nil {
		return KEK{}, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

func checkMode(path string, st fs.FileInfo) error {
	if !st.Mode().IsRegular() {
		return fmt.Errorf("seal: key-encryption key file %s is not a regular file", path)
	}
	if runtime.GOOS != "windows" && st.Mode().Perm()&0o077 != 0 {
		return fmt.Errorf("seal: key-encryption key file %s is accessible by other users (mode %v): chmod 600 it", path, st.Mode().Perm())
	}
	return nil
}

// LoadOrCreateKEKFile reads the KEK in path, or, when path does not exist,
// generates one and creates path with mode 0600 atomically: the key is
// written and synced under a temporary name, then linked into place, which
// fails rather than replaces if another process created path meanwhile (its
// key is then used). created reports whether the key is new. An existing
// file that cannot be read or parsed is an error, never replaced.
func LoadOrCreateKEKFile(path string) (k KEK, created bool, err error) {
	k, err = ReadKEKFile(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, false, err
	}
	if k, err = GenerateKEK(); err != nil {
		return KEK{}, false, err
	}
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*") // mode 0600
	if err != nil {
		return KEK{}, false, fmt.Errorf("seal: create key-encryption key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(k.Text())
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return KEK{}, false, fmt.Errorf("seal: write key-encryption key file: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			k, err = ReadKEKFile(path)
			return k, false, err
		}
		return KEK{}, false, fmt.Errorf("seal: create key-encryption key file: %w", err)
	}
	syncDir(dir)
	return k, true, nil
}

// syncDir makes a new directory entry durable where the OS allows it.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not every OS syncs directories
		_ = d.Close()
	}
}

// Sources says where a keyring's KEKs come from.
type Sources struct {
	// File is the primary KEK's file.
	File string
	// Env is the name of an environment variable holding the primary KEK
	// (its text form). At most one of File and Env is set.
	Env string
	// OldFiles are further KEKs that open but never seal: previous KEKs
	// until a re-wrap pass has resealed everything, or the next one while
	// it is being rolled out.
	OldFiles []string
	// DefaultFile is the primary KEK's file when File and Env are empty:
	// created (see LoadOrCreateKEKFile) if it does not exist.
	DefaultFile string
	// Getenv looks Env up; nil means os.Getenv.
	Getenv func(string) string
}

// LoadKeyring builds the keyring s describes. created reports that
// DefaultFile was generated just now.
func LoadKeyring(s Sources) (_ *Keyring, created bool, err error) {
	var primary KEK
	switch {
	case s.File != "" && s.Env != "":
		return nil, false, errors.New("seal: set the key-encryption key's file or its environment variable, not both")
	case s.File != "":
		primary, err = ReadKEKFile(s.File)
	case s.Env != "":
		getenv := s.Getenv
		if getenv == nil {
			getenv = os.Getenv
		}
		v := getenv(s.Env)
		if v == "" {
			return nil, false, fmt.Errorf("seal: environment variable %s (the key-encryption key) is not set", s.Env)
		}
		if primary, err = ParseKEK([]byte(v)); err != nil {
			err = fmt.Errorf("environment variable %s: %w", s.Env, err)
		}
	case s.DefaultFile != "":
		primary, created, err = LoadOrCreateKEKFile(s.DefaultFile)
	default:
		return nil, false, errors.New("seal: no key-encryption key configured")
	}
	if err != nil {
		return nil, false, err
	}
	var old []KEK
	for _, f := range s.OldFiles {
		k, err := ReadKEKFile(f)
		if err != nil {
			return nil, false, err
		}
		old = append(old, k)
	}
	r, err := NewKeyring(primary, old...)
	return r, created, err
}
