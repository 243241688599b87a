package server

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/audit"
)

// opsEnv is a data directory that two servers have run on, and what a
// careless operator has at hand: a copy of the store as the first server
// left it (an older backup), and copies of the second server's -wal and
// ledger journal taken while it ran (what a crash or kill leaves).
type opsEnv struct {
	cfg     Config
	db      string // the database file
	backup  string // directory holding the older copy of the data directory's files
	wal     []byte // the second server's -wal, as a crash leaves it
	journal []byte // its -ledger journal, likewise
}

// registerAgent registers an agent named name over the admin socket.
func registerAgent(t *testing.T, s *Server, name string) {
	t.Helper()
	if code, body := sockDo(t, socketClient(s.SocketPath()), "POST", "/admin/v1/agents", "application/json",
		`{"name": "`+name+`", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "assist"}`); code != 201 {
		t.Fatalf("register %s: %d %s", name, code, body)
	}
}

func (e *opsEnv) path(name string) string { return filepath.Join(e.cfg.DataDir, name) }

func (e *opsEnv) remove(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		if err := os.Remove(e.path(n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
}

func (e *opsEnv) write(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(e.path(name), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// restore copies the named files of the older copy into the data
// directory.
func (e *opsEnv) restore(t *testing.T, names ...string) {
	t.Helper()
	for _, n := range names {
		copyFile(t, filepath.Join(e.backup, n), e.path(n))
	}
}

// otherStore renames another mandate's database (with its own ledger,
// under the same key-encryption key) over the database.
func (e *opsEnv) otherStore(t *testing.T) {
	t.Helper()
	ocfg := testConfig(t)
	if err := os.MkdirAll(ocfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	copyFile(t, e.path(DefaultKEKFile), filepath.Join(ocfg.DataDir, DefaultKEKFile))
	s, stop := startServer(t, ocfg)
	registerAgent(t, s, "intruder")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(ocfg.DataDir, "mandate.db"), e.db); err != nil {
		t.Fatal(err)
	}
}

// TestCarelessOperator puts the data directory through what an operator
// can do to it by mistake — delete one file of the store but not the
// others, copy an old backup over the database, leave a crashed server's
// -wal beside another database, delete the anchor — while the server runs
// or while it is stopped, and starts a real server on it. Each variant is
// either refused, with an error that says what happened and where to read
// on, or provably fine: the start serves the store the last server left,
// both agents in it and its ledger verifying. A refused variant is then
// started with --accept-new-store, which either starts over (the ledger
// records the reset, the mark is gone, a plain restart works) or is still
// refused when accepting would replay files of the lost store into the
// new one.
func TestCarelessOperator(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		// running is done to the data directory under the second server,
		// which then sees its store lost; stopped after it stopped.
		running, stopped func(t *testing.T, e *opsEnv)
		// refused is part of the refusal; "" means the start is fine.
		refused string
		// accepted is part of the refusal with --accept-new-store; ""
		// means it starts over.
		accepted string
		// agents are the agents a fine start serves; nil: both.
		agents []string
	}{
		{name: "nothing changed"},
		{name: "anchor deleted", stopped: func(t *testing.T, e *opsEnv) { e.remove(t, AnchorFile) }},
		{name: "journal deleted after a clean stop", stopped: func(t *testing.T, e *opsEnv) { e.remove(t, "mandate.db-ledger") }},
		{name: "whole data directory restored from the older backup", stopped: func(t *testing.T, e *opsEnv) {
			// The anchor restored with the store vouches for it: the events
			// since the backup are gone (docs/operations.md warns).
			e.restore(t, "mandate.db", "mandate.db-ledger", AnchorFile)
		}, agents: []string{"first"}},

		{name: "database deleted, journal kept", stopped: func(t *testing.T, e *opsEnv) { e.remove(t, "mandate.db") },
			refused: "database file is missing", accepted: "database file is missing"},
		{name: "database and journal deleted, crashed -wal kept", stopped: func(t *testing.T, e *opsEnv) {
			e.remove(t, "mandate.db", "mandate.db-ledger")
			e.write(t, "mandate.db-wal", e.wal)
		}, refused: "database file is missing", accepted: "database file is missing"},
		{name: "database deleted, crashed journal kept", stopped: func(t *testing.T, e *opsEnv) {
			// A journal holding every event since the start would rebuild the
			// ledger in a new, empty database, and pass the anchor.
			e.remove(t, "mandate.db")
			e.write(t, "mandate.db-ledger", e.journal)
		}, refused: "database file is missing", accepted: "database file is missing"},
		{name: "every store file deleted, anchor kept", stopped: func(t *testing.T, e *opsEnv) {
			e.remove(t, "mandate.db", "mandate.db-wal", "mandate.db-shm", "mandate.db-ledger")
		}, refused: "the ledger is empty, but the anchor shows"},
		{name: "older backup copied over the database", stopped: func(t *testing.T, e *opsEnv) { e.restore(t, "mandate.db") },
			refused: "but the anchor shows"},
		{name: "older backup copied over the database, crashed -wal and journal left", stopped: func(t *testing.T, e *opsEnv) {
			e.restore(t, "mandate.db")
			e.write(t, "mandate.db-wal", e.wal)
			e.write(t, "mandate.db-ledger", e.journal)
		}, refused: "written with another database file", accepted: "written with another database file"},
		{name: "another store renamed over the database", stopped: func(t *testing.T, e *opsEnv) { e.otherStore(t) },
			refused: "does not continue the audit ledger"},
		{name: "seal.kek deleted", stopped: func(t *testing.T, e *opsEnv) { e.remove(t, DefaultKEKFile) },
			refused: "key-encryption key", accepted: "key-encryption key"},

		{name: "while running: database deleted, journal kept", running: func(t *testing.T, e *opsEnv) { e.remove(t, "mandate.db") },
			refused: "the store was lost while mandate was running", accepted: "database file is missing"},
		{name: "while running: database deleted, then journal deleted", running: func(t *testing.T, e *opsEnv) { e.remove(t, "mandate.db") },
			stopped: func(t *testing.T, e *opsEnv) { e.remove(t, "mandate.db-wal", "mandate.db-shm", "mandate.db-ledger") },
			refused: "the store was lost while mandate was running"},
		{name: "while running: journal deleted", running: func(t *testing.T, e *opsEnv) { e.remove(t, "mandate.db-ledger") },
			refused: "the store was lost while mandate was running"},
		{name: "while running: another store renamed over, old -wal left", running: func(t *testing.T, e *opsEnv) { e.otherStore(t) },
			stopped: func(t *testing.T, e *opsEnv) { e.write(t, "mandate.db-wal", e.wal) },
			refused: "the store was lost while mandate was running", accepted: "write-ahead log was left"},
		{name: "while running: older backup renamed over", running: func(t *testing.T, e *opsEnv) {
			tmp := e.path("restore.tmp")
			copyFile(t, filepath.Join(e.backup, "mandate.db"), tmp)
			if err := os.Rename(tmp, e.db); err != nil {
				t.Fatal(err)
			}
		}, refused: "the store was lost while mandate was running", accepted: "write-ahead log was left"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := &opsEnv{cfg: testConfig(t), backup: t.TempDir()}
			e.db = e.path("mandate.db")
			s, stop := startServer(t, e.cfg)
			registerAgent(t, s, "first")
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			for _, n := range []string{"mandate.db", "mandate.db-ledger", AnchorFile} {
				copyFile(t, e.path(n), filepath.Join(e.backup, n))
			}

			s, stop = startServer(t, e.cfg)
			registerAgent(t, s, "second")
			var err error
			if e.wal, err = os.ReadFile(e.db + "-wal"); err != nil {
				t.Fatal(err)
			}
			if e.journal, err = os.ReadFile(e.db + "-ledger"); err != nil {
				t.Fatal(err)
			}
			if tc.running != nil {
				tc.running(t, e)
				if body := waitNotReady(t, s); !strings.Contains(body, "store lost") {
					t.Fatalf("GET /readyz = %q, want it to say the store is lost", body)
				}
				m, err := readLostMark(LostMarkPath(e.cfg.DataDir))
				if m == nil || err != nil || m.Reason == "" || m.Anchor == nil || m.Anchor.Size == 0 {
					t.Fatalf("store.lost = %+v, %v; want one naming the reason and the last anchor", m, err)
				}
				_ = stop() // a lost store does not close cleanly
			} else if err := stop(); err != nil {
				t.Fatal(err)
			}
			if tc.stopped != nil {
				tc.stopped(t, e)
			}

			s2, err := New(t.Context(), e.cfg)
			if tc.refused == "" {
				if err != nil {
					t.Fatalf("New() = %v, want a start", err)
				}
				s2.Close()
				if tc.agents == nil {
					tc.agents = []string{"first", "second"}
				}
				checkStore(t, e.cfg, tc.agents...)
				return
			}
			if err == nil {
				s2.Close()
				t.Fatalf("New() started, want a refusal saying %q", tc.refused)
			}
			t.Logf("refused: %v", err)
			if !strings.Contains(err.Error(), tc.refused) || !strings.Contains(err.Error(), "docs/") {
				t.Fatalf("New() = %v\nwant a refusal saying %q that points at the docs", err, tc.refused)
			}

			e.cfg.AcceptNewStore = true
			s2, err = New(t.Context(), e.cfg)
			if tc.accepted != "" {
				if err == nil {
					s2.Close()
					t.Fatalf("New(--accept-new-store) started, want a refusal saying %q", tc.accepted)
				}
				if !strings.Contains(err.Error(), tc.accepted) {
					t.Fatalf("New(--accept-new-store) = %v\nwant a refusal saying %q", err, tc.accepted)
				}
				return
			}
			if err != nil {
				t.Fatalf("New(--accept-new-store) = %v, want a start over", err)
			}
			resets, err := s2.backend.ListEvents(t.Context(), audit.Query{Type: audit.TypeLedgerReset})
			if err != nil || len(resets) != 1 || resets[0].Details["anchor_size"] == "" {
				t.Errorf("ledger.reset events = %v, %v; want one naming the old anchor", resets, err)
			}
			if tc.running != nil && (len(resets) != 1 || resets[0].Details["lost_reason"] == "") {
				t.Errorf("ledger.reset events = %v; want one naming why the store was lost", resets)
			}
			verifyLedger(t.Context(), t, s2)
			if err := s2.Close(); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(LostMarkPath(e.cfg.DataDir)); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("store.lost after --accept-new-store: %v, want it removed", err)
			}
			e.cfg.AcceptNewStore = false
			s2, err = New(t.Context(), e.cfg)
			if err != nil {
				t.Fatalf("New() after --accept-new-store = %v, want a start", err)
			}
			s2.Close()
		})
	}
}

// checkStore runs a server on cfg and checks that the named agents are
// in its store, that its ledger verifies, and that it left an anchor.
func checkStore(t *testing.T, cfg Config, agents ...string) {
	t.Helper()
	s, stop := startServer(t, cfg)
	for _, a := range agents {
		if code, body := sockDo(t, socketClient(s.SocketPath()), "GET", "/admin/v1/agents/"+a, "", ""); code != http.StatusOK {
			t.Errorf("GET /admin/v1/agents/%s = %d %s, want the agent", a, code, body)
		}
	}
	verifyLedger(t.Context(), t, s)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := audit.ReadAnchor(AnchorPath(cfg.DataDir)); err != nil {
		t.Errorf("ReadAnchor() after the start = %v, want the ledger anchored", err)
	}
}

// TestLostMarkRefusesUnreadable: a store.lost mark that is not a mark
// (torn, edited) still stops the start.
func TestLostMarkRefusesUnreadable(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(LostMarkPath(cfg.DataDir), []byte("{torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := New(t.Context(), cfg)
	if err == nil {
		s.Close()
	}
	if err == nil || !strings.Contains(err.Error(), "the store was lost") || !strings.Contains(err.Error(), "cannot be read") {
		t.Fatalf("New() with a torn store.lost = %v, want a refusal", err)
	}
}
