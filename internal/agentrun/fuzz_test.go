package agentrun

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
)

// FuzzForwarderAuth: the forwarder lets a request through only when its
// one Proxy-Authorization header is Basic with the run's secret as the
// password, whatever else the header holds.
func FuzzForwarderAuth(f *testing.F) {
	const secret = "SECRETSECRETSECRET"
	for _, s := range []string{
		"Basic " + base64.StdEncoding.EncodeToString([]byte("mandate:"+secret)),
		"Basic " + base64.StdEncoding.EncodeToString([]byte(secret+":")),
		"basic " + base64.StdEncoding.EncodeToString([]byte("x:"+secret)),
		"Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+secret+"\x00")),
		"Basic " + base64.RawStdEncoding.EncodeToString([]byte("x:"+secret)),
		"Bearer " + secret, "", "Basic", "Basic =", secret,
		"Ba\u017fic " + base64.StdEncoding.EncodeToString([]byte("x:"+secret)),
	} {
		f.Add(s)
	}
	fw := &forwarder{secret: secret}
	f.Fuzz(func(t *testing.T, h string) {
		r := &http.Request{Header: http.Header{"Proxy-Authorization": {h}}}
		got := fw.authorized(r)
		scheme, rest, _ := strings.Cut(h, " ")
		dec, err := base64.StdEncoding.DecodeString(rest)
		_, pass, _ := strings.Cut(string(dec), ":")
		// The scheme is matched ASCII-case-insensitively (RFC 7235 §2.1),
		// not with Unicode folding ("Baſic" is not "Basic").
		want := len(scheme) == 5 && strings.EqualFold(scheme, "Basic") && err == nil && pass == secret
		if got != want {
			t.Fatalf("authorized(%q) = %v, want %v", h, got, want)
		}
		r.Header["Proxy-Authorization"] = []string{h, h}
		if fw.authorized(r) {
			t.Fatalf("authorized two headers %q", h)
		}
	})
}

// FuzzReadKey: a key file is taken only as a private Ed25519 or P-256
// JWK with a kid; nothing panics.
func FuzzReadKey(f *testing.F) {
	for _, k := range []jose.JSONWebKey{
		{Key: edKey(), KeyID: "k1", Algorithm: "EdDSA"},
		{Key: edKey().Public(), KeyID: "k1"},
		{Key: edKey()},
	} {
		b, _ := json.Marshal(k)
		f.Add(b)
	}
	f.Add([]byte(`{"kty":"oct","k":"c2VjcmV0","kid":"k1"}`))
	f.Add([]byte(`{"keys":[]}`))
	dir := tempDir(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		p := filepath.Join(dir, "k.jwk")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		kid, key, err := ReadKey(p)
		if err != nil {
			return
		}
		if kid == "" || key == nil {
			t.Fatalf("ReadKey(%q) = %q, %v without an error", b, kid, key)
		}
		if _, err := signingAlg(key); err != nil {
			t.Fatalf("ReadKey(%q) took a key it cannot sign with: %v", b, err)
		}
	})
}
