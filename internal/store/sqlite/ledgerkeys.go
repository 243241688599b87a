package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mandatehq/mandate/internal/audit"
)

// ReplaceLedgerKey implements audit.Store. Like ResealSigningKey, it
// overwrites the old value in the file and truncates the WAL.
func (db *DB) ReplaceLedgerKey(ctx context.Context, name string, old, key []byte) error {
	err := db.secureWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE ledger_keys SET key = ? WHERE name = ? AND key = ?`, key, name, old)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err == nil && n == 0 {
			err = fmt.Errorf("%w: %s", audit.ErrLedgerKeyChanged, name)
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("sqlite: replace ledger key %q: %w", name, err)
	}
	return nil
}
