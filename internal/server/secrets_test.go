package server

import (
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/seal"
)

// TestSecretsAPI: values go in on PUT and rotate only and never come back,
// in an answer or an error; bad input is a 400 that names no value.
func TestSecretsAPI(t *testing.T) {
	cfg := testConfig(t)
	s, _ := startServer(t, cfg)
	c := socketClient(s.SocketPath())
	const value = "api-SECRET-value-1"
	var bodies []string
	call := func(method, path, body string, want int) string {
		t.Helper()
		req, _ := http.NewRequestWithContext(t.Context(), method, "http://mandate"+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Errorf("%s %s = %d %s, want %d", method, path, resp.StatusCode, b, want)
		}
		bodies = append(bodies, string(b))
		return string(b)
	}
	call("PUT", "/admin/v1/secrets/gh", `{"value":"`+value+`","deliver":[{"upstream":"github","env":"GITHUB_TOKEN"}]}`, 201)
	call("PUT", "/admin/v1/secrets/gh", `{"value":"`+value+`-2"}`, 200)
	call("GET", "/admin/v1/secrets/gh", "", 200)
	call("GET", "/admin/v1/secrets", "", 200)
	call("POST", "/admin/v1/secrets/gh/rotate", `{"value_base64":"`+"YXBpLVNFQ1JFVC12YWx1ZS0z"+`"}`, 200) // api-SECRET-value-3
	call("POST", "/admin/v1/secrets/gh/rotate", `{}`, 400)
	call("PUT", "/admin/v1/secrets/Bad", `{"value":"`+value+`"}`, 400)
	call("PUT", "/admin/v1/secrets/big", `{"value":"`+strings.Repeat("x", 64<<10+1)+`"}`, 400)
	call("PUT", "/admin/v1/secrets/gh2", `{"value":"`+value+`","deliver":[{"upstream":"github","header":"host"}]}`, 400)
	call("PUT", "/admin/v1/secrets/gh3", `{"value":"`+value+`","unknown":1}`, 400)
	call("GET", "/admin/v1/secrets/nope", "", 404)
	call("GET", "/admin/v1/leases?failed=true", "", 200)
	call("GET", "/admin/v1/leases?task=x", "", 400)
	call("POST", "/admin/v1/secrets/rewrap", `{}`, 200)
	call("GET", "/admin/v1/audit/export", "", 200)
	call("DELETE", "/admin/v1/secrets/gh", "", 204)
	all := strings.Join(bodies, "\n")
	if !strings.Contains(all, `"secret.put"`) || strings.Contains(all, "xxxxxxxxxxxxxxxx") {
		t.Errorf("the ledger export lacks secret.put, or an answer repeats an oversized value")
	}
	for _, v := range []string{value, value + "-2", "api-SECRET-value-3"} {
		if strings.Contains(all, v) {
			t.Errorf("an answer or the ledger shows the value %q", v)
		}
	}
	// Bodies arrive only with their admin identity: without one, refused.
	resp, err := http.Get("http://" + s.Addr().String() + "/admin/v1/secrets")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized && resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /admin/v1/secrets on TCP without a token = %d, want it refused", resp.StatusCode)
	}
}

// TestSecretsWrongKEK: a store whose secrets were sealed under another
// key-encryption key refuses to start, saying which key it needs.
func TestSecretsWrongKEK(t *testing.T) {
	cfg := testConfig(t)
	s, stop := startServer(t, cfg)
	c := socketClient(s.SocketPath())
	req, _ := http.NewRequestWithContext(t.Context(), "PUT", "http://mandate/admin/v1/secrets/gh", strings.NewReader(`{"value":"v"}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("PUT = %v, %v", resp, err)
	}
	resp.Body.Close()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	other, _ := seal.GenerateKEK()
	kf := filepath.Join(t.TempDir(), "other.kek")
	if err := os.WriteFile(kf, other.Text(), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg.Seal.KEKFile = kf
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "key-encryption key") || !strings.Contains(err.Error(), other.ID()) {
		t.Errorf("New(wrong KEK) = %v, want a refusal naming the keys", err)
	}
	cfg.Seal.KEKFile = filepath.Join(t.TempDir(), "missing.kek")
	if _, err := New(t.Context(), cfg); err == nil || !strings.Contains(err.Error(), "missing.kek") {
		t.Errorf("New(missing KEK file) = %v, want a refusal naming the file", err)
	}
}
