package token

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/seal/sealtest"
)

// TestRetiredKeyRefusesLaterTokens: a retired key stays published so that
// tokens it signed before retirement verify until they expire; a token it
// signed after retirement (a stolen or leaked retired key, or a replica
// that never noticed) is refused.
func TestRetiredKeyRefusesLaterTokens(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	ctx := t.Context()
	oldKID := f.kr.CurrentKeyID()
	oldPriv := currentPrivateKey(t, f.st, oldKID)
	before := f.sign(t, f.taskClaims())
	cachedBefore := f.sign(t, f.taskClaims())
	if _, err := f.v.Verify(ctx, VerifyRequest{Token: cachedBefore}); err != nil {
		t.Fatal(err)
	}
	// A token signed with the old key after its retirement, but verified
	// (and cached) before this replica learnt of the retirement.
	f.clock.Advance(2 * DefaultSkew)
	cachedLate := signJWT(t, jose.EdDSA, oldPriv, map[jose.HeaderKey]any{"typ": "at+jwt", "kid": oldKID}, f.taskClaims())
	f.clock.Advance(-2 * DefaultSkew)

	if err := f.kr.Rotate(ctx); err != nil {
		t.Fatal(err)
	}
	if f.kr.RetiredAt(oldKID).IsZero() {
		t.Fatalf("RetiredAt(old key) is zero after rotation")
	}
	if _, ok := f.kr.PublicKey(ctx, oldKID); !ok {
		t.Fatalf("the retired key is no longer published")
	}
	hdr := map[jose.HeaderKey]any{"typ": "at+jwt", "kid": oldKID}
	tests := []struct {
		name    string
		advance time.Duration
		raw     func() string
		wantErr bool
	}{
		{"signed before retirement", 0, func() string { return before }, false},
		{"signed before retirement, cached", 0, func() string { return cachedBefore }, false},
		{"iat within skew after retirement", DefaultSkew, func() string { return signJWT(t, jose.EdDSA, oldPriv, hdr, f.taskClaims()) }, false},
		{"iat after retirement", 2 * time.Second, func() string { return signJWT(t, jose.EdDSA, oldPriv, hdr, f.taskClaims()) }, true},
		{"iat after retirement, cached before it was known", 0, func() string { return cachedLate }, true},
	}
	for _, tc := range tests {
		f.clock.Advance(tc.advance)
		_, err := f.v.Verify(ctx, VerifyRequest{Token: tc.raw()})
		if (err != nil) != tc.wantErr {
			t.Errorf("%s: Verify() = %v, want error %v", tc.name, err, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "retired") {
			t.Errorf("%s: Verify() = %v, want it to say the key was retired", tc.name, err)
		}
	}
	// The token signed before retirement keeps verifying until it expires.
	f.clock.Advance(4 * time.Minute)
	if _, err := f.v.Verify(ctx, VerifyRequest{Token: before}); err != nil {
		t.Errorf("Verify(token signed before retirement, near its expiry) = %v", err)
	}
	f.clock.Advance(2 * time.Minute)
	if _, err := f.v.Verify(ctx, VerifyRequest{Token: before}); err == nil {
		t.Errorf("Verify(token signed before retirement, after its expiry) = nil error")
	}
}

// TestKeyringStoresOnlySealedKeys: what the keyring hands the store opens
// only with the KEK, names no private member, and is bound to its kid.
func TestKeyringStoresOnlySealedKeys(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	if err := f.kr.Rotate(t.Context()); err != nil {
		t.Fatal(err)
	}
	keys, _ := f.st.SigningKeys(t.Context(), time.Time{})
	if len(keys) != 2 {
		t.Fatalf("%d stored keys, want 2", len(keys))
	}
	for _, k := range keys {
		if !seal.IsSealed(k.SealedKey) || bytes.Contains(k.SealedKey, []byte(`"d"`)) {
			t.Errorf("stored key %s is not sealed: %q", k.KID, k.SealedKey)
		}
		var pub map[string]any
		if err := json.Unmarshal(k.PublicJWK, &pub); err != nil || pub["kid"] != k.KID || pub["d"] != nil || pub["x"] == nil {
			t.Errorf("stored public JWK of %s = %s, %v: want the public key only", k.KID, k.PublicJWK, err)
		}
	}
	if _, err := sealtest.Keyring().Open(SealPurpose, keys[1].KID, keys[0].SealedKey); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("Open(key 0's blob as key 1) = %v, want ErrOpen", err)
	}
	// A blob moved to another row makes the keyring fail to load, loudly.
	f.st.keys[0].SealedKey, f.st.keys[1].SealedKey = keys[1].SealedKey, keys[0].SealedKey
	if _, err := NewKeyring(t.Context(), KeyringConfig{Store: f.st, Sealer: sealtest.Keyring(), Now: f.clock.Now}); !errors.Is(err, seal.ErrOpen) {
		t.Errorf("NewKeyring(blobs swapped between rows) = %v, want ErrOpen", err)
	}
}

// TestKeyringWrongKEK: keys sealed under another KEK refuse to load with
// an error naming both KEKs; no new key is made in their place.
func TestKeyringWrongKEK(t *testing.T) {
	t.Parallel()
	f := newVFix(t)
	other, _ := seal.GenerateKEK()
	wrong, _ := seal.NewKeyring(other)
	n := len(f.st.keys)
	_, err := NewKeyring(t.Context(), KeyringConfig{Store: f.st, Sealer: wrong, Now: f.clock.Now})
	if !errors.Is(err, seal.ErrUnknownKEK) || !strings.Contains(err.Error(), other.ID()) || !strings.Contains(err.Error(), sealtest.KEK().ID()) {
		t.Errorf("NewKeyring(wrong KEK) = %v, want ErrUnknownKEK naming %s and %s", err, sealtest.KEK().ID(), other.ID())
	}
	if len(f.st.keys) != n {
		t.Errorf("NewKeyring(wrong KEK) stored %d new keys", len(f.st.keys)-n)
	}
	if _, err := NewKeyring(t.Context(), KeyringConfig{Store: f.st, Now: f.clock.Now}); err == nil {
		t.Errorf("NewKeyring(no sealer) = nil error")
	}
}

// TestKeyringSealsClearTextKeys: a store written before sealing holds
// plaintext private JWKs and no public JWK; the keyring seals them in
// place and keeps signing and verifying with the same key.
func TestKeyringSealsClearTextKeys(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	clock := newClock()
	st := newMemStore()
	priv, kid, err := generateSigningKey()
	if err != nil {
		t.Fatal(err)
	}
	clearJWK, _ := json.Marshal(priv)
	st.keys = append(st.keys, SigningKey{KID: kid, Algorithm: "EdDSA", SealedKey: clearJWK, CreatedAt: clock.Now()})
	kr, err := NewKeyring(ctx, KeyringConfig{Store: st, Sealer: sealtest.Keyring(), Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	if kr.CurrentKeyID() != kid {
		t.Errorf("CurrentKeyID() = %s, want the migrated key %s", kr.CurrentKeyID(), kid)
	}
	if !seal.IsSealed(st.keys[0].SealedKey) || len(st.keys[0].PublicJWK) == 0 {
		t.Errorf("clear-text key not sealed in place: %q", st.keys[0].SealedKey)
	}
	got := currentPrivateKey(t, st, kid)
	if !bytes.Equal(got.Key.(ed25519.PrivateKey), priv.Key.(ed25519.PrivateKey)) {
		t.Errorf("sealed key is not the original key")
	}

	// KEK rotation: the new primary with the old KEK kept reseals every
	// key; then the old KEK is no longer needed.
	newKEK, _ := seal.GenerateKEK()
	during, _ := seal.NewKeyring(newKEK, sealtest.KEK())
	if _, err := NewKeyring(ctx, KeyringConfig{Store: st, Sealer: during, Now: clock.Now}); err != nil {
		t.Fatal(err)
	}
	b, err := seal.Parse(st.keys[0].SealedKey)
	if err != nil || b.KEKID != newKEK.ID() {
		t.Fatalf("after rotation the key is sealed by %v (%v), want %s", b, err, newKEK.ID())
	}
	after, _ := seal.NewKeyring(newKEK)
	kr2, err := NewKeyring(ctx, KeyringConfig{Store: st, Sealer: after, Now: clock.Now})
	if err != nil || kr2.CurrentKeyID() != kid {
		t.Errorf("NewKeyring(new KEK only) = %v, %v, want the same key %s", kr2, err, kid)
	}

	// A stored public JWK that is not the sealed key's is tampering.
	other, _, _ := generateSigningKey()
	otherPub, _ := json.Marshal(publicJWK(other, jose.EdDSA))
	st.keys[0].PublicJWK = otherPub
	if _, err := NewKeyring(ctx, KeyringConfig{Store: st, Sealer: after, Now: clock.Now}); err == nil {
		t.Errorf("NewKeyring(public JWK replaced) = nil error")
	}
}
