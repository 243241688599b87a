package access

import (
	"context"
	"errors"
	"fmt"

	"github.com/mandatehq/mandate/internal/token"
)

// ErrAuthUnavailable: a credential could not be checked because something
// the check needs (the DPoP replay store, a key) is unavailable; the
// caller may retry. It is not a refusal of the credential.
var ErrAuthUnavailable = errors.New("authentication temporarily unavailable")

// authFailure classifies a verifier error: a refused credential is
// ErrUnauthenticated (wrapping the *token.Error, whose code and challenge
// scheme enforcement points answer with), a verifier that could not
// check it is ErrAuthUnavailable.
func authFailure(err error) error {
	if te := token.AsError(err); te.Status >= 500 {
		return fmt.Errorf("%w: %w", ErrAuthUnavailable, err)
	}
	return fmt.Errorf("%w: %w", ErrUnauthenticated, err)
}

// RefuseCredential records, as a denied attempt at act, a credential an
// enforcement point could not even read (cause: token.FromHeader's error
// for a malformed Authorization header), and returns it as
// ErrUnauthenticated. A request with no credential at all is not an
// attempt and is not recorded (clients discover the authorization server
// that way, RFC 9728 §5).
func (p *Pipeline) RefuseCredential(ctx context.Context, act Action, cause error) error {
	_, err := p.refuse(ctx, "", "", act, fmt.Errorf("%w: %w", ErrUnauthenticated, cause))
	return err
}
