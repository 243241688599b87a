package main

import (
	"context"
	"database/sql"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	_ "modernc.org/sqlite"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/server"
)

// auditServer starts a server, registers agents so that the ledger has
// events, and returns the CLI environment and the database path.
func auditServer(t *testing.T, agents int) (env map[string]string, dbPath string) {
	t.Helper()
	dataDir, _ := testServer(t, nil)
	env = map[string]string{"MANDATE_DATA_DIR": dataDir}
	for i := range agents {
		mustRun(t, env, "agent", "register", fmt.Sprintf("bot-%d", i), "--owner", "alice@example.com", "--escalation", "oncall@example.com")
	}
	return env, filepath.Join(dataDir, "mandate.db")
}

func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestAuditCommands(t *testing.T) {
	t.Parallel()
	env, _ := auditServer(t, 3)

	out := mustRun(t, env, "audit", "tail", "-n", "2")
	if !strings.Contains(out, "SEQ") || !strings.Contains(out, "bot-2") || strings.Contains(out, "bot-0") {
		t.Errorf("audit tail -n 2 =\n%s\nwant the last two events (bot-2, not bot-0)", out)
	}
	out = mustRun(t, env, "audit", "query", "--agent", "bot-1", "--since", "1h", "-o", "json")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], `"agent":"spiffe://mandate.local/agent/bot-1"`) {
		t.Errorf("audit query --agent bot-1 -o json =\n%s\nwant one JSON line for bot-1", out)
	}
	if code, _, errs := mandate(t, env, "audit", "query", "--since", "last tuesday"); code != 2 || !strings.Contains(errs, "RFC 3339") {
		t.Errorf("audit query --since 'last tuesday' = exit %d %s, want a usage error", code, errs)
	}
	if code, _, errs := mandate(t, env, "audit", "query", "--decision", "perhaps"); code != 2 || !strings.Contains(errs, "allow, deny or approval_required") {
		t.Errorf("audit query --decision perhaps = exit %d %s, want a usage error", code, errs)
	}
	if code, _, errs := mandate(t, env, "audit", "query", "--type", "x", "--agent", "spiffe://other.org/agent/x"); code != 1 || !strings.Contains(errs, "trust domain") {
		t.Errorf("audit query with a foreign agent = exit %d %s, want the server's error", code, errs)
	}

	cp := mustRun(t, env, "audit", "checkpoint")
	if !strings.HasPrefix(cp, "mandate.local/audit\n") || !strings.Contains(cp, "\n\n— mandate.local/audit ") {
		t.Errorf("audit checkpoint =\n%s\nwant a signed note with origin mandate.local/audit", cp)
	}
	key := strings.TrimSpace(mustRun(t, env, "audit", "key"))
	if !strings.HasPrefix(key, "mandate.local/audit+") {
		t.Errorf("audit key = %q", key)
	}
	out = mustRun(t, env, "audit", "proof", "2", "--key", key)
	if !strings.Contains(out, "Event 2 is leaf 1 of the tree of") || !strings.Contains(out, "bot-0") {
		t.Errorf("audit proof 2 =\n%s", out)
	}
	if code, _, errs := mandate(t, env, "audit", "proof", "2", "--key", otherKey(t)); code != 1 || !strings.Contains(errs, "not signed by the ledger key") {
		t.Errorf("audit proof with another key = exit %d %s, want the checkpoint refused", code, errs)
	}

	export := filepath.Join(t.TempDir(), "ledger.jsonl")
	mustRun(t, env, "audit", "export", "-O", export)
	cpFile := writeFile(t, "cp.txt", cp)
	out = mustRun(t, nil, "audit", "verify", "--export", export, "--checkpoint", cpFile, "--key", key)
	if !strings.Contains(out, "OK: export") {
		t.Errorf("audit verify --export = %s", out)
	}
	out = mustRun(t, env, "audit", "export", "--format", "ocsf", "--type", "agent.registered")
	if strings.Count(out, `"class_uid":6003`) != 3 {
		t.Errorf("audit export --format ocsf =\n%s\nwant 3 API Activity events", out)
	}
	out = mustRun(t, env, "audit", "verify", "--checkpoint", cpFile, "--key", key)
	if !strings.Contains(out, "OK: the ledger verifies") || !strings.Contains(out, "is consistent with the latest checkpoint") {
		t.Errorf("audit verify (live, with a saved checkpoint) =\n%s", out)
	}
}

func otherKey(t *testing.T) string {
	t.Helper()
	_, vkey, err := note.GenerateKey(nil, "mandate.local/audit")
	if err != nil {
		t.Fatal(err)
	}
	return vkey
}

// ledgerSigner reads the server's checkpoint signing key from its
// database and unseals it with the key-encryption key beside it, as an
// attacker with both could.
func ledgerSigner(t *testing.T, dbPath string) note.Signer {
	t.Helper()
	var sealed []byte
	if err := rawDB(t, dbPath).QueryRow(`SELECT key FROM ledger_keys WHERE name = 'checkpoint-signer'`).Scan(&sealed); err != nil {
		t.Fatal(err)
	}
	r, _, err := seal.LoadKeyring(seal.Sources{File: filepath.Join(filepath.Dir(dbPath), "seal.kek")})
	if err != nil {
		t.Fatal(err)
	}
	skey, err := r.Open(audit.LedgerKeySealPurpose, "checkpoint-signer", sealed)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(string(skey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func forgeCheckpoint(t *testing.T, s note.Signer, size int64, root tlog.Hash) string {
	t.Helper()
	msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", s.Name(), size, base64.StdEncoding.EncodeToString(root[:]))}, s)
	if err != nil {
		t.Fatal(err)
	}
	return string(msg)
}

// TestAuditVerifyCatchesTampering tampers with the live database and with
// exports, and checks that 'mandate audit verify' fails and says where.
func TestAuditVerifyCatchesTampering(t *testing.T) {
	t.Parallel()
	live := []struct {
		name, sql string
		want      string
	}{
		{"edit a field", `UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'bot-', 'bob-') AS BLOB) WHERE seq = 3`, "seq 3: the stored event does not match its leaf hash"},
		{"delete a row", `DELETE FROM events WHERE seq = 3`, "event 3 is missing"},
		{"swap two rows", `UPDATE events SET data = (SELECT data FROM events e2 WHERE e2.seq = 5 - events.seq) WHERE seq IN (2, 3)`, "seq 2"},
		{"append a forged event", `INSERT INTO events (seq, time, type, data) SELECT max(seq) + 1, max(time), 'agent.registered', CAST('{"seq":' || (max(seq) + 1) || '}' AS BLOB) FROM events`, "inserted outside mandate"},
	}
	for _, tc := range live {
		t.Run("live/"+tc.name, func(t *testing.T) {
			t.Parallel()
			env, dbPath := auditServer(t, 3)
			mustRun(t, env, "audit", "checkpoint")
			if _, err := rawDB(t, dbPath).Exec(tc.sql); err != nil {
				t.Fatal(err)
			}
			code, out, errs := mandate(t, env, "audit", "verify")
			if code != 1 || !strings.Contains(out, tc.want) || !strings.Contains(errs, "FAILED verification: the first bad event is seq") {
				t.Errorf("audit verify after %s = exit %d\nstdout: %s\nstderr: %s\nwant exit 1 naming the first bad event and %q", tc.name, code, out, errs, tc.want)
			}
		})
	}

	t.Run("live/checkpoint inconsistent with a saved one", func(t *testing.T) {
		t.Parallel()
		env, dbPath := auditServer(t, 3)
		key := strings.TrimSpace(mustRun(t, env, "audit", "key"))
		// A checkpoint "saved earlier" that the server's history does not
		// extend (e.g. the server rewrote the events it covered).
		saved := writeFile(t, "saved.txt", forgeCheckpoint(t, ledgerSigner(t, dbPath), 2, tlog.RecordHash([]byte("history"))))
		code, out, _ := mandate(t, env, "audit", "verify", "--checkpoint", saved, "--key", key)
		if code != 1 || !strings.Contains(out, "is NOT consistent with the server's checkpoint") {
			t.Errorf("audit verify --checkpoint (inconsistent) = exit %d\n%s", code, out)
		}
	})

	env, dbPath := auditServer(t, 6)
	cp1 := mustRun(t, env, "audit", "checkpoint")
	mustRun(t, env, "agent", "register", "late", "--owner", "a@example.com", "--escalation", "b@example.com")
	cp2 := mustRun(t, env, "audit", "checkpoint")
	key := strings.TrimSpace(mustRun(t, env, "audit", "key"))
	exportFile := filepath.Join(t.TempDir(), "ledger.jsonl")
	mustRun(t, env, "audit", "export", "-O", exportFile)
	b, err := os.ReadFile(exportFile)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(string(b), "\n")
	lines = lines[:len(lines)-1]
	n := len(lines)
	signer := ledgerSigner(t, dbPath)
	for _, tc := range []struct {
		name   string
		lines  func() []string
		cps    []string
		key    string
		wantIn string
	}{
		{"edit", func() []string {
			l := append([]string(nil), lines...)
			l[2] = strings.Replace(l[2], "bot-", "bob-", 1)
			return l
		}, nil, "", "line 3, seq 3: the event does not match its leaf hash"},
		{"delete", func() []string { return append(append([]string(nil), lines[:1]...), lines[2:]...) }, nil, "", "expected seq 2, found 3"},
		{"reorder", func() []string {
			l := append([]string(nil), lines...)
			l[3], l[4] = l[4], l[3]
			return l
		}, nil, "", "expected seq 4, found 5"},
		{"truncate", func() []string { return lines[:n-2] }, nil, "", "it was truncated"},
		{"forged checkpoint signature", nil, []string{strings.Replace(cp2, "\n— ", "\n— x", 1)}, "", "checkpoint"},
		{"checkpoint from another key", nil, []string{forgeCheckpoint(t, otherSigner(t), int64(n), tlog.Hash{})}, "", "not signed by the ledger key"},
		{"verified with another key", nil, nil, otherKey(t), "not signed by the ledger key"},
		{"checkpoint inconsistent with an earlier one", nil, []string{cp1, forgeCheckpoint(t, signer, int64(n), tlog.RecordHash([]byte("rewritten")))}, "", "not consistent with earlier ones"},
	} {
		t.Run("export/"+tc.name, func(t *testing.T) {
			t.Parallel()
			l := lines
			if tc.lines != nil {
				l = tc.lines()
			}
			cps := tc.cps
			if cps == nil {
				cps = []string{cp1, cp2}
			}
			k := key
			if tc.key != "" {
				k = tc.key
			}
			args := []string{"audit", "verify", "--export", writeFile(t, "x.jsonl", strings.Join(l, "")), "--key", k}
			for i, c := range cps {
				args = append(args, "--checkpoint", writeFile(t, fmt.Sprintf("cp%d.txt", i), c))
			}
			code, out, errs := mandate(t, nil, args...)
			if code != 1 || !strings.Contains(out, tc.wantIn) || !strings.Contains(errs, "FAILED verification") {
				t.Errorf("audit verify --export (%s) = exit %d\nstdout: %s\nstderr: %s\nwant exit 1 and %q", tc.name, code, out, errs, tc.wantIn)
			}
		})
	}
}

func otherSigner(t *testing.T) note.Signer {
	t.Helper()
	skey, _, err := note.GenerateKey(nil, "mandate.local/audit")
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestAuditTailFollow(t *testing.T) {
	t.Parallel()
	env, _ := auditServer(t, 1)
	ctx, cancel := context.WithCancel(t.Context())
	var out, errb lockedBuffer
	done := make(chan int)
	go func() {
		done <- run(ctx, []string{"audit", "tail", "-f", "--interval", "50ms", "-o", "json"}, &out, &errb, func(k string) string { return env[k] })
	}()
	mustRun(t, env, "agent", "register", "newcomer", "--owner", "a@example.com", "--escalation", "b@example.com")
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), "agent/newcomer") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("audit tail -f exited %d: %s", code, errb.String())
	}
	if got := out.String(); !strings.Contains(got, "agent/bot-0") || !strings.Contains(got, "agent/newcomer") || strings.Count(got, "agent/newcomer\"") != 1 {
		t.Errorf("audit tail -f printed\n%s\nwant the existing event, then the new one once", got)
	}
}

func TestAuditKeygenAndSigningKeyFile(t *testing.T) {
	t.Parallel()
	keyFile := filepath.Join(t.TempDir(), "ledger.key")
	vkey := strings.TrimSpace(mustRun(t, nil, "audit", "keygen", "--origin", "ledger.example/audit", "-O", keyFile))
	if !strings.HasPrefix(vkey, "ledger.example/audit+") {
		t.Fatalf("audit keygen printed %q, want a verifier key", vkey)
	}
	if st, err := os.Stat(keyFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v; want mode 0600", st, err)
	}
	if code, _, errs := mandate(t, nil, "audit", "keygen", "--origin", "x", "-O", keyFile); code != 1 || !strings.Contains(errs, "exists") {
		t.Errorf("audit keygen over an existing file = exit %d %s, want a refusal", code, errs)
	}
	dataDir, _ := testServer(t, func(c *server.Config) { c.Audit.SigningKeyFile = keyFile })
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	if got := strings.TrimSpace(mustRun(t, env, "audit", "key")); got != vkey {
		t.Errorf("the server's ledger key = %q, want the key file's %q", got, vkey)
	}
	cp := writeFile(t, "cp.txt", mustRun(t, env, "audit", "checkpoint"))
	out := mustRun(t, env, "audit", "verify", "--checkpoint", cp, "--key", vkey)
	if !strings.Contains(out, "OK: the ledger verifies") {
		t.Errorf("audit verify with the file key = %s", out)
	}
	var n int
	if err := rawDB(t, filepath.Join(dataDir, "mandate.db")).QueryRow(`SELECT count(*) FROM ledger_keys WHERE name = 'checkpoint-signer'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("the store holds %d signing keys (%v), want none when the key is in a file", n, err)
	}
}
