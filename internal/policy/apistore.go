package policy

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// APIStore keeps the policies managed through the admin API as files
// named <name>.cedar in one directory (inside the data directory), written
// atomically. A Loader with APIDir set reads them with the policy
// directory's files. Files, rather than a database table, keep the policy
// sources inspectable and diffable, and need no schema migration.
type APIStore struct {
	Dir string
}

// ErrPolicyNotFound: no API-managed policy of that name.
var ErrPolicyNotFound = errors.New("policy not found")

var policyNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// ValidName reports whether name can name an API-managed policy: 1-64 of
// a-z, 0-9, "_" and "-", starting with a letter or digit.
func ValidName(name string) error {
	if !policyNameRE.MatchString(name) {
		return fmt.Errorf("%w: policy name %q must be 1-64 characters of a-z, 0-9, _ and -", ErrInvalidPolicy, name)
	}
	return nil
}

// SourceName is the source name of an API-managed policy.
func SourceName(name string) string { return "api:" + name }

// List returns the API-managed policies as sources, by name.
func (s APIStore) List() ([]Source, error) {
	entries, err := os.ReadDir(s.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("api policies: %w", err)
	}
	var out []Source
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".cedar")
		if !ok || e.IsDir() || ValidName(name) != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join(s.Dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("api policies: %w", err)
		}
		out = append(out, Source{Name: SourceName(name), Text: b})
	}
	slices.SortFunc(out, func(a, b Source) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// Put writes (or replaces) the policy document name.
func (s APIStore) Put(name string, text []byte) error {
	if err := ValidName(name); err != nil {
		return err
	}
	if len(text) > MaxSourceSize {
		return fmt.Errorf("%w: larger than %d bytes", ErrInvalidPolicy, MaxSourceSize)
	}
	if err := os.MkdirAll(s.Dir, 0o700); err != nil {
		return fmt.Errorf("api policies: %w", err)
	}
	tmp, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return fmt.Errorf("api policies: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(text); err != nil {
		tmp.Close()
		return fmt.Errorf("api policies: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("api policies: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("api policies: %w", err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(s.Dir, name+".cedar")); err != nil {
		return fmt.Errorf("api policies: %w", err)
	}
	return nil
}

// Delete removes the policy document name, or returns ErrPolicyNotFound.
func (s APIStore) Delete(name string) error {
	if err := ValidName(name); err != nil {
		return err
	}
	err := os.Remove(filepath.Join(s.Dir, name+".cedar"))
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %s", ErrPolicyNotFound, name)
	}
	if err != nil {
		return fmt.Errorf("api policies: %w", err)
	}
	return nil
}
