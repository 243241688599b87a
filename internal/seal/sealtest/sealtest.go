// Package sealtest gives tests a seal.Keyring. Import it from tests only:
// its key-encryption key is fixed and public, so that a test reopening a
// store in another process or a second server sees the same KEK.
package sealtest

import (
	"bytes"

	"github.com/mandatehq/mandate/internal/seal"
)

// Keyring returns a keyring whose primary KEK is the fixed test KEK.
func Keyring() *seal.Keyring {
	r, err := seal.NewKeyring(KEK())
	if err != nil {
		panic(err)
	}
	return r
}

// KEK returns the fixed test key-encryption key.
func KEK() seal.KEK {
	k, err := seal.NewKEK(bytes.Repeat([]byte("mandate-test-kek"), 2))
	if err != nil {
		panic(err)
	}
	return k
}
