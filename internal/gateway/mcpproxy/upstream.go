package mcpproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Upstream is one MCP server behind the gateway, by name. Exactly one of
// Command (a stdio server the gateway spawns) or URL (a Streamable HTTP
// server) is set.
type Upstream struct {
	// Name is the upstream's name: the endpoint path segment and the tool
	// namespace on the aggregated endpoint. [a-z0-9_-], 1-64 bytes, not
	// starting with _ or -, without "__".
	Name string `json:"name"`
	// Command and Args start a stdio server; Env is its whole environment
	// (KEY=VALUE; the gateway's own environment is not inherited, so
	// brokered secrets reach only the server they are for) and Dir its
	// working directory.
	Command string   `json:"command,omitempty"`
	Args    []string `json:"args,omitempty"`
	Env     []string `json:"env,omitempty"`
	Dir     string   `json:"dir,omitempty"`
	// URL is a Streamable HTTP server's endpoint; Headers are sent with
	// every request to it (they can carry brokered credentials).
	URL     string            `json:"url,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Timeout bounds each call to the upstream; zero means the gateway's
	// Limits.CallTimeout.
	Timeout time.Duration `json:"timeout,omitempty"`
}

var upstreamName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,63}$`)

// Validate checks u's fields.
func (u *Upstream) Validate() error {
	if !upstreamName.MatchString(u.Name) {
		return fmt.Errorf("mcpproxy: upstream name %q must match %s", u.Name, upstreamName)
	}
	if strings.Contains(u.Name, NamespaceSep) {
		// On the aggregated endpoint "<upstream>__<name>" must split one
		// way only.
		return fmt.Errorf("mcpproxy: upstream name %q must not contain %q, which separates upstream and tool names on the aggregated endpoint", u.Name, NamespaceSep)
	}
	if (u.Command == "") == (u.URL == "") {
		return fmt.Errorf("mcpproxy: upstream %q needs exactly one of command or url", u.Name)
	}
	if u.URL == "" && len(u.Headers) > 0 {
		return fmt.Errorf("mcpproxy: upstream %q: headers need a url", u.Name)
	}
	return nil
}

// Backoff bounds for restarting a failed upstream connection.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 30 * time.Second
	// stableAfter is how long a session must have lived for its end not to
	// count as a failed start.
	stableAfter = 10 * time.Second
)

// upConn is a downstream session's connection to one upstream. It is
// (re)established on demand: when a stdio server exits or an HTTP session
// breaks, the next call reconnects, with exponential backoff between
// failed attempts.
type upConn struct {
	s   *session
	cfg *Upstream

	mu       sync.Mutex
	cs       *mcp.ClientSession
	client   *mcp.Client
	init     *mcp.InitializeResult
	roots    []string // root URIs mirrored from the downstream client
	order    msgCounter
	failures int
	nextTry  time.Time
	closed   bool
	// headers are the credentials delivered in an HTTP upstream's
	// requests (secrets.go), which the raw relay's requests carry too.
	headers map[string]string
}

// errUpstreamDown marks failures to reach an upstream.
var errUpstreamDown = errors.New("upstream unavailable")

// get returns a live client session, connecting if needed.
func (u *upConn) get(ctx context.Context) (*mcp.ClientSession, error) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.closed {
		return nil, fmt.Errorf("%w: session closed", errUpstreamDown)
	}
	if u.cs != nil {
		return u.cs, nil
	}
	now := time.Now()
	if now.Before(u.nextTry) {
		return nil, &retryError{err: fmt.Errorf("%w: upstream %q is restarting", errUpstreamDown, u.cfg.Name), after: u.nextTry.Sub(now)}
	}
	cs, until, err := u.connect(ctx)
	if err != nil {
		u.failures++
		d := min(maxBackoff, minBackoff<<min(u.failures-1, 16))
		u.nextTry = now.Add(d)
		u.s.gw.log.Warn("upstream connect failed", "upstream", u.cfg.Name, "err", err, "retry_in", d)
		return nil, &retryError{err: fmt.Errorf("%w: upstream %q: %v", errUpstreamDown, u.cfg.Name, err), after: d}
	}
	// failures is reset only once a session has proved stable (below), so
	// a server that crashes right after starting backs off further each time.
	connectedAt := time.Now()
	u.cs = cs
	u.init = cs.InitializeResult()
	u.expireAt(cs, until)
	u.s.gw.wg.Add(1)
	go func() {
		defer u.s.gw.wg.Done()
		err := cs.Wait()
		u.mu.Lock()
		restart := false
		if u.cs == cs {
			u.cs = nil
			if !u.closed {
				u.s.gw.log.Warn("upstream session ended; restarting", "upstream", u.cfg.Name, "err", err)
				if time.Since(connectedAt) > stableAfter {
					u.failures = 0
				}
				u.failures++
				u.nextTry = time.Now().Add(min(maxBackoff, minBackoff<<min(u.failures-1, 16)))
				restart = true
			}
		}
		u.mu.Unlock()
		if restart {
			u.supervise()
		}
	}()
	return cs, nil
}

// supervise restarts a crashed upstream once its backoff has passed (and
// again, with growing backoff, while restarting fails), so that it is
// ready before the next call. It stops when the session or gateway closes.
func (u *upConn) supervise() {
	ctx := u.s.gw.ctx
	for {
		u.mu.Lock()
		wait, done := time.Until(u.nextTry), u.closed || u.cs != nil
		u.mu.Unlock()
		if done {
			return
		}
		t := time.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if _, err := u.get(ctx); err == nil {
			return
		}
	}
}

// connect opens a client session to the upstream, with the credentials
// leased for the session's task (secrets.go), and returns it with when
// those leases end.
func (u *upConn) connect(ctx context.Context) (*mcp.ClientSession, time.Time, error) {
	if u.client == nil {
		u.client = mcp.NewClient(&mcp.Implementation{Name: "mandate-gateway", Version: "1"}, u.s.clientOptions(u))
		u.client.AddReceivingMiddleware(u.s.relayRequests)
	}
	inj, err := u.inject(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	var t mcp.Transport
	if u.cfg.Command != "" {
		cmd := exec.Command(u.cfg.Command, u.cfg.Args...)
		cmd.Env = u.cfg.Env
		if cmd.Env == nil {
			cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
		}
		cmd.Env = withEnv(cmd.Env, inj.Env)
		cmd.Dir = u.cfg.Dir
		cmd.Stderr = &logWriter{log: u.s.gw.log, upstream: u.cfg.Name}
		pt, err := startProcess(cmd, &u.order)
		if err != nil {
			return nil, time.Time{}, err
		}
		t = pt
	} else {
		hc := *u.s.gw.upstreamHTTP(u.cfg)
		base := hc.Transport
		if base == nil {
			base = http.DefaultTransport
		}
		if len(inj.Headers) > 0 {
			base = &headerTransport{base: base, headers: inj.Headers}
		}
		u.headers = inj.Headers
		hc.Transport = &countingTransport{base: base, c: &u.order}
		t = &mcp.StreamableClientTransport{Endpoint: u.cfg.URL, HTTPClient: &hc, MaxRetries: -1}
	}
	// The session outlives the request that opened it: connect under the
	// gateway's lifetime (and none of the request's values: the SDK's
	// client would take a sessionless request's protocol revision from
	// them for the handshake), bounded by the connect timeout and by the
	// request.
	cctx, cancel := context.WithTimeout(u.s.gw.ctx, u.s.gw.cfg.Limits.ConnectTimeout)
	defer cancel()
	cctx, release := mergeCancel(ctx, cctx)
	defer release()
	cs, err := u.client.Connect(cctx, t, nil)
	if err != nil {
		if pt, ok := t.(*process); ok {
			pt.stop()
		}
		return nil, time.Time{}, err
	}
	return cs, inj.Until, nil
}

// process is a spawned stdio server: an IOTransport over its pipes, whose
// closing stops the process (stdin closed, then SIGTERM, then SIGKILL).
type process struct {
	mcp.IOTransport
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(cmd *exec.Cmd, c *msgCounter) (*process, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() { _ = cmd.Wait(); close(p.done) }()
	p.IOTransport = mcp.IOTransport{
		Reader: &procReader{countingReader: countingReader{r: stdout, c: c}},
		Writer: &procWriter{WriteCloser: stdin, p: p},
	}
	return p, nil
}

// stop ends the process: stdin is closed so a well-behaved server exits;
// after a grace period it is terminated, then killed.
func (p *process) stop() {
	select {
	case <-p.done:
		return
	case <-time.After(2 * time.Second):
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

type procReader struct{ countingReader }

func (r *procReader) Close() error { return nil }

// procWriter is the process's stdin; closing it stops the process.
type procWriter struct {
	io.WriteCloser
	p *process
}

func (w *procWriter) Close() error {
	err := w.WriteCloser.Close()
	w.p.stop()
	return err
}

// close ends the upstream session (stopping a stdio server).
func (u *upConn) close() {
	u.mu.Lock()
	u.closed = true
	cs := u.cs
	u.cs = nil
	u.mu.Unlock()
	if cs != nil {
		_ = cs.Close()
	}
}

// drop discards a session that failed mid-call so the next call reconnects.
func (u *upConn) drop(cs *mcp.ClientSession) {
	u.mu.Lock()
	if u.cs == cs {
		u.cs = nil
	}
	u.mu.Unlock()
	_ = cs.Close()
}

// mergeCancel returns a context carrying b's values and deadline that is
// also cancelled when a is, and the function that cancels it and stops
// watching a: the caller calls it when the work under the context is done
// (directly: on a per-call path, a watcher that waits for the context to
// end costs allocations and a goroutine).
func mergeCancel(a, b context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(b)
	stop := context.AfterFunc(a, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// headerTransport adds fixed headers to every request.
type headerTransport struct {
	base    http.RoundTripper
	headers map[string]string
}

func (h *headerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	for k, v := range h.headers {
		r.Header.Set(k, v)
	}
	return h.base.RoundTrip(r)
}
