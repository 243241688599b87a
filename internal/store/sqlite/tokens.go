package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/mandatehq/mandate/internal/token"
)

var _ token.Store = (*DB)(nil)

// ErrKeyNotFound is returned (wrapped) by RetireSigningKey for an unknown
// kid. The token package defines no sentinel for it.
var ErrKeyNotFound = errors.New("signing key not found")

const (
	// qUseOnce inserts an identifier, or takes over a row whose expiry
	// has passed; a live row makes the upsert change nothing.
	qUseOnce = `INSERT INTO used_once (namespace, id, expires_at) VALUES (?, ?, ?)
		ON CONFLICT (namespace, id) DO UPDATE SET expires_at = excluded.expires_at
		WHERE used_once.expires_at <= ?`
	qRevokeToken = `INSERT INTO revoked_tokens (jti, expires_at) VALUES (?, ?)
		ON CONFLICT (jti) DO UPDATE SET expires_at = max(expires_at, excluded.expires_at)`
)

// AddSigningKey implements token.Store.
func (db *DB) AddSigningKey(ctx context.Context, k token.SigningKey) error {
	err := checkTimes(k.CreatedAt, k.RetiredAt, k.PublishUntil)
	if err == nil {
		_, err = db.writer.ExecContext(ctx, `INSERT INTO signing_keys (kid, algorithm, sealed_key, public_jwk, created_at, retired_at, publish_until)
			VALUES (?, ?, ?, ?, ?, ?, ?)`,
			k.KID, k.Algorithm, k.SealedKey, k.PublicJWK, timeArg(k.CreatedAt), timeArg(k.RetiredAt), timeArg(k.PublishUntil))
		if isUnique(err) {
			err = fmt.Errorf("%w: %s", token.ErrKeyExists, k.KID)
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: add signing key: %w", db.classify(err))
	}
	return nil
}

// RetireSigningKey implements token.Store. It returns ErrKeyNotFound for
// an unknown kid.
func (db *DB) RetireSigningKey(ctx context.Context, kid string, retiredAt, publishUntil time.Time) error {
	err := checkTimes(retiredAt, publishUntil)
	if err == nil {
		var res sql.Result
		res, err = db.writer.ExecContext(ctx, `UPDATE signing_keys SET retired_at = ?, publish_until = ? WHERE kid = ?`,
			timeArg(retiredAt), timeArg(publishUntil), kid)
		if err == nil {
			var n int64
			if n, err = res.RowsAffected(); err == nil && n == 0 {
				err = fmt.Errorf("%w: %s", ErrKeyNotFound, kid)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: retire signing key: %w", db.classify(err))
	}
	return nil
}

// SigningKeys implements token.Store.
func (db *DB) SigningKeys(ctx context.Context, now time.Time) ([]token.SigningKey, error) {
	keys, err := db.signingKeys(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("sqlite: signing keys: %w", err)
	}
	return keys, nil
}

func (db *DB) signingKeys(ctx context.Context, now time.Time) ([]token.SigningKey, error) {
	if err := checkTimes(now); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT kid, algorithm, sealed_key, public_jwk, created_at, retired_at, publish_until
		FROM signing_keys WHERE publish_until IS NULL OR publish_until > ?
		ORDER BY created_at, kid`, now.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var keys []token.SigningKey
	for rows.Next() {
		var k token.SigningKey
		var created, retired, until sql.NullInt64
		if err := rows.Scan(&k.KID, &k.Algorithm, &k.SealedKey, &k.PublicJWK, &created, &retired, &until); err != nil {
			return nil, err
		}
		k.CreatedAt, k.RetiredAt, k.PublishUntil = timeVal(created), timeVal(retired), timeVal(until)
		keys = append(keys, k)
	}
	return keys, rows.Err()
}

// DeleteSigningKeys implements token.Store.
func (db *DB) DeleteSigningKeys(ctx context.Context, now time.Time) error {
	err := checkTimes(now)
	if err == nil {
		_, err = db.writer.ExecContext(ctx, `DELETE FROM signing_keys WHERE publish_until IS NOT NULL AND publish_until <= ?`, now.UnixNano())
	}
	if err != nil {
		return fmt.Errorf("sqlite: delete signing keys: %w", db.classify(err))
	}
	return nil
}

// ResealSigningKey implements token.Store. The old value is overwritten
// on disk, not just unlinked (secure_delete), and the WAL is then
// checkpointed and truncated, so that a key stored in the clear before
// sealing does not linger in free pages or old WAL frames.
func (db *DB) ResealSigningKey(ctx context.Context, kid string, old, sealed, publicJWK []byte) error {
	err := db.secureWrite(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, `UPDATE signing_keys SET sealed_key = ?, public_jwk = ? WHERE kid = ? AND sealed_key = ?`,
			sealed, publicJWK, kid, old)
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return cmp.Or(err, fmt.Errorf("%w: %s", token.ErrKeyChanged, kid))
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("sqlite: reseal signing key: %w", err)
	}
	return nil
}

// secureWrite runs fn in a write transaction with secure_delete on, so
// that what it overwrites or deletes is zeroed in the file, and then
// checkpoints and truncates the WAL, which may still hold pages with the
// old content. It is for the rare writes that replace key material.
func (db *DB) secureWrite(ctx context.Context, fn func(tx *sql.Tx) error) (err error) {
	conn, err := db.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA secure_delete = ON`); err != nil {
		return err
	}
	defer func() {
		// Best effort: left on, it would only cost zeroing.
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA secure_delete = OFF`)
	}()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer rollback(tx, &err)
	if err = fn(tx); err != nil {
		return err
	}
	if err = tx.Commit(); err != nil {
		return err
	}
	// Readers may hold the WAL open; then the truncation happens at a later
	// checkpoint.
	_, _ = conn.ExecContext(ctx, `PRAGMA wal_checkpoint(TRUNCATE)`)
	return nil
}

// UseOnce implements token.Store. A remembered identifier whose expiry is
// not after the current time (see WithClock) counts as forgotten, even
// before PruneUsed removes it.
func (db *DB) UseOnce(ctx context.Context, namespace, id string, expiresAt time.Time) error {
	err := checkTimes(expiresAt)
	if err == nil && expiresAt.IsZero() {
		err = errors.New("expiry is required")
	}
	if err == nil {
		var res sql.Result
		res, err = db.writeStmt(qUseOnce).ExecContext(ctx, namespace, id, expiresAt.UnixNano(), db.now().UnixNano())
		if err == nil {
			var n int64
			if n, err = res.RowsAffected(); err == nil && n == 0 {
				err = fmt.Errorf("%w: %s %q", token.ErrReplay, namespace, id)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("sqlite: use once: %w", db.classify(err))
	}
	return nil
}

// PruneUsed implements token.Store. It also forgets revoked tokens whose
// own expiry has passed, which RevokedTokens no longer returns.
func (db *DB) PruneUsed(ctx context.Context, now time.Time) error {
	err := checkTimes(now)
	if err == nil {
		err = db.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, `DELETE FROM used_once WHERE expires_at <= ?`, now.UnixNano()); err != nil {
				return err
			}
			_, err := tx.ExecContext(ctx, `DELETE FROM revoked_tokens WHERE expires_at <= ?`, now.UnixNano())
			return err
		})
	}
	if err != nil {
		return fmt.Errorf("sqlite: prune used: %w", err)
	}
	return nil
}

// RevokeToken implements token.Store. Revoking again keeps the later of
// the two expiries.
func (db *DB) RevokeToken(ctx context.Context, jti string, expiresAt time.Time) error {
	err := checkTimes(expiresAt)
	if err == nil && expiresAt.IsZero() {
		err = errors.New("expiry is required")
	}
	if err == nil {
		_, err = db.writeStmt(qRevokeToken).ExecContext(ctx, jti, expiresAt.UnixNano())
	}
	if err != nil {
		return fmt.Errorf("sqlite: revoke token: %w", db.classify(err))
	}
	return nil
}

// RevokedTokens implements token.Store. The jtis are sorted.
func (db *DB) RevokedTokens(ctx context.Context, now time.Time) ([]string, error) {
	jtis, err := db.revokedTokens(ctx, now)
	if err != nil {
		return nil, fmt.Errorf("sqlite: revoked tokens: %w", err)
	}
	return jtis, nil
}

func (db *DB) revokedTokens(ctx context.Context, now time.Time) ([]string, error) {
	if err := checkTimes(now); err != nil {
		return nil, err
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT jti FROM revoked_tokens WHERE expires_at > ? ORDER BY jti`, now.UnixNano())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var jtis []string
	for rows.Next() {
		var jti string
		if err := rows.Scan(&jti); err != nil {
			return nil, err
		}
		jtis = append(jtis, jti)
	}
	return jtis, rows.Err()
}
