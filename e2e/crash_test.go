package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/server"
)

const childDataEnv = "MANDATE_E2E_CHILD_DATA_DIR"

// TestKilledServerLosesNoDecision: a server killed with SIGKILL in the
// middle of deciding loses none of the decisions it answered. Restarted on
// the same data directory, its ledger verifies and holds an event for every
// decision a client received: each was durable before it was answered.
func TestKilledServerLosesNoDecision(t *testing.T) {
	if dir := os.Getenv(childDataEnv); dir != "" {
		serveChild(dir)
		return
	}
	dir, err := os.MkdirTemp("", "mandate-e2e-") // short: unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	data := filepath.Join(dir, "data")
	ctx := t.Context()
	hc := &http.Client{Timeout: 10 * time.Second}

	child, base, sock := startChild(t, data)
	admin := harness.AdminClient(sock)
	a, err := harness.RegisterAgent(ctx, admin, harness.Registration{
		Name: "crash", Owner: "alice@example.com", Escalation: "oncall@example.com", Tier: "autonomous", Entitle: []string{"tool.call:echo/*"},
	})
	if err != nil {
		t.Fatal(err)
	}
	tokenURL, err := harness.TokenEndpoint(ctx, hc, base)
	if err != nil {
		t.Fatal(err)
	}
	at, err := a.Token(ctx, hc, tokenURL)
	if err != nil {
		t.Fatal(err)
	}
	task, err := harness.StartTask(ctx, hc, tokenURL, at, harness.Task{Scope: "tool.call:echo/*", Purpose: "crash test", OnBehalfOf: "alice@example.com"})
	if err != nil {
		t.Fatal(err)
	}

	// Decide from four loops, each decision about a resource of its own,
	// and kill the server once a few hundred have been answered.
	var (
		mu       sync.Mutex
		answered []string
		next     atomic.Int64
		wg       sync.WaitGroup
	)
	const killAfter = 400
	killed := make(chan struct{})
	var once sync.Once
	for range 4 {
		wg.Go(func() {
			for {
				id := fmt.Sprintf("echo/call-%d", next.Add(1))
				body := fmt.Sprintf(`{"subject":{"type":"agent","id":%q},"action":{"name":"tool.call"},"resource":{"type":"tool","id":%q,"properties":{"server":"echo"}}}`, a.ID, id)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/access/v1/evaluation", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+task)
				req.Header.Set("Content-Type", "application/json")
				var out struct {
					Decision bool `json:"decision"`
				}
				if err := harness.DoJSON(hc, req, &out); err != nil {
					select {
					case <-killed:
						return // the server is gone
					default:
						t.Errorf("decision before the kill: %v", err)
						return
					}
				}
				mu.Lock()
				answered = append(answered, id)
				n := len(answered)
				mu.Unlock()
				if n >= killAfter {
					once.Do(func() {
						close(killed)
						child.Process.Kill() // SIGKILL: no shutdown, no final copy of the journal
					})
				}
			}
		})
	}
	wg.Wait()
	child.Wait()
	if t.Failed() {
		return
	}
	// What the killed server journaled is copied into its tables on the
	// next start (see docs/audit.md, "Durability"). An emptied journal
	// holds only its binding frame (13 bytes); this one must hold events.
	const emptyJournal = 13
	if st, err := os.Stat(filepath.Join(data, "mandate.db-ledger")); err != nil || st.Size() <= emptyJournal {
		t.Fatalf("ledger journal after the kill: %v, %v; want the frames the next start recovers", st, err)
	}

	_, _, sock = startChild(t, data)
	admin = harness.AdminClient(sock)
	var rep struct {
		Events   int64 `json:"events"`
		Problems []any `json:"problems"`
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "http://mandate/admin/v1/audit/verify", nil)
	if err := harness.DoJSON(admin, req, &rep); err != nil || len(rep.Problems) > 0 || rep.Events == 0 {
		t.Fatalf("verify after the kill: %+v, %v; want a ledger that verifies", rep, err)
	}
	recorded := map[string]bool{}
	for after := int64(0); ; {
		var page struct {
			Events []struct {
				Seq      int64  `json:"seq"`
				Resource string `json:"resource"`
				Decision string `json:"decision"`
			} `json:"events"`
		}
		q := url.Values{"type": {"action.decided"}, "limit": {"1000"}, "after": {strconv.FormatInt(after, 10)}}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://mandate/admin/v1/audit/events?"+q.Encode(), nil)
		if err := harness.DoJSON(admin, req, &page); err != nil {
			t.Fatal(err)
		}
		if len(page.Events) == 0 {
			break
		}
		for _, ev := range page.Events {
			recorded[strings.TrimPrefix(ev.Resource, "tool:")] = true
			after = ev.Seq
		}
	}
	var lost []string
	for _, id := range answered {
		if !recorded[id] {
			lost = append(lost, id)
		}
	}
	if len(lost) > 0 {
		t.Fatalf("%d of %d answered decisions are not in the ledger after the kill, such as %v", len(lost), len(answered), lost[:min(len(lost), 5)])
	}
	t.Logf("%d decisions answered before the kill, all in the ledger (%d decision events in all, %d events verified)", len(answered), len(recorded), rep.Events)
}

// startChild starts this test binary as a mandate server on data and
// returns it with its public URL and admin socket.
func startChild(t *testing.T, data string) (*exec.Cmd, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKilledServerLosesNoDecision$")
	cmd.Env = append(os.Environ(), childDataEnv+"="+data)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	ready := make(chan []string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				ready <- f[1:]
			}
		}
	}()
	select {
	case f := <-ready:
		return cmd, f[0], f[1]
	case <-time.After(30 * time.Second):
		t.Fatal("the child server did not start")
		return nil, "", ""
	}
}

// serveChild runs a server on dir until it is killed or told to stop.
func serveChild(dir string) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	cfg := server.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.DataDir = dir
	cfg.TrustDomain = "example.org"
	srv, err := server.New(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "server.New:", err)
		os.Exit(3)
	}
	fmt.Printf("READY %s %s\n", srv.PublicURL(), srv.SocketPath())
	if err := srv.Run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "Run:", err)
		os.Exit(3)
	}
	os.Exit(0)
}
