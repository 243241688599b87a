package token

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/audit"
)

// Scheme is the HTTP authentication scheme an access token is presented
// with.
type Scheme string

// Schemes of the Authorization header (RFC 6750 §2.1, RFC 9449 §7.1). The
// zero Scheme is a token that did not come from an Authorization header
// (a token exchange's subject_token).
const (
	SchemeBearer Scheme = "Bearer"
	SchemeDPoP   Scheme = "DPoP"
)

// Presentation is an access token as an HTTP request presents it.
type Presentation struct {
	Scheme Scheme
	Token  string
	// DPoPProof is the request's DPoP header, read only for the DPoP
	// scheme.
	DPoPProof string
}

// ErrNoCredential: the request has no Authorization header.
var ErrNoCredential = errors.New("no credential")

// MaxAuthorizationLen bounds the Authorization header FromHeader reads.
const MaxAuthorizationLen = MaxTokenSize + 16

// FromHeader reads the access token of an HTTP request: exactly one
// Authorization header "Bearer <token>" or "DPoP <token>" (the scheme is
// case-insensitive, RFC 9110 §11.1; the token is token68, RFC 9110
// §11.2), and for DPoP exactly one DPoP header (RFC 9449 §4.3). It is
// the one parser of presented tokens: every enforcement point uses it, and
// Verifier.Verify then holds a DPoP-bound token to the DPoP scheme.
//
// Without an Authorization header it returns ErrNoCredential; anything
// else it cannot read is an *Error invalid_request (safe to show) and
// nothing is cleaned up or guessed; the Presentation returned with an
// error carries at most the scheme, for the challenge.
func FromHeader(h http.Header) (Presentation, error) {
	vs := h.Values("Authorization")
	switch {
	case len(vs) == 0:
		return Presentation{}, ErrNoCredential
	case len(vs) > 1:
		return Presentation{}, errInvalidRequest("more than one Authorization header")
	case len(vs[0]) > MaxAuthorizationLen:
		return Presentation{}, errInvalidRequest("Authorization header too long")
	}
	scheme, tok, ok := strings.Cut(vs[0], " ")
	if !ok || !isToken68(tok) {
		return Presentation{}, errInvalidRequest("the Authorization header must be \"Bearer <token>\" or \"DPoP <token>\"")
	}
	var p Presentation
	switch {
	case strings.EqualFold(scheme, string(SchemeBearer)):
		p = Presentation{Scheme: SchemeBearer, Token: tok}
	case strings.EqualFold(scheme, string(SchemeDPoP)):
		proofs := h.Values("DPoP")
		if len(proofs) != 1 || proofs[0] == "" {
			e := errInvalidRequest("the DPoP scheme needs exactly one DPoP header")
			e.dpop = true
			return Presentation{Scheme: SchemeDPoP}, e
		}
		p = Presentation{Scheme: SchemeDPoP, Token: tok, DPoPProof: proofs[0]}
	default:
		return Presentation{}, errInvalidRequest("unsupported authorization scheme %q", audit.Clip(scheme, 20))
	}
	return p, nil
}

// isToken68 reports whether s is an RFC 9110 token68: 1*( ALPHA / DIGIT /
// "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isToken68(s string) bool {
	i := 0
	for i < len(s) {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0 {
			i++
			continue
		}
		break
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}

// DPoPChallenge reports whether a refusal (an error of Verify or
// FromHeader, possibly wrapped) must be answered with the error on the
// DPoP challenge rather than the Bearer one (RFC 9449 §7.1): the token
// came with the DPoP scheme, or it is DPoP-bound, or its proof failed.
func DPoPChallenge(p Presentation, err error) bool {
	if p.Scheme == SchemeDPoP {
		return true
	}
	var e *Error
	return errors.As(err, &e) && (e.dpop || e.Code == CodeInvalidDPoPProof)
}

// Challenges returns the WWW-Authenticate challenges for a request to a
// protected resource that accepts Bearer and DPoP tokens: one per scheme
// (RFC 9449 §7.2), params (already formatted auth-params, e.g.
// `resource_metadata="…", scope="…"` or `realm="mandate"`, may be empty) on each,
// and, when the request presented a credential that was refused (err not
// nil and not ErrNoCredential, RFC 6750 §3.1), error="invalid_token" on
// the challenge of the scheme the refusal concerns (DPoPChallenge). No
// description is included: the cause stays in the ledger and the logs.
func Challenges(p Presentation, err error, params string) []string {
	bearer, dpop := string(SchemeBearer), string(SchemeDPoP)
	add := func(c *string, kv string) {
		if kv == "" {
			return
		}
		if *c == string(SchemeBearer) || *c == string(SchemeDPoP) {
			*c += " " + kv
		} else {
			*c += ", " + kv
		}
	}
	add(&bearer, params)
	add(&dpop, params)
	if err != nil && !errors.Is(err, ErrNoCredential) {
		code := CodeInvalidToken
		if DPoPChallenge(p, err) {
			var e *Error
			if errors.As(err, &e) && e.Code == CodeInvalidDPoPProof {
				code = CodeInvalidDPoPProof
			}
			add(&dpop, fmt.Sprintf("error=%q", code))
		} else {
			add(&bearer, fmt.Sprintf("error=%q", code))
		}
	}
	add(&dpop, `algs="EdDSA ES256"`)
	return []string{bearer, dpop}
}
