package agentrun

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/token"
)

// Exit statuses of Run besides the command's own.
const (
	// ExitFailed: the task could not be started, or it could not be ended
	// after a command that exited 0.
	ExitFailed = 1
	// ExitNotExecutable and ExitNotFound are the shell's statuses for a
	// command that cannot be started.
	ExitNotExecutable = 126
	ExitNotFound      = 127
)

// File names in the run's private directory besides TokenFileName.
const (
	DPoPKeyFileName   = "dpop-key.jwk"
	MCPConfigFileName = "mcp.json"
)

// DefaultTimeout bounds each request to the server.
const DefaultTimeout = 30 * time.Second

// Config configures Run.
type Config struct {
	// Server is the mandate server's public URL (its issuer); required.
	Server string
	// Credential is the agent's key; required.
	Credential Credential
	// Task is the task to start; Purpose and Scope are required.
	Task TaskRequest
	// DPoP binds the task's tokens to a key made for this run (RFC 9449);
	// the command gets it as MANDATE_DPOP_KEY, a file in the private
	// directory.
	DPoP bool
	// Egress, if set, is the egress proxy's URL: the command's HTTP(S)
	// proxy is a local forwarder to it (see forwarder).
	Egress string
	// MCPURL is the gateway endpoint the command is pointed at (default
	// Server + "/mcp").
	MCPURL string
	// MandateBinary, if set, is the mandate executable the ready MCP
	// client configuration (MANDATE_MCP_CONFIG) starts as its stdio bridge.
	MandateBinary string
	// Command is the program and its arguments; required.
	Command []string
	// Env is the environment the command inherits (os.Environ()), less
	// what Run removes and overrides.
	Env            []string
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	HTTPClient     *http.Client
	Timeout        time.Duration // per server request (DefaultTimeout)
	Logger         *slog.Logger  // diagnostics (nil: warnings to Stderr)
}

// runner is one run in progress.
type runner struct {
	cfg    Config
	oc     *oauthClient
	dir    *privateDir
	log    *slog.Logger
	stderr io.Writer

	mu      sync.Mutex
	current *issued
	taskID  string
}

// Run starts the task, runs the command with its credential, renews the
// token while the command runs, forwards signals to it, and ends the
// task when it exits. It returns the exit status for mandate run:
// the command's, 128+n for a command killed by signal n, 126/127 for a
// command that cannot be started, ExitFailed when the task cannot be
// started; and a non-nil error, with a non-zero status, whenever the task
// could not be ended.
func Run(ctx context.Context, cfg Config) (int, error) {
	r, err := newRunner(cfg)
	if err != nil {
		return ExitFailed, err
	}
	if err := r.start(ctx); err != nil {
		return ExitFailed, err
	}
	code, runErr := r.runCommand(ctx)
	endErr := r.end(ctx, code, runErr)
	if rmErr := r.dir.remove(); rmErr != nil {
		fmt.Fprintf(r.stderr, "mandate run: removing %s: %v\n", r.dir.path, rmErr)
	}
	switch {
	case endErr != nil && code == 0:
		return ExitFailed, endErr
	case endErr != nil:
		return code, endErr
	case runErr != nil:
		return code, runErr
	}
	return code, nil
}

func newRunner(cfg Config) (*runner, error) {
	if len(cfg.Command) == 0 || cfg.Command[0] == "" {
		return nil, errors.New("no command to run")
	}
	if strings.TrimSpace(cfg.Task.Purpose) == "" || strings.TrimSpace(cfg.Task.Scope) == "" {
		return nil, errors.New("a task needs a purpose and a scope")
	}
	u, err := url.Parse(cfg.Server)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http(s)://host[:port]", cfg.Server)
	}
	cfg.Server = strings.TrimSuffix(cfg.Server, "/")
	if cfg.MCPURL == "" {
		cfg.MCPURL = cfg.Server + "/mcp"
	}
	if cfg.Credential.Key == nil || cfg.Credential.Agent == "" || cfg.Credential.KeyID == "" {
		return nil, errors.New("the agent's credential is incomplete (agent, key and kid)")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.Stdout == nil {
		cfg.Stdout = io.Discard
	}
	if cfg.Stderr == nil {
		cfg.Stderr = io.Discard
	}
	hc := cfg.HTTPClient
	if hc == nil {
		hc = &http.Client{}
	}
	stderr := &lockedWriter{w: cfg.Stderr}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	r := &runner{cfg: cfg, log: log, stderr: stderr,
		oc: &oauthClient{hc: hc, cred: cfg.Credential, timeout: cfg.Timeout}}
	if cfg.DPoP {
		_, k, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		r.oc.dpop = k
	}
	return r, nil
}

// start starts the task and writes what the command is handed.
func (r *runner) start(ctx context.Context) error {
	if err := r.oc.discover(ctx, r.cfg.Server); err != nil {
		return err
	}
	at, err := r.oc.agentToken(ctx)
	if err != nil {
		return err
	}
	tt, err := r.oc.startTask(ctx, at.Token, r.cfg.Task)
	if err != nil {
		return err
	}
	c, err := readClaims(tt.Token)
	if err != nil {
		return err
	}
	r.current, r.taskID = tt, c.TaskID
	if r.dir, err = newPrivateDir(); err == nil {
		err = r.writeFiles()
	}
	if err != nil {
		// The task exists: end it before giving up.
		if endErr := r.end(ctx, ExitFailed, err); endErr != nil {
			err = errors.Join(err, endErr)
		}
		if r.dir != nil {
			_ = r.dir.remove()
		}
		return err
	}
	fmt.Fprintf(r.stderr, "mandate run: task %s started on behalf of %s\n", r.taskID, c.Subject)
	return nil
}

// taskClaims are the task token's claims Run reads, unverified: the
// server just issued it, and they only name the task and its principal.
type taskClaims struct {
	TaskID  string `json:"task_id"`
	Subject string `json:"sub"`
}

func readClaims(raw string) (*taskClaims, error) {
	t, err := jwt.ParseSigned(raw, token.SignatureAlgorithms)
	if err != nil {
		return nil, fmt.Errorf("the task token is not a JWT: %v", err)
	}
	var c taskClaims
	if err := t.UnsafeClaimsWithoutVerification(&c); err != nil || c.TaskID == "" {
		return nil, errors.New("the server's token names no task")
	}
	return &c, nil
}

// writeFiles writes the token file, the DPoP key and the MCP configuration.
func (r *runner) writeFiles() error {
	if err := r.dir.write(TokenFileName, []byte(r.current.Token+"\n")); err != nil {
		return fmt.Errorf("task token file: %w", err)
	}
	if r.oc.dpop != nil {
		b, err := json.Marshal(jose.JSONWebKey{Key: r.oc.dpop, Algorithm: string(jose.EdDSA), Use: "sig"})
		if err != nil {
			return err
		}
		if err := r.dir.write(DPoPKeyFileName, b); err != nil {
			return fmt.Errorf("DPoP key file: %w", err)
		}
	}
	if r.cfg.MandateBinary != "" {
		b, err := json.MarshalIndent(r.mcpConfig(), "", "  ")
		if err != nil {
			return err
		}
		if err := r.dir.write(MCPConfigFileName, append(b, '\n')); err != nil {
			return fmt.Errorf("MCP configuration: %w", err)
		}
	}
	return nil
}

// mcpConfig is a ready MCP client configuration (the "mcpServers" form
// Claude Code's --mcp-config and desktop clients read): the gateway
// through mandate's stdio bridge, which reads the token file on every
// request. It holds paths, never a token.
func (r *runner) mcpConfig() any {
	env := map[string]string{
		"MANDATE_MCP_URL":         r.cfg.MCPURL,
		"MANDATE_TASK_TOKEN_FILE": r.dir.file(TokenFileName),
	}
	if r.oc.dpop != nil {
		env["MANDATE_DPOP_KEY"] = r.dir.file(DPoPKeyFileName)
	}
	type server struct {
		Command string            `json:"command"`
		Args    []string          `json:"args"`
		Env     map[string]string `json:"env"`
	}
	return map[string]any{"mcpServers": map[string]server{
		"mandate": {Command: r.cfg.MandateBinary, Args: []string{"mcp", "stdio"}, Env: env},
	}}
}

// token is the current task token.
func (r *runner) token() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.current.Token
}

// removedEnv are the variables the command never inherits: credentials
// and the settings Run sets itself.
var removedEnv = []string{
	"MANDATE_TASK_TOKEN", "MANDATE_TASK_TOKEN_FILE", "MANDATE_AGENT_KEY", "MANDATE_ADMIN_TOKEN",
	"MANDATE_PERSON_TOKEN_FILE", "MANDATE_DPOP_KEY", "MANDATE_TASK_ID", "MANDATE_SERVER",
	"MANDATE_MCP_URL", "MANDATE_MCP_CONFIG", "MANDATE_EGRESS_URL",
}

// proxyEnv are replaced when an egress proxy is configured: everything
// goes through it but loopback and the mandate server.
var proxyEnv = []string{"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "all_proxy", "no_proxy"}

// environ is the command's environment.
func (r *runner) environ(fwd *forwarder) []string {
	drop := removedEnv
	if fwd != nil {
		drop = append(append([]string(nil), removedEnv...), proxyEnv...)
	}
	var env []string
	for _, kv := range r.cfg.Env {
		k, _, _ := strings.Cut(kv, "=")
		if !containsKey(drop, k) {
			env = append(env, kv)
		}
	}
	env = append(env,
		"MANDATE_TASK_TOKEN_FILE="+r.dir.file(TokenFileName),
		"MANDATE_TASK_ID="+r.taskID,
		"MANDATE_SERVER="+r.cfg.Server,
		"MANDATE_MCP_URL="+r.cfg.MCPURL,
	)
	if r.oc.dpop != nil {
		env = append(env, "MANDATE_DPOP_KEY="+r.dir.file(DPoPKeyFileName))
	}
	if r.cfg.MandateBinary != "" {
		env = append(env, "MANDATE_MCP_CONFIG="+r.dir.file(MCPConfigFileName))
	}
	if fwd != nil {
		p := fwd.URL()
		noProxy := "localhost,127.0.0.1,::1"
		if u, err := url.Parse(r.cfg.Server); err == nil && !isLoopback(u.Hostname()) {
			noProxy += "," + u.Hostname()
		}
		env = append(env, "HTTP_PROXY="+p, "HTTPS_PROXY="+p, "http_proxy="+p, "https_proxy="+p,
			"NO_PROXY="+noProxy, "no_proxy="+noProxy)
	}
	return env
}

// containsKey reports whether k is in keys: exactly on Unix, regardless
// of case on Windows, whose environment is case-insensitive.
func containsKey(keys []string, k string) bool {
	for _, d := range keys {
		if d == k || (runtime.GOOS == "windows" && strings.EqualFold(d, k)) {
			return true
		}
	}
	return false
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// runCommand runs the command to its end and returns its exit status.
func (r *runner) runCommand(ctx context.Context) (int, error) {
	var fwd *forwarder
	if r.cfg.Egress != "" {
		var err error
		if fwd, err = newForwarder(r.cfg.Egress, r.token, r.log); err != nil {
			return ExitFailed, err
		}
		defer fwd.Close()
	}
	cmd := exec.Command(r.cfg.Command[0], r.cfg.Command[1:]...)
	cmd.Env = r.environ(fwd)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = r.cfg.Stdin, r.cfg.Stdout, r.stderr
	if f, ok := r.cfg.Stderr.(*os.File); ok {
		cmd.Stderr = f // the command gets the descriptor itself (a terminal stays one)
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwardedSignals...)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		code := ExitNotFound
		if errors.Is(err, os.ErrPermission) {
			code = ExitNotExecutable
		}
		return code, fmt.Errorf("starting %s: %w", r.cfg.Command[0], err)
	}
	rctx, stopRenewal := context.WithCancel(context.WithoutCancel(ctx))
	renewed := make(chan struct{})
	go func() {
		defer close(renewed)
		if reason := r.renewLoop(rctx); reason != "" {
			fmt.Fprintf(r.stderr, "mandate run: %s: stopping the command\n", reason)
			terminate(cmd.Process)
		}
	}()
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	var werr error
wait:
	for {
		select {
		case werr = <-waited:
			break wait
		case s := <-sigs:
			forward(cmd.Process, s)
		}
	}
	stopRenewal()
	<-renewed
	code, ok := exitStatus(cmd.ProcessState)
	if !ok && werr != nil {
		return ExitFailed, fmt.Errorf("waiting for the command: %w", werr)
	}
	return code, nil
}

// renewLoop renews the task token before it expires until ctx ends. It
// returns why the task cannot go on ("" when ctx ended): the server
// refused the renewal for good (the task ended, was revoked or expired).
func (r *runner) renewLoop(ctx context.Context) string {
	backoff := time.Second
	for {
		r.mu.Lock()
		cur := *r.current
		r.mu.Unlock()
		// Two thirds of the way through its life: time to retry before the
		// token lapses if the server is briefly away.
		wait := time.Until(cur.Expires.Add(-cur.TTL / 3))
		for {
			select {
			case <-ctx.Done():
				return ""
			case <-time.After(max(wait, 0)):
			}
			next, err := r.oc.renew(ctx, cur.Token)
			if err == nil {
				if werr := r.dir.write(TokenFileName, []byte(next.Token+"\n")); werr != nil {
					r.log.Error("mandate run: writing the renewed task token", "err", werr)
					wait = backoff
					continue
				}
				r.mu.Lock()
				r.current = next
				r.mu.Unlock()
				backoff = time.Second
				break
			}
			if ctx.Err() != nil {
				return ""
			}
			var oe *OAuthError
			if errors.As(err, &oe) && oe.Code == token.CodeInvalidGrant {
				return fmt.Sprintf("task %s is no longer active (%v)", r.taskID, err)
			}
			fmt.Fprintf(r.stderr, "mandate run: renewing the task token failed, retrying: %v\n", err)
			wait, backoff = backoff, min(2*backoff, 30*time.Second)
		}
	}
}

// lockedWriter serializes writes: mandate run's messages and the
// command's stderr share one writer.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// endAttempts is how often ending the task is tried before Run reports
// that it did not end.
const endAttempts = 3

// end ends the task; a failure is reported loudly and returned.
func (r *runner) end(ctx context.Context, code int, runErr error) error {
	reason := fmt.Sprintf("mandate run: the command exited with status %d", code)
	if runErr != nil {
		reason = "mandate run: " + clip(runErr.Error())
		if len(reason) > token.MaxEndReasonLen {
			reason = reason[:token.MaxEndReasonLen]
		}
	}
	reason = strings.Map(func(c rune) rune {
		if c < ' ' || c == 0x7f {
			return ' '
		}
		return c
	}, reason)
	ctx = context.WithoutCancel(ctx)
	var err error
	for i := range endAttempts {
		var status string
		if status, err = r.oc.endTask(ctx, r.token(), reason); err == nil {
			if status == "ended" {
				fmt.Fprintf(r.stderr, "mandate run: task %s ended\n", r.taskID)
			} else {
				fmt.Fprintf(r.stderr, "mandate run: task %s had stopped already (%s)\n", r.taskID, status)
			}
			return nil
		}
		var oe *OAuthError
		if errors.As(err, &oe) && oe.Status < 500 {
			break // refused for good: retrying changes nothing
		}
		time.Sleep(time.Duration(i+1) * time.Second)
	}
	r.mu.Lock()
	exp := r.current.Expires
	r.mu.Unlock()
	fmt.Fprintf(r.stderr, "mandate run: ERROR: TASK %s DID NOT END: %v\n"+
		"mandate run: its token stays valid until %s; end the task now: mandate task end %s\n",
		r.taskID, err, exp.Format(time.RFC3339), r.taskID)
	return fmt.Errorf("task %s did not end: %w", r.taskID, err)
}
