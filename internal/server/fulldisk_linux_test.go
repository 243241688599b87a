package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/harness"
)

// mountSmallDisk mounts a tmpfs of size bytes on a new directory for the
// test and returns it, or skips the test where mounting is not allowed
// (not root, or no CAP_SYS_ADMIN).
func mountSmallDisk(t *testing.T, size int) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "mandate-disk-")
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		os.Remove(dir)
		t.Skipf("cannot mount a small tmpfs to fill (%v): the full-disk test needs root on Linux", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
		os.Remove(dir)
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and
// returns a function that deletes it again.
func fillDisk(t *testing.T, dir string) (free func()) {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{1 << 20, 4 << 10, 512, 1} {
		b := make([]byte, chunk)
		for {
			if _, err := f.Write(b); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatal(err)
				}
				break
			}
		}
	}
	return func() {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFullDiskAnswers503 fills the disk under a running server (a real
// tmpfs, so SQLite and the ledger journal get ENOSPC from the kernel):
// registering an agent, starting a task and suspending an agent answer
// 503 problem+json with Retry-After, never 500, and the token endpoint
// answers 503 temporarily_unavailable with Retry-After. Once the disk has
// room again the server recovers by itself, the ledger verifies, and no
// refused request left anything behind: no agent, task or status change,
// and no event but the audit of the token refusal.
func TestFullDiskAnswers503(t *testing.T) {
	disk := mountSmallDisk(t, 24<<20)
	cfg := Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = filepath.Join(disk, "data")
	s, stop := startServer(t, cfg)
	ctx := t.Context()
	admin := socketClient(s.SocketPath())
	hc := &http.Client{Timeout: 10 * time.Second}
	agent, err := harness.RegisterAgent(ctx, harness.AdminClient(s.SocketPath()), harness.Registration{
		Name: "coder", Owner: "alice@example.org", Escalation: "oncall@example.org", Tier: "supervised",
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenURL, err := harness.TokenEndpoint(ctx, hc, s.PublicURL())
	if err != nil {
		t.Fatal(err)
	}
	registerAgent(t, s, "victim")
	before := ledgerSize(t, s)

	free := fillDisk(t, disk)
	// The first writes may still fit in space SQLite and the journal hold
	// already; keep registering until the disk refuses one.
	var full httpResult
	var registered []string
	for i := 0; ; i++ {
		name := fmt.Sprintf("full-%03d", i)
		full = do(t, admin, "POST", "http://mandate/admin/v1/agents", "",
			`{"name": "`+name+`", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "assist"}`)
		if full.code != http.StatusCreated {
			break
		}
		registered = append(registered, name)
		if i == 2000 {
			t.Fatal("2000 agents registered on a full disk")
		}
	}
	refusedAgent := fmt.Sprintf("full-%03d", len(registered))
	t.Logf("the disk refused agent %d: %d %s", len(registered)+1, full.code, full.body)
	checkProblem503(t, "POST /admin/v1/agents", full)

	checkProblem503(t, "POST /admin/v1/tasks", do(t, admin, "POST", "http://mandate/admin/v1/tasks", "",
		`{"agent": "victim", "on_behalf_of": "alice@example.org", "purpose": "p", "scope": ["file.read:/repo/**"]}`))
	checkProblem503(t, "POST /admin/v1/agents/victim/suspend", do(t, admin, "POST", "http://mandate/admin/v1/agents/victim/suspend", "", `{"reason": "r"}`))
	form := url.Values{"grant_type": {"client_credentials"}, "client_id": {agent.ID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {(&hostileEnv{agent: agent, tokenURL: tokenURL}).assertion(t)}}
	req, _ := http.NewRequestWithContext(ctx, "POST", tokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", formType)
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var oerr struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&oerr)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || oerr.Error != "temporarily_unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST token (client_credentials) on a full disk = %d %q (Retry-After %q), want 503 temporarily_unavailable with Retry-After",
			resp.StatusCode, oerr.Error, resp.Header.Get("Retry-After"))
	}

	free()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r := do(t, admin, "POST", "http://mandate/admin/v1/agents", "",
			`{"name": "after", "owner": "alice@example.org", "escalation": "oncall@example.org", "tier": "assist"}`)
		if r.code == http.StatusCreated {
			break
		}
		if r.code != http.StatusServiceUnavailable || time.Now().After(deadline) {
			t.Fatalf("POST /admin/v1/agents after the disk has room again = %d %s, want 201 soon", r.code, r.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	verifyLedger(ctx, t, s)

	// Nothing the refused requests asked for happened, or was recorded.
	if r := do(t, admin, "GET", "http://mandate/admin/v1/agents/"+refusedAgent, "", ""); r.code != http.StatusNotFound {
		t.Errorf("GET the agent whose registration was refused = %d %s, want 404", r.code, r.body)
	}
	if r := do(t, admin, "GET", "http://mandate/admin/v1/agents/victim", "", ""); !strings.Contains(r.body, `"status":"active"`) {
		t.Errorf("GET victim after its refused suspension = %d %s, want it active", r.code, r.body)
	}
	if r := do(t, admin, "GET", "http://mandate/admin/v1/tasks", "", ""); r.code != http.StatusOK || strings.Contains(r.body, `"id"`) {
		t.Errorf("GET /admin/v1/tasks after the refused start = %d %s, want no task", r.code, r.body)
	}
	evs, err := s.backend.ListEvents(ctx, audit.Query{AfterSeq: before})
	if err != nil {
		t.Fatal(err)
	}
	var refusals int
	for _, ev := range evs {
		switch {
		case ev.Type == audit.TypeAgentRegistered && strings.HasSuffix(ev.Agent, "/after"):
		case ev.Type == audit.TypeTokenRefused && ev.Details["error"] == "temporarily_unavailable":
			refusals++ // the refusal itself is audited, as every refused token request is
		default:
			t.Errorf("event %d %s %s %v recorded after the disk filled; want only the refusal and the registration after it", ev.Seq, ev.Type, ev.Agent, ev.Details)
		}
	}
	if refusals != 1 {
		t.Errorf("%d token.refused events for the refused token request, want 1", refusals)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// checkProblem503 checks that r is a 503 problem+json with Retry-After.
func checkProblem503(t *testing.T, what string, r httpResult) {
	t.Helper()
	if r.code != http.StatusServiceUnavailable || r.hdr.Get("Content-Type") != "application/problem+json" || r.hdr.Get("Retry-After") == "" {
		t.Errorf("%s on a full disk = %d %s (Retry-After %q) %s, want 503 application/problem+json with Retry-After",
			what, r.code, r.hdr.Get("Content-Type"), r.hdr.Get("Retry-After"), r.body)
	}
}

// ledgerSize returns the number of events in s's ledger.
func ledgerSize(t *testing.T, s *Server) int64 {
	t.Helper()
	size, _, err := s.ledger.Head(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return size
}
