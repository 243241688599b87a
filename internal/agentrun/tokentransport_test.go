package agentrun

import (
	"crypto/ed25519"
	"crypto/rand"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestTokenFileTransport: every request carries the token the file holds
// at that moment, replacing whatever credential the request had; with a
// DPoP key, as a DPoP token with a proof; a missing file fails the
// request instead of sending it without a credential.
func TestTokenFileTransport(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get("Authorization")+"|"+boolStr(r.Header.Get("DPoP") != ""))
		mu.Unlock()
	}))
	defer srv.Close()
	path := filepath.Join(tempDir(t), "tok")
	write := func(tok string) {
		if err := os.WriteFile(path, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	do := func(tr http.RoundTripper) error {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer stale")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	tr := &TokenFileTransport{Path: path}
	write("a.b.c")
	if err := do(tr); err != nil {
		t.Fatal(err)
	}
	write("d.e.f")
	if err := do(tr); err != nil {
		t.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	if err := do(&TokenFileTransport{Path: path, DPoPKey: key}); err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := do(tr); err == nil {
		t.Error("a request went out without a token file")
	}
	want := []string{"Bearer a.b.c|false", "Bearer d.e.f|false", "DPoP d.e.f|true"}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, " ") != strings.Join(want, " ") {
		t.Errorf("credentials = %v, want %v", seen, want)
	}
}

func boolStr(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func edKey() ed25519.PrivateKey {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	return k
}
