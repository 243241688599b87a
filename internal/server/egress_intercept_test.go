package server

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/gateway/egress"
	"github.com/mandatehq/mandate/internal/harness"
	"github.com/mandatehq/mandate/internal/identity"
)

// mandate serve with egress.intercept: the CA is made in the data
// directory (its key sealed), served at /admin/v1/egress/ca, and an HTTPS
// request through the proxy gets a leased secret injected for its bound
// host only; the client never sees the value.
func TestEgressInterceptionServed(t *testing.T) {
	const value = "ghp_0123456789abcdefSECRET"
	up := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+value {
			http.Error(w, "no credential", http.StatusUnauthorized)
			return
		}
		_, _ = io.WriteString(w, "hello "+r.Header.Get("Authorization"))
	}))
	t.Cleanup(up.Close)
	host := strings.TrimPrefix(up.URL, "https://")
	_, port, _ := net.SplitHostPort(host)

	cfg := testConfig(t)
	cfg.TrustDomain = "example.org"
	cfg.Egress.Listen = "127.0.0.1:0"
	cfg.Egress.AllowPrivate = []string{"127.0.0.0/8"}
	cfg.Egress.ConnectPorts = []string{port}
	cfg.Egress.Intercept = []string{"127.0.0.1"}
	cfg.Egress.UpstreamCAFile = filepath.Join(t.TempDir(), "upstream.pem")
	if err := os.WriteFile(cfg.Egress.UpstreamCAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: up.Certificate().Raw}), 0o600); err != nil {
		t.Fatal(err)
	}
	class := filepath.Join(t.TempDir(), "classification.yaml")
	if err := os.WriteFile(class, []byte("risks:\n  - {match: \"secret.use:gh_token\", risk: read}\n  - {match: \"http.request:*\", risk: read}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Policy.ClassificationFile = class
	s, _ := startServer(t, cfg)
	admin := socketClient(s.SocketPath())

	req, _ := http.NewRequestWithContext(t.Context(), "PUT", "http://mandate/admin/v1/secrets/gh_token",
		strings.NewReader(`{"value":"`+value+`","deliver":[{"host":"`+host+`"}]}`))
	req.Header.Set("Content-Type", "application/json")
	if resp, err := admin.Do(req); err != nil || resp.StatusCode != 201 {
		t.Fatalf("put secret: %v %v", resp, err)
	}
	resp, err := admin.Get("http://mandate/admin/v1/egress/ca")
	if err != nil {
		t.Fatal(err)
	}
	caPEM, _ := io.ReadAll(resp.Body)
	roots := x509.NewCertPool()
	if resp.StatusCode != 200 || !roots.AppendCertsFromPEM(caPEM) {
		t.Fatalf("GET /admin/v1/egress/ca = %d %q", resp.StatusCode, caPEM)
	}
	if onDisk, _ := os.ReadFile(filepath.Join(cfg.DataDir, egress.CACertFile)); string(onDisk) != string(caPEM) {
		t.Errorf("%s is not the CA the server serves", egress.CACertFile)
	}

	_, tok := agentTask(t, s, harness.Registration{Name: "builder", Tier: string(identity.TierSupervised), Entitle: []string{"http.request:*", "secret.use:gh_token"}},
		harness.Task{Scope: "http.request:" + host + " secret.use:gh_token", Purpose: "build"})
	pu := &url.URL{Scheme: "http", Host: s.EgressAddr().String(), User: url.UserPassword("agent", tok)}
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: roots}}}
	req, _ = http.NewRequest("GET", up.URL+"/user", nil)
	req.Header.Set("Authorization", "Bearer [secret:gh_token]")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || string(b) != "hello Bearer [secret:gh_token]" {
		t.Fatalf("status %d %q, want 200 with the value injected and scrubbed from the answer", resp.StatusCode, b)
	}
	_ = filepath.WalkDir(cfg.DataDir, func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if data, _ := os.ReadFile(path); strings.Contains(string(data), "PRIVATE KEY") || strings.Contains(string(data), value) {
				t.Errorf("%s holds a private key or the secret in the clear", path)
			}
		}
		return nil
	})
}
