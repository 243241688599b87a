package token

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/mandatehq/mandate/internal/seal/sealtest"
)

const (
	testIssuer   = "https://mandate.test"
	testTokenURL = "https://mandate.test/oauth/token"
	testTD       = "example.org"
)

// signJWT signs claims with key under alg and extra headers, failing the
// test on error.
func signJWT(t testing.TB, alg jose.SignatureAlgorithm, key any, headers map[jose.HeaderKey]any, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	for k, v := range headers {
		opts.WithHeader(k, v)
	}
	if headers[jose.HeaderKey("jwk")] != nil {
		delete(opts.ExtraHeaders, "jwk")
		opts.EmbedJWK = true
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatalf("NewSigner: %v", err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatalf("sign: %v", err)
	}
	return raw
}

// unsignedJWT builds an alg "none" token.
func unsignedJWT(t testing.TB, header, claims any) string {
	t.Helper()
	h, _ := json.Marshal(header)
	c, _ := json.Marshal(claims)
	return base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c) + "."
}

// currentPrivateKey returns the keyring's current private signing key.
func currentPrivateKey(t testing.TB, st *memStore, kid string) jose.JSONWebKey {
	t.Helper()
	keys, _ := st.SigningKeys(context.Background(), time.Time{})
	for _, k := range keys {
		if k.KID == kid {
			plain, err := sealtest.Keyring().Open(SealPurpose, kid, k.SealedKey)
			if err != nil {
				t.Fatal(err)
			}
			var jwk jose.JSONWebKey
			if err := jwk.UnmarshalJSON(plain); err != nil {
				t.Fatal(err)
			}
			return jwk
		}
	}
	t.Fatalf("no key %q", kid)
	return jose.JSONWebKey{}
}

// dpopKey is a client's DPoP or assertion key.
type dpopKey struct {
	alg  jose.SignatureAlgorithm
	priv any
	jwk  jose.JSONWebKey // public, with kid
}

func newEdKey(t testing.TB, kid string) *dpopKey {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{alg: jose.EdDSA, priv: priv, jwk: jose.JSONWebKey{Key: pub, KeyID: kid, Algorithm: string(jose.EdDSA), Use: "sig"}}
}

func newECKey(t testing.TB, kid string) *dpopKey {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &dpopKey{alg: jose.ES256, priv: priv, jwk: jose.JSONWebKey{Key: &priv.PublicKey, KeyID: kid, Algorithm: string(jose.ES256), Use: "sig"}}
}

func (k *dpopKey) thumbprint(t testing.TB) string {
	t.Helper()
	tp, err := k.jwk.Thumbprint(cryptoSHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// proofOpts tweak a DPoP proof.
type proofOpts struct {
	typ    string
	iat    time.Time
	jti    string
	noJWK  bool
	claims map[string]any // overrides
}

// proof makes a DPoP proof for method and url (and accessToken's ath if
// non-empty) at time now.
func (k *dpopKey) proof(t testing.TB, now time.Time, method, url, accessToken string, o proofOpts) string {
	t.Helper()
	typ := o.typ
	if typ == "" {
		typ = DPoPProofType
	}
	iat := o.iat
	if iat.IsZero() {
		iat = now
	}
	jti := o.jti
	if jti == "" {
		b := make([]byte, 12)
		_, _ = rand.Read(b)
		jti = base64.RawURLEncoding.EncodeToString(b)
	}
	claims := map[string]any{"htm": method, "htu": url, "iat": iat.Unix(), "jti": jti}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	for kk, v := range o.claims {
		if v == nil {
			delete(claims, kk)
		} else {
			claims[kk] = v
		}
	}
	opts := (&jose.SignerOptions{EmbedJWK: !o.noJWK}).WithType(jose.ContentType(typ))
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: k.priv}, opts)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// oauthCode returns err's OAuth code, or "" for nil, or "!" + err for a
// non-OAuth error.
func oauthCode(err error) string {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return "!" + err.Error()
}

var cryptoSHA256 = crypto.SHA256
