package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/token"
)

// What the endpoints an agent calls with its task token (AuthZEN, the
// outcomes and reveal endpoints) share: reading the credential and the
// strict JSON body.

// credentialRefuser records a credential that cannot even be read
// (access.Pipeline.RefuseCredential).
type credentialRefuser interface {
	RefuseCredential(ctx context.Context, act access.Action, cause error) error
}

// taskCredential reads r's task token and DPoP proof as the credential
// for an endpoint at publicURL (the DPoP htu's base). A credential that
// cannot be read is an attempt, recorded like any refused one (no
// credential at all is not); the error then wraps
// access.ErrUnauthenticated, telling the caller what to send (accepted
// names it, e.g. "<task token>").
func taskCredential(r *http.Request, refuser credentialRefuser, act access.Action, publicURL, accepted string) (token.Presentation, access.Credential, error) {
	pres, err := token.FromHeader(r.Header)
	if err != nil {
		if !errors.Is(err, token.ErrNoCredential) {
			if rerr := refuser.RefuseCredential(r.Context(), act, err); errors.Is(rerr, audit.ErrUnavailable) {
				return pres, access.Credential{}, rerr
			}
		}
		return pres, access.Credential{}, fmt.Errorf("%w: send Authorization: Bearer %s, or DPoP <task token> with its DPoP proof: %w", access.ErrUnauthenticated, accepted, err)
	}
	return pres, access.Credential{
		Token: pres.Token, DPoPProof: pres.DPoPProof, Scheme: pres.Scheme, Method: r.Method, URL: publicURL + r.URL.Path,
	}, nil
}

// decodeBody strictly decodes r's JSON body, of at most limit bytes, into
// dst (DecodeAuthZEN's rules).
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, dst any) error {
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return fmt.Errorf("%w: Content-Type must be application/json", errBadRequest)
	}
	body, err := readLimited(w, r, limit)
	if err != nil {
		return err
	}
	return DecodeAuthZEN(body, dst)
}
