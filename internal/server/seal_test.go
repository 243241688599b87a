package server

import (
	"bytes"
	"crypto/ed25519"
	"database/sql"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	_ "modernc.org/sqlite"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/token"
)

// TestDatabaseHoldsNoPrivateKeyMaterial: a real server on SQLite signs
// and rotates keys; afterwards neither any column of any table nor the raw
// bytes of the database and its WAL hold a private JWK, a note signer key,
// a PEM block, or the raw bytes of any key the server used (found by
// unsealing with the KEK, which the database alone does not give).
func TestDatabaseHoldsNoPrivateKeyMaterial(t *testing.T) {
	cfg := testConfig(t)
	s, stop := startServer(t, cfg)
	kr := s.authz.Keyring()
	for range 2 {
		if err := kr.Rotate(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(cfg.DataDir, "mandate.db")
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sealer, _, err := seal.LoadKeyring(seal.Sources{File: filepath.Join(cfg.DataDir, DefaultKEKFile)})
	if err != nil {
		t.Fatal(err)
	}
	// The secrets to look for: every signing key's private bytes and the
	// ledger keys, unsealed.
	var secrets [][]byte
	rows, err := db.Query(`SELECT kid, sealed_key FROM signing_keys`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var kid string
		var blob []byte
		if err := rows.Scan(&kid, &blob); err != nil {
			t.Fatal(err)
		}
		plain, err := sealer.Open(token.SealPurpose, kid, blob)
		if err != nil {
			t.Fatalf("signing key %s: %v", kid, err)
		}
		var jwk jose.JSONWebKey
		if err := jwk.UnmarshalJSON(plain); err != nil {
			t.Fatal(err)
		}
		priv := jwk.Key.(ed25519.PrivateKey)
		var m map[string]string
		_ = json.Unmarshal(plain, &m)
		secrets = append(secrets, priv.Seed(), []byte(m["d"]), plain)
	}
	rows.Close()
	if len(secrets) < 9 {
		t.Fatalf("found %d signing keys, want 3", len(secrets)/3)
	}
	for _, name := range []string{"checkpoint-signer", "hmac"} {
		var blob []byte
		if err := db.QueryRow(`SELECT key FROM ledger_keys WHERE name = ?`, name).Scan(&blob); err != nil {
			t.Fatal(err)
		}
		plain, err := sealer.Open(audit.LedgerKeySealPurpose, name, blob)
		if err != nil {
			t.Fatalf("ledger key %s: %v", name, err)
		}
		secrets = append(secrets, plain)
	}
	markers := [][]byte{[]byte(`"d":`), []byte("PRIVATE+KEY"), []byte("-----BEGIN")}
	check := func(where string, b []byte) {
		for _, m := range markers {
			if bytes.Contains(b, m) {
				t.Errorf("%s contains %q", where, m)
			}
		}
		for i, sec := range secrets {
			if len(sec) >= 16 && bytes.Contains(b, sec) {
				t.Errorf("%s contains key material #%d", where, i)
			}
		}
	}
	tables, err := db.Query(`SELECT name FROM sqlite_master WHERE type = 'table'`)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for tables.Next() {
		var n string
		_ = tables.Scan(&n)
		names = append(names, n)
	}
	tables.Close()
	for _, tbl := range names {
		r, err := db.Query(`SELECT * FROM "` + strings.ReplaceAll(tbl, `"`, `""`) + `"`)
		if err != nil {
			t.Fatal(err)
		}
		cols, _ := r.Columns()
		for r.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := r.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			for i, v := range vals {
				switch v := v.(type) {
				case []byte:
					check(tbl+"."+cols[i], v)
				case string:
					check(tbl+"."+cols[i], []byte(v))
				}
			}
		}
		r.Close()
	}
	for _, f := range []string{dbPath, dbPath + "-wal"} {
		if b, err := os.ReadFile(f); err == nil {
			check(filepath.Base(f), b)
		}
	}
}

// TestWrongKEKRefusesToStart: the store was sealed with one KEK; a server
// given another refuses to start with a clear error and makes no new key.
func TestWrongKEKRefusesToStart(t *testing.T) {
	cfg := testConfig(t)
	_, stop := startServer(t, cfg)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	def := filepath.Join(cfg.DataDir, DefaultKEKFile)
	other, _ := seal.GenerateKEK()
	wrong := filepath.Join(cfg.DataDir, "other.kek")
	if err := os.WriteFile(wrong, other.Text(), 0o600); err != nil {
		t.Fatal(err)
	}
	c2 := cfg
	c2.Seal.KEKFile = wrong
	if _, err := New(t.Context(), c2); err == nil || !strings.Contains(err.Error(), "not configured") {
		t.Fatalf("New(wrong KEK) = %v, want a refusal naming the KEK", err)
	}
	// The default KEK lost: a new one is made, refused, and removed again.
	if err := os.Remove(def); err != nil {
		t.Fatal(err)
	}
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "did not exist") {
		t.Fatalf("New(default KEK lost) = %v, want a refusal saying the KEK is missing", err)
	}
	if _, err := os.Stat(def); err == nil {
		t.Errorf("a KEK generated for a store sealed with another was left in place")
	}
}
