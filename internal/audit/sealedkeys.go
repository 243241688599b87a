package audit

import (
	"context"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/seal"
)

// LedgerKeySealPurpose is the seal purpose under which the ledger's keys
// (the checkpoint signing key and the HMAC key) are sealed in the store;
// the record id is the key's name.
const LedgerKeySealPurpose = "audit.ledger_key"

// ErrLedgerKeyChanged is returned by Store.ReplaceLedgerKey when the
// stored key is gone or no longer the one being replaced.
var ErrLedgerKeyChanged = errors.New("ledger key changed concurrently")

// openLedgerKey returns the ledger key stored under name, in the clear,
// storing a sealed one made by generate if there is none. A key stored in
// the clear (before sealing) is sealed in place, and one sealed under an old
// KEK is sealed again under the primary one. A key that does not open is an
// error: never a reason to make a new one.
func openLedgerKey(ctx context.Context, st Store, sealer *seal.Keyring, name string, generate func() ([]byte, error)) ([]byte, error) {
	stored, err := st.LedgerKey(ctx, name, func() ([]byte, error) {
		k, err := generate()
		if err != nil {
			return nil, err
		}
		defer clear(k)
		return sealer.Seal(LedgerKeySealPurpose, name, k)
	})
	if err != nil {
		return nil, err
	}
	key := stored
	if seal.IsSealed(stored) {
		if key, err = sealer.Open(LedgerKeySealPurpose, name, stored); err != nil {
			return nil, err
		}
		if !sealer.NeedsReseal(stored) {
			return key, nil
		}
	}
	sealed, err := sealer.Seal(LedgerKeySealPurpose, name, key)
	if err != nil {
		return nil, err
	}
	// Another replica may have resealed it first: the key is the same.
	if err := st.ReplaceLedgerKey(ctx, name, stored, sealed); err != nil && !errors.Is(err, ErrLedgerKeyChanged) {
		return nil, fmt.Errorf("reseal: %w", err)
	}
	return key, nil
}
