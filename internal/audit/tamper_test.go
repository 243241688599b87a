package audit_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
)

// ledgerSigner returns the ledger's own checkpoint signer, read from the
// store and unsealed: what an attacker with the database and the
// key-encryption key (or a buggy server) has.
func ledgerSigner(t *testing.T, e *env) note.Signer {
	t.Helper()
	sealed, err := e.db.LedgerKey(t.Context(), "checkpoint-signer", nil)
	if err != nil {
		t.Fatal(err)
	}
	skey, err := sealtest.Keyring().Open(audit.LedgerKeySealPurpose, "checkpoint-signer", sealed)
	if err != nil {
		t.Fatal(err)
	}
	s, err := note.NewSigner(string(skey))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func signCheckpoint(t *testing.T, s note.Signer, size int64, root tlog.Hash) []byte {
	t.Helper()
	body := fmt.Sprintf("%s\n%d\n%s\n", s.Name(), size, base64.StdEncoding.EncodeToString(root[:]))
	msg, err := note.Sign(&note.Note{Text: body}, s)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

// rehash rewrites every stored tree hash from the stored events, as an
// attacker covering an edit would.
func rehash(t *testing.T, e *env) {
	t.Helper()
	raw := e.raw(t)
	rows, err := raw.Query(`SELECT data FROM events ORDER BY seq`)
	if err != nil {
		t.Fatal(err)
	}
	var hashes []tlog.Hash
	r := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = hashes[x]
		}
		return out, nil
	})
	var n int64
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			t.Fatal(err)
		}
		hs, err := tlog.StoredHashes(n, data, r)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, hs...)
		n++
	}
	rows.Close()
	var blob []byte
	for _, h := range hashes {
		blob = append(blob, h[:]...)
	}
	if _, err := raw.Exec(`DELETE FROM ledger_hashes`); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Exec(`INSERT INTO ledger_hashes (start, size, hashes) VALUES (0, ?, ?)`, n, blob); err != nil {
		t.Fatal(err)
	}
}

func TestVerifyLiveTampering(t *testing.T) {
	t.Parallel()
	const events = 12
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, e *env)
		wantSeq int64
		want    string
	}{
		{"edit a field", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'f4.go', 'f4-evil.go') AS BLOB) WHERE seq = 5`)
		}, 5, "does not match its leaf hash"},
		{"edit a decision in the event and its column", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE events SET decision = 'allow', data = CAST(replace(CAST(data AS TEXT), '"decision":"deny"', '"decision":"allow"') AS BLOB) WHERE seq = 7`)
		}, 7, "does not match its leaf hash"},
		{"edit an indexed column only", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE events SET agent = 'spiffe://example.org/agent/innocent' WHERE seq = 8`)
		}, 8, "indexed columns do not match the event: agent"},
		{"delete a row", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM events WHERE seq = 6`)
		}, 6, "event 6 is missing"},
		{"delete the last rows", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM events WHERE seq >= 11`)
		}, 11, "events 11 to 12 are missing"},
		{"swap two rows", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE events SET
				time = (SELECT time FROM events e2 WHERE e2.seq = 12 - events.seq),
				type = (SELECT type FROM events e2 WHERE e2.seq = 12 - events.seq),
				agent = (SELECT agent FROM events e2 WHERE e2.seq = 12 - events.seq),
				task = (SELECT task FROM events e2 WHERE e2.seq = 12 - events.seq),
				decision = (SELECT decision FROM events e2 WHERE e2.seq = 12 - events.seq),
				data = (SELECT data FROM events e2 WHERE e2.seq = 12 - events.seq)
				WHERE seq IN (3, 9)`)
		}, 3, "does not match its leaf hash"},
		{"append a forged event", func(t *testing.T, e *env) {
			ev := event(99)
			if err := audit.Normalize(&ev, t0); err != nil {
				t.Fatal(err)
			}
			ev.Seq = events + 1
			data, _ := audit.Canonical(&ev)
			e.exec(t, `INSERT INTO events (seq, time, type, agent, task, decision, data) VALUES (?, ?, ?, ?, ?, ?, ?)`,
				ev.Seq, ev.Time.UnixNano(), string(ev.Type), ev.Agent, ev.Task, ev.Decision, data)
		}, events + 1, "inserted outside mandate"},
		{"edit a tree hash", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE ledger_hashes SET hashes = CAST(zeroblob(32) || substr(hashes, 33) AS BLOB) WHERE start = 0`)
		}, 1, "does not match its leaf hash"},
		{"delete tree hashes", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM ledger_hashes WHERE start = 0`)
		}, 1, "tree hashes of these events are missing"},
		{"edit an event and recompute every hash", func(t *testing.T, e *env) {
			e.exec(t, `UPDATE events SET data = CAST(replace(CAST(data AS TEXT), 'f9.go', 'f9-evil.go') AS BLOB) WHERE seq = 10`)
			rehash(t, e)
		}, 7, "do not hash to this signed checkpoint's root"},
		{"forged checkpoint", func(t *testing.T, e *env) {
			msg := signCheckpoint(t, otherSigner(t, e.ledger.Origin()), 13, tlog.Hash{})
			e.exec(t, `INSERT INTO ledger_checkpoints (size, time, note) VALUES (13, 0, ?)`, msg)
		}, 0, "not signed by the ledger key"},
		{"checkpoint inconsistent with the earlier ones", func(t *testing.T, e *env) {
			e.exec(t, `DELETE FROM ledger_checkpoints WHERE size = 12`)
			msg := signCheckpoint(t, ledgerSigner(t, e), 12, tlog.RecordHash([]byte("another history")))
			e.exec(t, `INSERT INTO ledger_checkpoints (size, time, note) VALUES (12, 0, ?)`, msg)
		}, 7, "not consistent with the checkpoint of size 6"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, audit.LedgerConfig{})
			e.fill(t, 6)
			if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
			e.fill(t, events-6)
			if _, err := e.ledger.Checkpoint(t.Context()); err != nil {
				t.Fatal(err)
			}
			if rep, err := e.ledger.Verify(t.Context()); err != nil || !rep.OK() {
				t.Fatalf("Verify() before tampering = %+v, %v", rep, err)
			}
			tc.tamper(t, e)
			rep, err := e.ledger.Verify(context.Background())
			if err != nil {
				t.Fatalf("Verify() = %v", err)
			}
			if rep.OK() {
				t.Fatalf("Verify() after %s = OK, want a problem", tc.name)
			}
			if rep.FirstBadSeq != tc.wantSeq {
				t.Errorf("Verify() first bad seq = %d, want %d; problems: %v", rep.FirstBadSeq, tc.wantSeq, rep.Problems)
			}
			if !strings.Contains(fmt.Sprint(rep.Problems), tc.want) {
				t.Errorf("Verify() problems = %v, want one saying %q", rep.Problems, tc.want)
			}
		})
	}
}

// exported returns a fresh ledger's export, split into lines, with
// checkpoints at sizes 6 and 12.
func exported(t *testing.T) (e *env, lines []string, cp6, cp12 []byte) {
	t.Helper()
	e = newEnv(t, audit.LedgerConfig{})
	e.fill(t, 6)
	c6, err := e.ledger.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	e.fill(t, 6)
	c12, err := e.ledger.Checkpoint(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := e.ledger.Export(t.Context(), &buf); err != nil {
		t.Fatal(err)
	}
	return e, strings.SplitAfter(buf.String(), "\n")[:12], c6.Note, c12.Note
}

func TestVerifyExportTampering(t *testing.T) {
	t.Parallel()
	type input struct {
		lines []string
		cps   [][]byte
		key   string
	}
	for _, tc := range []struct {
		name    string
		tamper  func(t *testing.T, e *env, in *input)
		wantSeq int64
		want    string
	}{
		{"untouched", func(t *testing.T, e *env, in *input) {}, 0, ""},
		{"edit a field", func(t *testing.T, e *env, in *input) {
			in.lines[4] = strings.Replace(in.lines[4], "f4.go", "f4-evil.go", 1)
		}, 5, "line 5, seq 5: the event does not match its leaf hash"},
		{"edit a field and its leaf hash", func(t *testing.T, e *env, in *input) {
			var el audit.ExportLine
			if err := jsonUnmarshal(in.lines[8], &el); err != nil {
				t.Fatal(err)
			}
			el.Resource = "file:/etc/shadow"
			data, _ := audit.Canonical(&el.Event)
			el.LeafHash = audit.LeafHash(data)
			in.lines[8] = jsonLine(t, el)
		}, 7, "an event from seq 7 to 12 was altered"},
		{"delete an event", func(t *testing.T, e *env, in *input) {
			in.lines = append(in.lines[:3], in.lines[4:]...)
		}, 4, "events 4 to 4 are missing"},
		{"reorder two events", func(t *testing.T, e *env, in *input) {
			in.lines[2], in.lines[7] = in.lines[7], in.lines[2]
		}, 3, "expected seq 3, found 8"},
		{"insert a forged event", func(t *testing.T, e *env, in *input) {
			forged := strings.Replace(in.lines[5], `"seq":6`, `"seq":7`, 1)
			in.lines = append(in.lines[:6], append([]string{forged}, in.lines[6:]...)...)
		}, 7, "line 7, seq 7"},
		{"append a forged event", func(t *testing.T, e *env, in *input) {
			in.lines = append(in.lines, strings.Replace(in.lines[11], `"seq":12`, `"seq":13`, 1))
		}, 13, "does not match its leaf hash"},
		{"truncate", func(t *testing.T, e *env, in *input) {
			in.lines = in.lines[:9]
		}, 10, "the export ends at seq 9 but this checkpoint covers 12 events: it was truncated"},
		{"not an event", func(t *testing.T, e *env, in *input) {
			in.lines[2] = "{\"hello\":1}\n"
		}, 3, "not a ledger event"},
		{"forged checkpoint signature", func(t *testing.T, e *env, in *input) {
			cp := string(in.cps[1])
			i := strings.LastIndex(cp, " ") + 1
			sig, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(cp[i:]))
			sig[len(sig)-1] ^= 1
			in.cps[1] = []byte(cp[:i] + base64.StdEncoding.EncodeToString(sig) + "\n")
		}, 0, "checkpoint 2: checkpoint signature is invalid"},
		{"checkpoint from another key", func(t *testing.T, e *env, in *input) {
			in.cps[1] = signCheckpoint(t, otherSigner(t, e.ledger.Origin()), 12, tlog.Hash{})
		}, 0, "not signed by the ledger key"},
		{"checkpoint body edited", func(t *testing.T, e *env, in *input) {
			in.cps[1] = bytes.Replace(in.cps[1], []byte("\n12\n"), []byte("\n11\n"), 1)
		}, 0, "checkpoint signature is invalid"},
		{"verified with another key", func(t *testing.T, e *env, in *input) {
			_, vkey, _ := note.GenerateKey(nil, e.ledger.Origin())
			in.key = vkey
		}, 0, "not signed by the ledger key"},
		{"checkpoint inconsistent with an earlier one", func(t *testing.T, e *env, in *input) {
			in.cps[1] = signCheckpoint(t, ledgerSigner(t, e), 12, tlog.RecordHash([]byte("another history")))
		}, 7, "or the checkpoint is not consistent with earlier ones"},
		{"two checkpoints of one size", func(t *testing.T, e *env, in *input) {
			in.cps = append(in.cps, signCheckpoint(t, ledgerSigner(t, e), 12, tlog.RecordHash([]byte("fork"))))
		}, 0, "the log was forked"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e, lines, cp6, cp12 := exported(t)
			in := &input{lines: lines, cps: [][]byte{cp6, cp12}, key: e.ledger.VerifierKey()}
			tc.tamper(t, e, in)
			rep, err := audit.VerifyExport(strings.NewReader(strings.Join(in.lines, "")), in.cps, in.key)
			if err != nil {
				t.Fatalf("VerifyExport() = %v", err)
			}
			if tc.want == "" {
				if !rep.OK() || rep.Events != 12 || rep.Checkpoints != 2 {
					t.Errorf("VerifyExport(untouched) = %+v, want OK with 12 events and 2 checkpoints", rep)
				}
				return
			}
			if rep.OK() {
				t.Fatalf("VerifyExport() after %s = OK, want a problem", tc.name)
			}
			if rep.FirstBadSeq != tc.wantSeq {
				t.Errorf("first bad seq = %d, want %d; problems: %v", rep.FirstBadSeq, tc.wantSeq, rep.Problems)
			}
			if !strings.Contains(fmt.Sprint(rep.Problems), tc.want) {
				t.Errorf("problems = %v, want one saying %q", rep.Problems, tc.want)
			}
		})
	}
}
