package mcpproxy

import (
	"context"
	"fmt"

	"github.com/mandatehq/mandate/internal/token"
)

// TokenAuthenticator is an Authenticator over mandate's token verifier:
// task tokens only, Bearer or DPoP-bound (the proof checked against the
// request's method and URL).
type TokenAuthenticator struct{ Verifier *token.Verifier }

var _ Authenticator = TokenAuthenticator{}

// Authenticate implements Authenticator.
func (a TokenAuthenticator) Authenticate(ctx context.Context, c Credential) (*Principal, error) {
	cl, err := a.Verifier.Verify(ctx, token.VerifyRequest{
		Token: c.Token, DPoPProof: c.DPoPProof, Method: c.Method, URL: c.URL, Use: token.UseTask,
	})
	if err != nil {
		if te := token.AsError(err); te != nil && te.Status >= 500 {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	p := &Principal{
		Task: cl.TaskID, Agent: cl.ClientID, Chain: cl.Act.Chain(), OnBehalfOf: cl.Subject,
		Tier: cl.Tier, Scope: cl.Scope, TokenID: cl.ID,
	}
	if cl.Expiry != nil {
		p.Expiry = cl.Expiry.Time()
	}
	return p, nil
}
