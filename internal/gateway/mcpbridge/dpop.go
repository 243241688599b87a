package mcpbridge

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// errDPoPKey is returned for a key DPoPProof cannot sign with: the
// server's verifier accepts only these two algorithms.
var errDPoPKey = errors.New("mcpbridge: DPoP keys must be Ed25519 or ECDSA P-256")

// DPoPProof makes an RFC 9449 proof with key (Ed25519 or ECDSA P-256) for
// an HTTP request (method, and url without query or fragment), bound to
// accessToken (the ath claim) when it is not empty. The public key is
// embedded in the proof's header.
func DPoPProof(key crypto.Signer, method, url, accessToken string) (string, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	case *ecdsa.PrivateKey:
		if k.Curve.Params().Name != "P-256" {
			return "", errDPoPKey
		}
		alg = jose.ES256
	default:
		return "", errDPoPKey
	}
	// typ dpop+jwt is RFC 9449 §4.2's (token.DPoPProofType on the server).
	sig, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key},
		(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
	if err != nil {
		return "", err
	}
	claims := map[string]any{"jti": rand.Text(), "htm": method, "htu": url, "iat": time.Now().Unix()}
	if accessToken != "" {
		h := sha256.Sum256([]byte(accessToken))
		claims["ath"] = base64.RawURLEncoding.EncodeToString(h[:])
	}
	return jwt.Signed(sig).Claims(claims).Serialize()
}

// Transport is an http.RoundTripper that presents a task token on every
// request: as a Bearer token, or, when DPoPKey is set, as a DPoP token
// with a fresh proof by DPoPKey for that request. It does not modify the
// request it is given.
type Transport struct {
	// Base carries the requests (http.DefaultTransport if nil).
	Base    http.RoundTripper
	Token   string
	DPoPKey crypto.Signer
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(r *http.Request) (*http.Response, error) {
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	r = r.Clone(r.Context())
	if t.DPoPKey == nil {
		r.Header.Set("Authorization", "Bearer "+t.Token)
		return base.RoundTrip(r)
	}
	u := *r.URL
	u.RawQuery, u.Fragment = "", ""
	proof, err := DPoPProof(t.DPoPKey, r.Method, u.String(), t.Token)
	if err != nil {
		// A RoundTripper closes the body even when it fails.
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	r.Header.Set("Authorization", "DPoP "+t.Token)
	r.Header.Set("DPoP", proof)
	return base.RoundTrip(r)
}
