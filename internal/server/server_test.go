package server

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// testConfig returns a valid config for a server on 127.0.0.1:0 in a fresh
// temporary data directory.
func testConfig(t *testing.T) Config {
	t.Helper()
	c := Defaults()
	c.Listen = "127.0.0.1:0"
	// A short path: unix socket paths are limited to ~104 bytes.
	dir, err := os.MkdirTemp("", "mandate-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	c.DataDir = filepath.Join(dir, "data")
	return c
}

// startServer runs a server for cfg until the test ends (or stop is
// called) and returns it with a stop function that reports Run's error.
func startServer(t *testing.T, cfg Config) (*Server, func() error) {
	t.Helper()
	s, err := New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New() error = %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once bool
	var runErr error
	stop := func() error {
		if !once {
			once = true
			cancel()
			select {
			case runErr = <-done:
			case <-time.After(15 * time.Second):
				t.Fatal("Run did not return after cancel")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return s, stop
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func socketClient(path string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
	}}
}

func TestServerServesAndShutsDownCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	cfg := testConfig(t)
	s, stop := startServer(t, cfg)
	base := "http://" + s.Addr().String()
	client := &http.Client{Transport: &http.Transport{}}

	if code, body := get(t, client, base+"/healthz"); code != 200 || body != "ok\n" {
		t.Errorf("GET /healthz = %d %q, want 200 ok", code, body)
	}
	if code, body := get(t, client, base+"/readyz"); code != 200 || body != "ok\n" {
		t.Errorf("GET /readyz = %d %q, want 200 ok", code, body)
	}
	code, body := get(t, client, base+"/metrics")
	if code != 200 {
		t.Errorf("GET /metrics = %d", code)
	}
	for _, want := range []string{
		`mandate_http_requests_total{code="200",listener="tcp",route="GET /healthz"} 1`,
		`mandate_http_request_duration_seconds_bucket{listener="tcp",route="GET /readyz"`,
		"go_goroutines", "process_start_time_seconds",
		"mandate_audit_index_lag_events", "mandate_audit_journal_bytes", "mandate_audit_index_failures_total 0",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("GET /metrics: no %q in\n%s", want, body)
		}
	}
	if code, _ := get(t, client, base+"/nope"); code != 404 {
		t.Errorf("GET /nope = %d, want 404", code)
	}

	// The data directory is private and holds the store and the socket.
	st, err := os.Stat(cfg.DataDir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	if _, err := os.Stat(filepath.Join(cfg.DataDir, "mandate.db")); err != nil {
		t.Errorf("embedded store not created: %v", err)
	}
	st, err = os.Lstat(s.SocketPath())
	if err != nil {
		t.Fatalf("admin socket: %v", err)
	}
	if st.Mode()&os.ModeSocket == 0 || st.Mode().Perm() != 0o600 {
		t.Errorf("admin socket mode = %v, want a socket with 0600", st.Mode())
	}
	sc := socketClient(s.SocketPath())
	if code, _ := get(t, sc, "http://mandate/healthz"); code != 200 {
		t.Errorf("GET /healthz over the socket = %d", code)
	}

	if want := "http://127.0.0.1:" + portOf(s.Addr()); s.PublicURL() != want {
		t.Errorf("PublicURL() = %q, want %q", s.PublicURL(), want)
	}

	client.CloseIdleConnections()
	sc.CloseIdleConnections()
	if err := stop(); err != nil {
		t.Errorf("Run() after cancel = %v, want nil", err)
	}
	if _, err := os.Lstat(s.SocketPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("admin socket still there after shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", s.Addr().String()); err == nil {
		t.Error("TCP listener still accepting after shutdown")
	}
	// No goroutine outlives Run.
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d before, %d after shutdown:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func portOf(a net.Addr) string {
	_, p, _ := net.SplitHostPort(a.String())
	return p
}

func TestServerSocketOwnership(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s, stop := startServer(t, cfg)

	// A second server on the same data directory is refused.
	_, err := New(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "another mandate server is running") {
		t.Errorf("second New() on the same data dir error = %v, want 'another mandate server is running'", err)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A stale socket (nobody answering) is replaced.
	ln, err := net.Listen("unix", s.SocketPath())
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(s.SocketPath()); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}
	s2, _ := startServer(t, cfg)
	if code, _ := get(t, socketClient(s2.SocketPath()), "http://mandate/healthz"); code != 200 {
		t.Errorf("GET /healthz over the replaced socket = %d", code)
	}
}

func TestServerRefusesInsecureListen(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Listen = "0.0.0.0:0"
	_, err := New(t.Context(), cfg)
	if err == nil || !strings.Contains(err.Error(), "not a loopback address and TLS is off") {
		t.Fatalf("New(non-loopback, no TLS) error = %v", err)
	}
	if _, err := os.Stat(cfg.DataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused config still created the data dir: %v", err)
	}
}

func TestServerTLS(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Listen = "0.0.0.0:0"
	cfg.TLS.CertFile, cfg.TLS.KeyFile = writeTestCert(t)
	pemCert, err := os.ReadFile(cfg.TLS.CertFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemCert)
	s, _ := startServer(t, cfg)
	if !strings.HasPrefix(s.PublicURL(), "https://localhost:") {
		t.Errorf("PublicURL() = %q, want https://localhost:<port>", s.PublicURL())
	}
	// Plain HTTP to a TLS listener fails; TLS works.
	resp, err := http.Get("http://127.0.0.1:" + portOf(s.Addr()) + "/healthz")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain HTTP to the TLS listener succeeded")
		}
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, ServerName: "localhost"}}
	defer tr.CloseIdleConnections()
	code, _ := get(t, &http.Client{Transport: tr}, "https://127.0.0.1:"+portOf(s.Addr())+"/healthz")
	if code != 200 {
		t.Errorf("GET https /healthz = %d", code)
	}
}

func TestAdminAuthOnTCP(t *testing.T) {
	t.Parallel()
	const token = "mandate_admin_test_token"
	sum := sha256.Sum256([]byte(token))
	cfg := testConfig(t)
	cfg.Admin.TokenHashes = []string{"sha256:" + strings.Repeat("00", 32), "sha256:" + hex.EncodeToString(sum[:])}
	s, _ := startServer(t, cfg)
	url := "http://" + s.Addr().String() + "/admin/v1/agents"

	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"no token", "", 401},
		{"wrong scheme", "Basic " + token, 401},
		{"wrong token", "Bearer nope", 401},
		{"good token", "Bearer " + token, 200},
		{"good token, lower-case scheme", "bearer " + token, 200},
	} {
		req, _ := http.NewRequest("GET", url, nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p struct{ Detail string }
		_ = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("%s: GET /admin/v1/agents = %d (%s), want %d", tc.name, resp.StatusCode, p.Detail, tc.want)
		}
		if tc.want == 401 && (resp.Header.Get("Content-Type") != "application/problem+json" || p.Detail == "") {
			t.Errorf("%s: 401 without a problem body: %s %q", tc.name, resp.Header.Get("Content-Type"), p.Detail)
		}
	}

	// Over the socket no token is needed.
	if code, body := get(t, socketClient(s.SocketPath()), "http://mandate/admin/v1/agents"); code != 200 {
		t.Errorf("GET /admin/v1/agents over the socket = %d %s", code, body)
	}
}

func TestAdminClosedOnTCPWithoutHashes(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, testConfig(t))
	req, _ := http.NewRequest("GET", "http://"+s.Addr().String()+"/admin/v1/agents", nil)
	req.Header.Set("Authorization", "Bearer anything")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 401 || !strings.Contains(string(body), "not enabled on this listener") {
		t.Errorf("admin over TCP without hashes = %d %s", resp.StatusCode, body)
	}
}

func TestDerivePublicURL(t *testing.T) {
	t.Parallel()
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8420}
	for _, tc := range []struct {
		listen string
		tls    bool
		want   string
	}{
		{"127.0.0.1:8420", false, "http://127.0.0.1:8420"},
		{"localhost:0", false, "http://localhost:8420"},
		{"0.0.0.0:8420", true, "https://localhost:8420"},
		{":8420", true, "https://localhost:8420"},
		{"[::1]:8420", false, "http://[::1]:8420"},
	} {
		if got := derivePublicURL(tc.listen, addr, tc.tls); got != tc.want {
			t.Errorf("derivePublicURL(%q, %v) = %q, want %q", tc.listen, tc.tls, got, tc.want)
		}
	}
}

func TestServerWithFederation(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Federation.Issuers = []FederationIssuer{
		{Issuer: "https://kubernetes.default.svc", JWKSFile: jwks},
		{Issuer: "https://token.actions.githubusercontent.com", JWKSURL: "https://token.actions.githubusercontent.com/.well-known/jwks", Audience: "mandate"},
	}
	s, _ := startServer(t, cfg)
	if code, _ := get(t, http.DefaultClient, "http://"+s.Addr().String()+"/readyz"); code != 200 {
		t.Errorf("GET /readyz = %d", code)
	}
	fed, err := federatedIssuers(cfg.Federation.Issuers, "http://127.0.0.1:1")
	if err != nil || string(fed[0].JWKS) != `{"keys":[]}` || fed[0].Audience != "http://127.0.0.1:1" || fed[1].Audience != "mandate" {
		t.Errorf("federatedIssuers() = %+v, %v", fed, err)
	}
}

func TestServerOAuthEndpoints(t *testing.T) {
	t.Parallel()
	s, _ := startServer(t, testConfig(t))
	base := "http://" + s.Addr().String()
	code, body := get(t, http.DefaultClient, base+"/.well-known/oauth-authorization-server")
	var meta struct {
		Issuer        string `json:"issuer"`
		TokenEndpoint string `json:"token_endpoint"`
		JWKSURI       string `json:"jwks_uri"`
	}
	if err := json.Unmarshal([]byte(body), &meta); code != 200 || err != nil {
		t.Fatalf("GET metadata = %d %s (%v)", code, body, err)
	}
	if meta.Issuer != s.PublicURL() || meta.TokenEndpoint != s.PublicURL()+"/oauth/token" {
		t.Errorf("metadata = %+v, want issuer %s", meta, s.PublicURL())
	}
	code, body = get(t, http.DefaultClient, meta.JWKSURI)
	var jwks struct{ Keys []json.RawMessage }
	if err := json.Unmarshal([]byte(body), &jwks); code != 200 || err != nil || len(jwks.Keys) == 0 {
		t.Errorf("GET jwks = %d %s (%v)", code, body, err)
	}
	resp, err := http.PostForm(meta.TokenEndpoint, map[string][]string{"grant_type": {"client_credentials"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 && resp.StatusCode != 401 {
		t.Errorf("POST token without client auth = %d, want an OAuth error", resp.StatusCode)
	}
}
