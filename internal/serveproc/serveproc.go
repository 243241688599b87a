// Package serveproc runs `mandate serve` as a child process, for the
// harnesses that measure the real server from outside (cmd/mcpload,
// cmd/mandatesoak): a loopback port, a fresh temporary data directory and a
// configuration file written into it, readiness awaited, the log kept, and
// a stop that never leaves the process behind. It also reads what only the
// operating system can say about the child: its CPU time and memory.
package serveproc

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on the child's life cycle.
const (
	startTimeout = 30 * time.Second
	stopTimeout  = 20 * time.Second
)

// Options configure Start.
type Options struct {
	// Bin is the mandate binary to run (see Build).
	Bin string
	// TrustDomain is the server's SPIFFE trust domain.
	TrustDomain string
	// Life is how long task tokens and tasks last (tokens.task_ttl,
	// tasks.default_ttl, tasks.max_ttl): at least as long as the run.
	Life time.Duration
	// Upstreams are the MCP servers behind the gateway (mcp.upstreams).
	Upstreams []Upstream
	// Args are further flags for serve; they override the file.
	Args []string
}

// Upstream is a Streamable HTTP MCP server behind the gateway.
type Upstream struct {
	Name string `json:"name"`
	URL  string `json:"url"`
}

// Server is a running `mandate serve` child process.
type Server struct {
	// URL is its public URL (http://127.0.0.1:<port>).
	URL string
	// Socket is its admin socket.
	Socket string
	// Dir is the temporary directory holding its data directory (data/),
	// configuration file (mandate.yaml) and log (server.log, JSON).
	Dir string

	cmd  *exec.Cmd
	done chan error // the exit status, put back by every reader
}

// Build compiles mandate into dir and returns the binary's path. It runs
// the go command, so it works from inside the module's source tree.
func Build(ctx context.Context, dir string) (string, error) {
	bin := filepath.Join(dir, "mandate")
	if runtime.GOOS == "windows" {
		bin += ".exe"
	}
	out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/mandatehq/mandate/cmd/mandate").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build mandate: %v\n%s", err, out)
	}
	return bin, nil
}

var (
	buildOnce sync.Once
	built     string
	buildErr  error
)

// BinaryEnv names a mandate binary built beforehand that Binary returns
// instead of building one: for test binaries that run where there is no
// go command (CI runs the Windows tests under Wine, built on Linux).
const BinaryEnv = "MANDATE_TEST_BINARY"

// Binary builds the mandate command once per process, into a temporary
// directory, and returns its path: for tests that run it as its users do.
// With $MANDATE_TEST_BINARY set, it is that binary.
func Binary(tb testing.TB) string {
	tb.Helper()
	if bin := os.Getenv(BinaryEnv); bin != "" {
		return bin
	}
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "mandate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		built, buildErr = Build(context.Background(), dir)
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return built
}

// Start runs o.Bin serve on a loopback port with a fresh data directory
// and waits, up to 30s, until it logs where it serves and answers
// /readyz. Environment variables (GOGC, GOMEMLIMIT, MANDATE_*) reach the
// child as they are.
func Start(ctx context.Context, o Options) (_ *Server, err error) {
	dir, err := os.MkdirTemp("", "mandate-") // short: unix socket paths are limited to ~104 bytes
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	data := filepath.Join(dir, "data")
	cfgPath := filepath.Join(dir, "mandate.yaml")
	if err := writeConfig(cfgPath, data, o); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "server.log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(o.Bin, append([]string{"serve", "--config", cfgPath}, o.Args...)...)
	dieWithParent(cmd)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	s := &Server{Dir: dir, Socket: filepath.Join(data, "admin.sock"), cmd: cmd, done: make(chan error, 1)}
	serving := make(chan string, 1)
	go s.copyLog(logf, stderr, serving)

	deadline := time.NewTimer(startTimeout)
	defer deadline.Stop()
	fail := func(cause error) error {
		s.Stop()
		return fmt.Errorf("mandate serve: %w\n%s", cause, s.LogTail())
	}
	select {
	case s.URL = <-serving:
	case err := <-s.done:
		s.done <- err
		return nil, fmt.Errorf("mandate serve exited: %v\n%s", err, s.LogTail())
	case <-deadline.C:
		return nil, fail(fmt.Errorf("did not start in %v", startTimeout))
	case <-ctx.Done():
		return nil, fail(ctx.Err())
	}
	if err := s.awaitReady(ctx, deadline.C); err != nil {
		return nil, fail(err)
	}
	return s, nil
}

// writeConfig writes the configuration file: JSON, which is YAML, so that
// every value is quoted correctly.
func writeConfig(path, data string, o Options) error {
	life := o.Life.String()
	cfg := map[string]any{
		"data_dir":     data,
		"listen":       "127.0.0.1:0",
		"trust_domain": o.TrustDomain,
		"log":          map[string]any{"format": "json"},
		"tokens":       map[string]any{"task_ttl": life},
		"tasks":        map[string]any{"default_ttl": life, "max_ttl": life},
	}
	if len(o.Upstreams) > 0 {
		cfg["mcp"] = map[string]any{"upstreams": o.Upstreams}
	}
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o600)
}

// copyLog copies the child's log to logf, sends the public URL on serving
// when the line that says where it serves goes by, and reaps the child
// once its log ends.
func (s *Server) copyLog(logf *os.File, stderr io.Reader, serving chan<- string) {
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
	io.Copy(logf, stderr) // a line too long for the scanner: keep the rest
	err := s.cmd.Wait()
	logf.Close()
	s.done <- err
}

// awaitReady polls /readyz until it answers 200.
func (s *Server) awaitReady(ctx context.Context, deadline <-chan time.Time) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var last error
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/readyz", nil)
		if err != nil {
			return err
		}
		resp, err := hc.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("GET /readyz: %s", resp.Status)
		}
		last = err
		select {
		case <-tick.C:
		case err := <-s.done:
			s.done <- err
			return fmt.Errorf("exited before it was ready: %v", err)
		case <-deadline:
			return fmt.Errorf("not ready in %v: %v", startTimeout, last)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Pid is the child's process ID.
func (s *Server) Pid() int { return s.cmd.Process.Pid }

// LogTail is the end of the server's log, for error messages.
func (s *Server) LogTail() string {
	b, _ := os.ReadFile(filepath.Join(s.Dir, "server.log"))
	return string(b[max(len(b)-4096, 0):])
}

// Stop ends the server gracefully: SIGTERM, then SIGKILL if it has not
// exited within 20s. It returns the exit's error (nil for a clean one);
// calling it again returns the same.
func (s *Server) Stop() error {
	select {
	case err := <-s.done:
		s.done <- err
		return err
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(stopTimeout)
	defer t.Stop()
	select {
	case err := <-s.done:
		s.done <- err
		return err
	case <-t.C:
		s.cmd.Process.Kill()
		err := <-s.done
		s.done <- err
		return fmt.Errorf("mandate serve did not stop in %v (killed): %v", stopTimeout, err)
	}
}

// Close stops the server and removes its directory.
func (s *Server) Close() error {
	err := s.Stop()
	os.RemoveAll(s.Dir)
	return err
}

// clockTicks is USER_HZ, the unit of /proc's CPU times: 100 on every
// architecture Linux exposes to user space.
const clockTicks = 100

// CPU is the CPU time (user and system, all threads) the server has used
// so far (see ProcessCPU).
func (s *Server) CPU() (time.Duration, error) { return ProcessCPU(s.Pid()) }

// ProcessCPU is the CPU time (user and system, all threads) the process
// pid has used so far, from /proc/<pid>/stat, in steps of 10ms.
func ProcessCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	return parseStatCPU(b)
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/<pid>/stat line. The command name (field 2) may hold spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat []byte) (time.Duration, error) {
	i := strings.LastIndexByte(string(stat), ')')
	if i < 0 {
		return 0, errors.New("/proc stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:])) // f[0] is field 3 (state)
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc stat: %d fields after the command name, want 13 or more", len(f))
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc stat: %q: %v", v, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / clockTicks, nil
}

// Memory is a sample of the server process's memory, in bytes.
type Memory struct {
	RSS, HWM int64 // VmRSS, VmHWM (peak RSS)
}

// Memory reads the server's resident set from /proc/<pid>/status.
func (s *Server) Memory() (Memory, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", s.Pid()))
	if err != nil {
		return Memory{}, err
	}
	var m Memory
	for line := range strings.SplitSeq(string(b), "\n") {
		name, val, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		var p *int64
		switch name {
		case "VmRSS":
			p = &m.RSS
		case "VmHWM":
			p = &m.HWM
		default:
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(val), " kB"), 10, 64)
		if err != nil {
			return Memory{}, fmt.Errorf("%s: %q: %v", name, line, err)
		}
		*p = kb << 10
	}
	return m, nil
}

// DataSize is the size of the server's data directory (store and ledger).
func (s *Server) DataSize() int64 {
	var n int64
	filepath.WalkDir(filepath.Join(s.Dir, "data"), func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
