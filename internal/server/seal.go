package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"

	"github.com/mandatehq/mandate/internal/seal"
)

// DefaultKEKFile is the name, in the data directory, of the key-encryption
// key generated on first start when none is configured.
const DefaultKEKFile = "seal.kek"

// SealConfig says where the key-encryption keys (KEKs) that seal keys at
// rest come from (see package seal and docs/keys.md).
type SealConfig struct {
	// KEKFile is the primary KEK's file (mode 0600). Empty, with KEKEnv
	// empty too: <data_dir>/seal.kek, generated on first start.
	KEKFile string
	// KEKEnv names an environment variable holding the primary KEK.
	KEKEnv string
	// OldKEKFiles are KEKs that open but never seal: the previous KEK
	// until the re-wrap pass at start has resealed everything under the
	// primary, or the next one while it is rolled out to every replica.
	OldKEKFiles []string
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (s *SealConfig) validate(bad func(key, format string, args ...any)) {
	if s.KEKFile != "" && s.KEKEnv != "" {
		bad("seal.kek_env", "is set together with seal.kek_file: set one")
	}
	if s.KEKEnv != "" && !envName.MatchString(s.KEKEnv) {
		bad("seal.kek_env", "%q is not an environment variable name", s.KEKEnv)
	}
	if s.KEKFile != "" {
		if _, err := seal.ReadKEKFile(s.KEKFile); err != nil {
			bad("seal.kek_file", "%v", err)
		}
	}
	for i, f := range s.OldKEKFiles {
		if _, err := seal.ReadKEKFile(f); err != nil {
			bad(fmt.Sprintf("seal.old_kek_files[%d]", i), "%v", err)
		}
	}
}

// openSealer loads the KEKs, generating <data_dir>/seal.kek when none is
// configured. The returned cleanup must be called if the server then fails
// to start because the store was sealed under another KEK: a KEK generated
// just now is removed again, so that the next start says the same thing
// instead of finding a key that opens nothing.
func openSealer(cfg *Config) (*seal.Keyring, func(error) error, error) {
	def := filepath.Join(cfg.DataDir, DefaultKEKFile)
	r, created, err := seal.LoadKeyring(seal.Sources{
		File: cfg.Seal.KEKFile, Env: cfg.Seal.KEKEnv, OldFiles: cfg.Seal.OldKEKFiles, DefaultFile: def,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("key-encryption key: %w", err)
	}
	cleanup := func(startErr error) error {
		if !errors.Is(startErr, seal.ErrUnknownKEK) {
			return startErr
		}
		hint := "restore the key-encryption key the store was sealed with (seal.kek_file or seal.kek_env; see docs/keys.md); a new one would not open it"
		if created {
			_ = os.Remove(def)
			hint = fmt.Sprintf("%s did not exist, so a new key-encryption key was made, but the store was sealed with another one: %s", def, hint)
		}
		return fmt.Errorf("%w\n%s", startErr, hint)
	}
	return r, cleanup, nil
}
