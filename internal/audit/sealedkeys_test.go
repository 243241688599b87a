package audit_test

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
	"github.com/mandatehq/mandate/internal/store/sqlite"
)

// TestLedgerKeysSealed: the checkpoint signing key and the HMAC key the
// ledger keeps in the store are sealed; keys stored in the clear by an
// older mandate are sealed in place and stay the same keys; a wrong KEK
// refuses to open the ledger rather than making new keys.
func TestLedgerKeysSealed(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	db, err := sqlite.Open(ctx, t.TempDir()+"/m.db")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// An older mandate stored both keys in the clear.
	skey, vkey, err := note.GenerateKey(nil, "example.org/audit")
	if err != nil {
		t.Fatal(err)
	}
	hkey := bytes.Repeat([]byte{0x42}, 32)
	for name, k := range map[string][]byte{"checkpoint-signer": []byte(skey), "hmac": hkey} {
		if _, err := db.LedgerKey(ctx, name, func() ([]byte, error) { return k, nil }); err != nil {
			t.Fatal(err)
		}
	}
	l, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: db, Sealer: sealtest.Keyring(), CheckpointInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	if l.VerifierKey() != vkey {
		t.Errorf("VerifierKey() = %s after sealing, want the stored key's %s", l.VerifierKey(), vkey)
	}
	for name, clear := range map[string][]byte{"checkpoint-signer": []byte(skey), "hmac": hkey} {
		stored, err := db.LedgerKey(ctx, name, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !seal.IsSealed(stored) || bytes.Contains(stored, clear) {
			t.Errorf("ledger key %s is stored in the clear after NewLedger", name)
		}
		if got, err := sealtest.Keyring().Open(audit.LedgerKeySealPurpose, name, stored); err != nil || !bytes.Equal(got, clear) {
			t.Errorf("sealed ledger key %s opens to %q, %v, want the original key", name, got, err)
		}
	}
	other, _ := seal.GenerateKEK()
	wrong, _ := seal.NewKeyring(other)
	if _, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: db, Sealer: wrong, CheckpointInterval: -1}); !errors.Is(err, seal.ErrUnknownKEK) {
		t.Errorf("NewLedger(wrong KEK) = %v, want ErrUnknownKEK", err)
	}
	if _, err := audit.NewLedger(ctx, audit.LedgerConfig{Store: db, CheckpointInterval: -1}); err == nil {
		t.Errorf("NewLedger(no sealer) = nil error")
	}
}
