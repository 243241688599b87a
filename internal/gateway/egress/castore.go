package egress

import (
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mandatehq/mandate/internal/seal"
)

// Files of the interception CA in its directory (the data directory).
const (
	// CAFile holds the CA certificate and its sealed private key: PEM
	// blocks "CERTIFICATE" and "MANDATE SEALED CA KEY" (a seal blob of the
	// PKCS #8 key, bound to the certificate's SHA-256). Mode 0600.
	CAFile = "egress-ca.sealed"
	// CACertFile is the CA certificate alone, in PEM, for clients to
	// trust (rewritten from CAFile at every start). Mode 0644.
	CACertFile = "egress-ca.pem"

	// SealPurposeCAKey is the seal purpose of the CA's private key.
	SealPurposeCAKey = "egress.ca_key"

	pemSealedKey  = "MANDATE SEALED CA KEY"
	maxCAFileSize = 64 << 10
)

// CAStatus says what LoadCA did.
type CAStatus string

// CA statuses.
const (
	CALoaded  CAStatus = "loaded"  // the stored CA, unchanged
	CACreated CAStatus = "created" // none was stored: a new one
	// CARenewed: the stored CA was within CARenewBefore of its end, or its
	// name constraints were not the configured patterns': a new one
	// replaced it (clients must trust the new certificate).
	CARenewed CAStatus = "renewed"
)

// LoadCA returns the interception CA kept in dir, sealed with keys: the
// stored one when it opens and still fits (constraints c, more than
// CARenewBefore left at now), else a new one, stored before it is
// returned. A stored CA whose key does not open (another key-encryption
// key, an altered file) is an error, never replaced: remove the file to
// make a new CA.
func LoadCA(dir string, keys *seal.Keyring, c Constraints, now time.Time) (*CA, CAStatus, error) {
	path := filepath.Join(dir, CAFile)
	ca, blob, err := readCA(path, keys)
	status := CALoaded
	switch {
	case errors.Is(err, fs.ErrNotExist):
		status = CACreated
	case err != nil:
		return nil, "", fmt.Errorf("%w\nthe interception CA in %s cannot be used; restore the key-encryption key it was sealed with, or remove the file to make a new CA (clients must then trust the new %s)", err, path, CACertFile)
	case !now.Before(ca.cert.NotAfter.Add(-CARenewBefore)) || !ca.constrainedTo(c):
		status = CARenewed
	case keys.NeedsReseal(blob):
		if err := writeCA(path, ca, keys); err != nil {
			return nil, "", err
		}
	}
	if status != CALoaded {
		if ca, err = GenerateCA(c, now); err != nil {
			return nil, "", err
		}
		if err := writeCA(path, ca, keys); err != nil {
			return nil, "", err
		}
	}
	cert := filepath.Join(dir, CACertFile)
	if cur, err := os.ReadFile(cert); err != nil || string(cur) != string(ca.certPEM) {
		if err := writeFileAtomic(cert, ca.certPEM, 0o644); err != nil {
			return nil, "", err
		}
	}
	return ca, status, nil
}

// readCA reads and opens the CA file at path; it also returns the sealed
// key blob.
func readCA(path string, keys *seal.Keyring) (*CA, []byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxCAFileSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("egress: read %s: %w", path, err)
	}
	if len(b) > maxCAFileSize {
		return nil, nil, fmt.Errorf("egress: %s is too large to be a CA", path)
	}
	certBlock, rest := pem.Decode(b)
	keyBlock, rest := pem.Decode(rest)
	if certBlock == nil || certBlock.Type != "CERTIFICATE" || keyBlock == nil || keyBlock.Type != pemSealedKey || len(rest) != 0 {
		return nil, nil, fmt.Errorf("egress: %s: want a CERTIFICATE and a %s PEM block", path, pemSealedKey)
	}
	der, err := keys.Open(SealPurposeCAKey, fingerprint(certBlock.Bytes), keyBlock.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("egress: the CA key in %s: %w", path, err)
	}
	defer clear(der)
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, nil, fmt.Errorf("egress: the CA key in %s: %w", path, err)
	}
	key, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, nil, fmt.Errorf("egress: the CA key in %s is not an ECDSA key", path)
	}
	ca, err := newCA(certBlock.Bytes, key)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	return ca, keyBlock.Bytes, nil
}

// writeCA seals ca's key under the primary key-encryption key and
// replaces the CA file at path with it and the certificate.
func writeCA(path string, ca *CA, keys *seal.Keyring) error {
	der, err := x509.MarshalPKCS8PrivateKey(ca.key)
	if err != nil {
		return fmt.Errorf("egress: CA key: %w", err)
	}
	defer clear(der)
	sealed, err := keys.Seal(SealPurposeCAKey, fingerprint(ca.cert.Raw), der)
	if err != nil {
		return fmt.Errorf("egress: seal the CA key: %w", err)
	}
	out := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: pemSealedKey, Bytes: sealed})...)
	return writeFileAtomic(path, out, 0o600)
}

// writeFileAtomic writes b to path under a temporary name in its
// directory, syncs it and renames it into place.
func writeFileAtomic(path string, b []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("egress: write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("egress: write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return nil
}
