package egress

import (
	"bytes"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
)

func testPatterns(t *testing.T, ps ...string) *InterceptPatterns {
	t.Helper()
	p, err := ParseInterceptPatterns(ps)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestCAKeySealedAtRest: the CA's private key is nowhere on disk in the
// clear — no PEM private key, no DER or base64 of it — and the stored CA
// loads back as the same CA.
func TestCAKeySealedAtRest(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	keys := sealtest.Keyring()
	c := testPatterns(t, "api.github.com", "*.example.com").Constraints()
	ca, status, err := LoadCA(dir, keys, c, time.Now())
	if err != nil || status != CACreated {
		t.Fatalf("LoadCA = %v, %v; want a new CA", status, err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, _ := x509.MarshalECPrivateKey(ca.key)
	scalar, _ := ca.key.Bytes()
	needles := [][]byte{[]byte("PRIVATE KEY"), der, ecDER, []byte(base64.StdEncoding.EncodeToString(der)), []byte(base64.StdEncoding.EncodeToString(ecDER)), scalar}
	files := 0
	_ = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		files++
		b, _ := os.ReadFile(path)
		for _, n := range needles {
			if bytes.Contains(b, n) {
				t.Errorf("%s holds the CA key in the clear (%q...)", path, n[:min(len(n), 12)])
			}
		}
		return nil
	})
	if files != 2 {
		t.Errorf("%d files in the CA directory, want 2 (%s, %s)", files, CAFile, CACertFile)
	}
	if st, err := os.Stat(filepath.Join(dir, CAFile)); err == nil && st.Mode().Perm()&0o077 != 0 && os.PathSeparator == '/' {
		t.Errorf("%s has mode %v, want 0600", CAFile, st.Mode().Perm())
	}
	pemFile, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	if !bytes.Equal(pemFile, ca.CertPEM()) {
		t.Errorf("%s is not the CA certificate", CACertFile)
	}

	again, status, err := LoadCA(dir, keys, c, time.Now())
	if err != nil || status != CALoaded || !again.cert.Equal(ca.cert) || !again.key.Equal(ca.key) {
		t.Fatalf("second LoadCA = %v, %v; want the same CA loaded", status, err)
	}

	// Another key-encryption key does not open it, and nothing replaces
	// it: the start fails with the reason.
	other, _ := seal.GenerateKEK()
	otherRing, _ := seal.NewKeyring(other)
	if _, _, err := LoadCA(dir, otherRing, c, time.Now()); !errors.Is(err, seal.ErrUnknownKEK) {
		t.Fatalf("LoadCA with another KEK = %v, want ErrUnknownKEK", err)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, CACertFile)); !bytes.Equal(b, ca.CertPEM()) {
		t.Fatal("a CA that did not open was replaced")
	}

	// The certificate swapped for another CA's: the key, bound to the
	// certificate's digest, does not open.
	foreign, _ := GenerateCA(c, time.Now())
	stored, _ := os.ReadFile(filepath.Join(dir, CAFile))
	_, rest := pem.Decode(stored)
	swapped := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: foreign.cert.Raw}), rest...)
	if err := os.WriteFile(filepath.Join(dir, CAFile), swapped, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadCA(dir, keys, c, time.Now()); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("LoadCA with a swapped certificate = %v, want ErrOpen", err)
	}
}

func TestCARenewed(t *testing.T) {
	t.Parallel()
	keys := sealtest.Keyring()
	c := testPatterns(t, "api.github.com").Constraints()
	for _, tc := range []struct {
		name  string
		c     func() Constraints
		later time.Duration
	}{
		{"near its end", func() Constraints { return c }, CALifetime - CARenewBefore + time.Hour},
		{"patterns changed", func() Constraints { return testPatterns(t, "api.github.com", "uploads.github.com").Constraints() }, 0},
		{"every host now", func() Constraints { return testPatterns(t, "*").Constraints() }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			now := time.Now()
			first, _, err := LoadCA(dir, keys, c, now)
			if err != nil {
				t.Fatal(err)
			}
			next, status, err := LoadCA(dir, keys, tc.c(), now.Add(tc.later))
			if err != nil || status != CARenewed || next.cert.Equal(first.cert) {
				t.Fatalf("LoadCA = %v, %v; want a renewed CA", status, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, CACertFile)); !bytes.Equal(b, next.CertPEM()) {
				t.Fatalf("%s still holds the old CA", CACertFile)
			}
		})
	}
}

// TestCANameConstraints: a leaf of the CA verifies for an intercepted
// host, and one for any other host does not, even if the CA signed it
// (the key, were it stolen, vouches for the intercepted hosts only).
func TestCANameConstraints(t *testing.T) {
	t.Parallel()
	ca, err := GenerateCA(testPatterns(t, "api.github.com", "*.example.com", "127.0.0.1").Constraints(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	for host, ok := range map[string]bool{
		"api.github.com": true, "a.example.com": true, "a.b.example.com": true, "127.0.0.1": true,
		"github.com": false, "evil.com": false, "127.0.0.2": false, "[::1]": false,
	} {
		leaf, err := ca.issue(host, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		_, err = leaf.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: trimBrackets(host)})
		if (err == nil) != ok {
			t.Errorf("leaf for %s verifies: %v, want %v", host, err, ok)
		}
		if ok && leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore) > LeafLifetime+leafBackdate {
			t.Errorf("leaf for %s lives %v", host, leaf.Leaf.NotAfter.Sub(leaf.Leaf.NotBefore))
		}
	}
}

func TestLeafCacheBounded(t *testing.T) {
	t.Parallel()
	ca, err := GenerateCA(testPatterns(t, "*").Constraints(), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca.SetLeafCacheSize(3)
	first, _ := ca.leaf("h0.example")
	for i := range 10 {
		if _, err := ca.leaf("h" + string(rune('0'+i)) + ".example"); err != nil {
			t.Fatal(err)
		}
		if n := ca.cached(); n > 3 {
			t.Fatalf("%d leaves cached, want at most 3", n)
		}
	}
	again, _ := ca.leaf("h9.example")
	if again2, _ := ca.leaf("h9.example"); again != again2 {
		t.Error("a cached leaf was issued again")
	}
	if l, _ := ca.leaf("h0.example"); l == first {
		t.Error("an evicted leaf came back from the cache")
	}
	// A leaf close to its end is issued anew.
	ca.now = func() time.Time { return time.Now().Add(LeafLifetime - leafRenewBefore/2) }
	if l, _ := ca.leaf("h9.example"); l == again {
		t.Error("a leaf within leafRenewBefore of its end was served from the cache")
	}
}

func TestParseInterceptPatterns(t *testing.T) {
	t.Parallel()
	for _, bad := range []string{"", "API.github.com", "api.github.com.", "*.com", "**.x.com", "*.127.0.0.1", "x.com:443", "0177.0.0.1", "[::ffff:127.0.0.1]", "a.*.com", "*x.com"} {
		if _, err := ParseInterceptPatterns([]string{bad}); err == nil {
			t.Errorf("ParseInterceptPatterns(%q) = nil error, want refused", bad)
		}
	}
	p := testPatterns(t, "api.github.com", "*.example.com", "[2001:db8::1]")
	for host, want := range map[string]bool{"api.github.com": true, "x.api.github.com": false, "a.example.com": true,
		"example.com": false, "badexample.com": false, "[2001:db8::1]": true, "github.com": false} {
		if got := p.Match(host); got != want {
			t.Errorf("Match(%q) = %v, want %v", host, got, want)
		}
	}
	if c := p.Constraints(); strings.Join(c.DNS, ",") != "api.github.com,example.com" || len(c.IPs) != 1 {
		t.Errorf("Constraints = %+v", c)
	}
}
