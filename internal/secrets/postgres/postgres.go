// Package postgres is the secrets broker's PostgreSQL backend: each lease
// of a postgres secret is one LOGIN role, created with a random password
// and VALID UNTIL the lease's end, granted what the secret's role template
// says; revoking the lease forbids the role to log in, terminates its
// sessions and drops it.
//
// The secret's value is the connection URL of a role that may do this: it
// needs CREATEROLE, the right to grant the template's privileges, and
// pg_signal_backend (or superuser) to terminate sessions. PostgreSQL 14 or
// later (pg_terminate_backend with a timeout). The password is sent to the
// server only as a SCRAM-SHA-256 verifier, so it is not in the server's
// statement log; only the delivery path sees it, inside the URL the lease
// delivers.
package postgres

import (
	"context"
	"crypto/hmac"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mandatehq/mandate/internal/secrets"
)

// Defaults.
const (
	// DefaultConnectTimeout bounds a connection to the database.
	DefaultConnectTimeout = 3 * time.Second
	// terminateWait is how long revocation waits for each session to end
	// (pg_terminate_backend's timeout, in milliseconds).
	terminateWait = 2000
	// scramIterations is PostgreSQL's default scram_iterations.
	scramIterations = 4096
	// rolePrefix starts every role a lease makes.
	rolePrefix = "mandate_"
)

// DialFunc dials the database server (net.Dialer.DialContext's shape).
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// Config configures a Backend.
type Config struct {
	// Dial, if set, replaces the network dialer (tests use it to take the
	// database away).
	Dial DialFunc
	// ConnectTimeout defaults to DefaultConnectTimeout.
	ConnectTimeout time.Duration
}

// Backend implements secrets.Backend for secrets.KindPostgres. It is safe
// for concurrent use: each operation uses its own short connection.
type Backend struct{ cfg Config }

var _ secrets.Backend = (*Backend)(nil)

// New returns a Backend.
func New(cfg Config) *Backend {
	if cfg.ConnectTimeout <= 0 {
		cfg.ConnectTimeout = DefaultConnectTimeout
	}
	return &Backend{cfg: cfg}
}

var errURL = errors.New("postgres: the value must be a connection URL: postgres://user:password@host:port/database?sslmode=…")

// CheckValue implements secrets.Backend: conn must be a postgres:// URL
// naming a database. Its error never repeats the value.
func (b *Backend) CheckValue(conn []byte) error {
	u, err := url.Parse(string(conn))
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") || u.Host == "" || strings.Trim(u.Path, "/") == "" || u.User == nil {
		return errURL
	}
	if _, err := pgx.ParseConfig(string(conn)); err != nil {
		return errURL
	}
	return nil
}

// RoleName is the role lease id's credential is: "mandate_" and the
// lease id's random part (lower-case base32, a valid identifier).
func RoleName(id secrets.LeaseID) string {
	return rolePrefix + strings.TrimPrefix(string(id), "lse_")
}

// Prepare implements secrets.Backend: the role name and the connection
// URL the lease delivers (the admin URL's host, port, database and
// parameters with the role and a fresh random password).
func (b *Backend) Prepare(_ *secrets.Secret, conn []byte, l *secrets.Lease) (string, []byte, error) {
	u, err := url.Parse(string(conn))
	if err != nil {
		return "", nil, errURL
	}
	role := RoleName(l.ID)
	password := rand.Text() + rand.Text() // 256 bits of [A-Z2-7]
	q := u.Query()
	q.Del("user")
	q.Del("password")
	u.RawQuery = q.Encode()
	u.User = url.UserPassword(role, password)
	return role, []byte(u.String()), nil
}

// Create implements secrets.Backend: one transaction creates the role
// and grants it the template.
func (b *Backend) Create(ctx context.Context, s *secrets.Secret, conn []byte, l *secrets.Lease, value []byte) error {
	if s.Postgres == nil {
		return errors.New("postgres: the secret has no role template")
	}
	u, err := url.Parse(string(value))
	if err != nil || u.User == nil {
		return errors.New("postgres: the lease's credential is not a URL")
	}
	password, _ := u.User.Password()
	verifier, err := scramVerifier(password)
	if err != nil {
		return err
	}
	ident := pgx.Identifier{l.Handle}.Sanitize()
	stmts := []string{
		// The verifier and the time are made of characters that cannot end
		// a literal: base64, digits, '-', ':', '.', 'T', 'Z'.
		fmt.Sprintf("CREATE ROLE %s LOGIN INHERIT PASSWORD '%s' VALID UNTIL '%s'", ident, verifier, pgTime(l.ExpiresAt)),
	}
	for _, g := range s.Postgres.Grants {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", g, ident))
	}
	for _, r := range s.Postgres.MemberOf {
		stmts = append(stmts, fmt.Sprintf("GRANT %s TO %s", pgx.Identifier{r}.Sanitize(), ident))
	}
	return b.inTx(ctx, conn, "create role", func(tx pgx.Tx) error {
		for _, q := range stmts {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// Extend implements secrets.Backend.
func (b *Backend) Extend(ctx context.Context, conn []byte, l *secrets.Lease) error {
	return b.inTx(ctx, conn, "extend role", func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, fmt.Sprintf("ALTER ROLE %s VALID UNTIL '%s'", pgx.Identifier{l.Handle}.Sanitize(), pgTime(l.ExpiresAt)))
		return err
	})
}

// Revoke implements secrets.Backend: the role may no longer log in, its
// sessions are terminated (waited for), what it owns is dropped and then
// the role. A role that does not exist is revoked already.
func (b *Backend) Revoke(ctx context.Context, conn []byte, l *secrets.Lease) error {
	if !strings.HasPrefix(l.Handle, rolePrefix) {
		return fmt.Errorf("postgres: %q is not a role this backend made", l.Handle)
	}
	c, err := b.connect(ctx, conn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	ident := pgx.Identifier{l.Handle}.Sanitize()
	var exists bool
	if err := c.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)`, l.Handle).Scan(&exists); err != nil {
		return fmt.Errorf("postgres: revoke: %w", err)
	}
	if !exists {
		return nil
	}
	if _, err := c.Exec(ctx, "ALTER ROLE "+ident+" NOLOGIN"); err != nil {
		return fmt.Errorf("postgres: revoke: %w", err)
	}
	var left int
	if err := c.QueryRow(ctx, `SELECT count(*) FILTER (WHERE NOT pg_terminate_backend(pid, $2)) FROM pg_stat_activity WHERE usename = $1`,
		l.Handle, terminateWait).Scan(&left); err != nil {
		return fmt.Errorf("postgres: revoke: terminate sessions: %w", err)
	}
	if left > 0 {
		return fmt.Errorf("postgres: revoke: %d session(s) of %s did not end in time", left, l.Handle)
	}
	tx, err := c.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: revoke: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it is a no-op
	for _, q := range []string{"DROP OWNED BY " + ident, "DROP ROLE " + ident} {
		if _, err := tx.Exec(ctx, q); err != nil {
			return fmt.Errorf("postgres: revoke: %w", err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: revoke: %w", err)
	}
	return nil
}

func (b *Backend) inTx(ctx context.Context, conn []byte, op string, fn func(pgx.Tx) error) error {
	c, err := b.connect(ctx, conn)
	if err != nil {
		return err
	}
	defer c.Close(context.WithoutCancel(ctx))
	if err := pgx.BeginFunc(ctx, c, fn); err != nil {
		return fmt.Errorf("postgres: %s: %w", op, err)
	}
	return nil
}

func (b *Backend) connect(ctx context.Context, conn []byte) (*pgx.Conn, error) {
	cfg, err := pgx.ParseConfig(string(conn))
	if err != nil {
		return nil, errURL
	}
	cfg.ConnectTimeout = b.cfg.ConnectTimeout
	if b.cfg.Dial != nil {
		cfg.DialFunc = pgconn.DialFunc(b.cfg.Dial)
	}
	c, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		// pgx's message names the host, user and database, never the
		// password.
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	return c, nil
}

// pgTime is t as a timestamptz literal's text.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000Z") }

// scramVerifier is the SCRAM-SHA-256 verifier PostgreSQL stores for
// password (RFC 5802, RFC 7677): PostgreSQL takes a password given in this
// form as already hashed.
func scramVerifier(password string) (string, error) {
	salt := make([]byte, 16)
	_, _ = rand.Read(salt)
	return scramVerifierWith(password, salt, scramIterations)
}

func scramVerifierWith(password string, salt []byte, iterations int) (string, error) {
	salted, err := pbkdf2.Key(sha256.New, password, salt, iterations, sha256.Size)
	if err != nil {
		return "", fmt.Errorf("postgres: scram: %w", err)
	}
	clientKey := hmacSHA256(salted, "Client Key")
	storedKey := sha256.Sum256(clientKey)
	serverKey := hmacSHA256(salted, "Server Key")
	enc := base64.StdEncoding.EncodeToString
	return fmt.Sprintf("SCRAM-SHA-256$%d:%s$%s:%s", iterations, enc(salt), enc(storedKey[:]), enc(serverKey)), nil
}

func hmacSHA256(key []byte, msg string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(msg))
	return m.Sum(nil)
}
