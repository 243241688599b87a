package mcpproxy

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

// DPoPProof makes an RFC 9449 proof with key (Ed25519 or ECDSA P-256) for
// an HTTP request, bound to accessToken (the ath claim) when it is not
// empty. The public key is embedded in the proof's header.
func DPoPProof(key crypto.Signer, method, url, accessToken string) (string, error) {
	var alg jose.SignatureAlgorithm
	switch k := key.(type) {
	case ed25519.PrivateKey:
		alg = jose.EdDSA
	case *ecdsa.PrivateKey:
		if k.Curve.Params().Name != "P-256" {
			return "", errors.New("mcpproxy: DPoP keys must be Ed25519 or ECDSA P-256")
		}
		alg = jose.ES256
	default:
		return "", errors.New("mcpproxy: DPoP keys must be Ed25519 or ECDSA P-256")
	}
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

// credentialTransport sends the task token on every request: as a Bearer
// token, or with a fresh DPoP proof per request when it has a key.
type credentialTransport struct {
	base    http.RoundTripper
	token   string
	dpopKey crypto.Signer
}

func (t *credentialTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	if t.dpopKey == nil {
		r.Header.Set("Authorization", "Bearer "+t.token)
		return t.base.RoundTrip(r)
	}
	u := *r.URL
	u.RawQuery, u.Fragment = "", ""
	proof, err := DPoPProof(t.dpopKey, r.Method, u.String(), t.token)
	if err != nil {
		return nil, err
	}
	r.Header.Set("Authorization", "DPoP "+t.token)
	r.Header.Set("DPoP", proof)
	return t.base.RoundTrip(r)
}
