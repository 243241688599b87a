package main

import (
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/server"
)

func TestEgressCA(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, func(c *server.Config) {
		c.Egress.Listen = "127.0.0.1:0"
		c.Egress.Intercept = []string{"api.github.com", "*.npmjs.org"}
	})
	env := map[string]string{"MANDATE_DATA_DIR": dataDir}
	out := mustRun(t, env, "egress", "ca")
	blk, _ := pem.Decode([]byte(out))
	if blk == nil || blk.Type != "CERTIFICATE" {
		t.Fatalf("mandate egress ca printed %q, want a PEM certificate", out)
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil || !cert.IsCA || strings.Join(cert.PermittedDNSDomains, ",") != "api.github.com,npmjs.org" {
		t.Fatalf("CA certificate %+v (%v), want a CA constrained to the intercepted names", cert, err)
	}
	file := filepath.Join(t.TempDir(), "sub", "ca.pem")
	mustRun(t, env, "egress", "ca", "--out", file)
	if b, _ := os.ReadFile(file); string(b) != out {
		t.Errorf("--out wrote %q", b)
	}
}

func TestEgressCAWithoutInterception(t *testing.T) {
	t.Parallel()
	dataDir, _ := testServer(t, nil)
	code, _, errs := mandate(t, map[string]string{"MANDATE_DATA_DIR": dataDir}, "egress", "ca")
	if code == 0 || !strings.Contains(errs, "egress.intercept") {
		t.Fatalf("exit %d, stderr %q; want a failure that says how to turn interception on", code, errs)
	}
}
