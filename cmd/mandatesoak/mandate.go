package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/mandatehq/mandate/internal/harness"
)

// What every task is for; the harness's decisions stay inside taskScope.
const (
	taskScope   = "tool.call:echo/* file.read:/data/**"
	taskPurpose = "memory soak"
	onBehalfOf  = "alice@example.com"
	trustDomain = "example.org"
	// taskBudget is large enough never to be spent, so that every task
	// keeps counting usage.
	taskBudget = 1_000_000_000
)

// server is a `mandate serve` child process with a temporary data
// directory.
type server struct {
	cmd  *exec.Cmd
	dir  string // temporary directory: data dir and the server's log
	url  string // public URL
	sock string // admin socket
	done chan error
}

// startServer runs bin serve on a loopback port with a fresh data
// directory, its task tokens and tasks lasting life, and waits until it
// serves. extra are further serve flags. Its log (JSON) goes to
// <dir>/server.log.
func startServer(ctx context.Context, bin string, life time.Duration, extra []string) (_ *server, err error) {
	dir, err := os.MkdirTemp("", "mandatesoak-") // short: unix socket paths are limited
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data")
	ttl := life.String()
	args := append([]string{"serve", "--data-dir", data, "--listen", "127.0.0.1:0",
		"--trust-domain", trustDomain, "--log-format", "json",
		"--tokens-task-ttl", ttl, "--tasks-default-ttl", ttl, "--tasks-max-ttl", ttl}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &server{cmd: cmd, dir: dir, sock: filepath.Join(data, "admin.sock"), done: make(chan error, 1)}
	// Copy the log, watching for the line that says where it serves.
	serving := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logf.Write(append(line, '\n'))
			var rec struct {
				Msg       string `json:"msg"`
				PublicURL string `json:"public_url"`
			}
			if json.Unmarshal(line, &rec) == nil && rec.Msg == "mandate serving" {
				select {
				case serving <- rec.PublicURL:
				default:
				}
			}
		}
		io.Copy(logf, stderr)
	}()
	go func() {
		<-copied
		err := cmd.Wait()
		logf.Close()
		s.done <- err
	}()
	select {
	case s.url = <-serving:
		return s, nil
	case err := <-s.done:
		s.done <- err
		return nil, fmt.Errorf("mandate serve exited: %v\n%s", err, s.logTail())
	case <-time.After(30 * time.Second):
		s.stop()
		return nil, fmt.Errorf("mandate serve did not start in 30s\n%s", s.logTail())
	case <-ctx.Done():
		s.stop()
		return nil, ctx.Err()
	}
}

// logTail is the end of the server's log, for error messages.
func (s *server) logTail() string {
	b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
	return string(b[max(len(b)-4096, 0):])
}

// stop ends the server gracefully (SIGTERM, then SIGKILL after 20s).
func (s *server) stop() error {
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-time.After(20 * time.Second):
		s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err
		return fmt.Errorf("mandate serve did not stop in 20s: %v", err)
	}
}

// close stops the server and removes its directory.
func (s *server) close() error {
	err := s.stop()
	os.RemoveAll(s.dir)
	return err
}

// memory is a sample of the server process's memory, in bytes.
type memory struct {
	rss, hwm int64 // VmRSS, VmHWM (peak RSS)
}

// mem reads the server's resident set from /proc.
func (s *server) mem() (memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	if err != nil {
		return memory{}, err
	}
	var m memory
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var p *int64
		switch name {
		case "VmRSS":
			p = &m.rss
		case "VmHWM":
			p = &m.hwm
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return memory{}, fmt.Errorf("%s: %q: %v", name, line, err)
		}
		*p = kb << 10
	}
	return m, nil
}

// dataSize is the size of the server's data directory (store and ledger).
func (s *server) dataSize() int64 {
	var n int64
	filepath.WalkDir(filepath.Join(s.dir, "data"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// metrics reads the named gauges and counters (without labels) from the
// server's Prometheus endpoint.
func metrics(ctx context.Context, hc *http.Client, base string, names ...string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	return parseMetrics(resp.Body, names...)
}

// parseMetrics picks the named unlabelled samples out of Prometheus text.
func parseMetrics(r io.Reader, names ...string) (map[string]float64, error) {
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		for _, n := range names {
			if name == n {
				f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
				if err != nil {
					return nil, fmt.Errorf("metric %s: %v", n, err)
				}
				out[n] = f
			}
		}
	}
	return out, sc.Err()
}

// soakTask is what every task is for; the harness's decisions stay inside
// its scope.
var soakTask = harness.Task{Scope: taskScope, Purpose: taskPurpose, OnBehalfOf: onBehalfOf, MaxActions: taskBudget}

// registerAgent registers the autonomous agent the tasks run as, over the
// admin socket.
func (s *server) registerAgent(ctx context.Context) (*harness.Agent, error) {
	return harness.RegisterAgent(ctx, harness.AdminClient(s.sock), harness.Registration{
		Name: "soak", Owner: onBehalfOf, Escalation: "oncall@example.com", Tier: "autonomous",
		Entitle: strings.Fields(taskScope),
	})
}
