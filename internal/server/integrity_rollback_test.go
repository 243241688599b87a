package server

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"
)

// TestAuditVerifyReportsLedgerEmptiedUnderRunningServer empties the
// ledger tables of a running server's database in place (events, tree
// hashes and stored checkpoints, as `sqlite3 mandate.db` can): the store
// is then a consistent empty ledger. `mandate audit verify` must not say
// it verifies, and no checkpoint may be signed on the emptied tree.
func TestAuditVerifyReportsLedgerEmptiedUnderRunningServer(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s, _ := startServer(t, cfg)
	sock := socketClient(s.SocketPath())
	taskToken(t, s)
	if code, out := sockDo(t, sock, "POST", "/admin/v1/audit/checkpoint", "", ""); code != 200 {
		t.Fatalf("audit checkpoint: %d %s", code, out)
	}
	if code, out := sockDo(t, sock, "POST", "/admin/v1/audit/verify", "", ""); code != 200 || strings.Contains(out, "first_bad_seq") {
		t.Fatalf("audit verify before tampering: %d %s", code, out)
	}
	raw, err := sql.Open("sqlite", filepath.Join(cfg.DataDir, "mandate.db")+"?_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, q := range []string{`DELETE FROM events`, `DELETE FROM ledger_hashes`, `DELETE FROM ledger_checkpoints`} {
		if _, err := raw.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	code, out := sockDo(t, sock, "POST", "/admin/v1/audit/verify", "", "")
	if code == 200 && !strings.Contains(out, `"first_bad_seq":1`) {
		t.Errorf("audit verify on the emptied ledger: %d %s, want a failure at seq 1", code, out)
	}
	if code, out := sockDo(t, sock, "POST", "/admin/v1/audit/checkpoint", "", ""); code == 200 {
		t.Errorf("audit checkpoint on the emptied ledger: %d %s, want a refusal", code, out)
	}
}
