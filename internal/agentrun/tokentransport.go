package agentrun

import (
	"crypto"
	"net/http"

	"github.com/mandatehq/mandate/internal/gateway/mcpbridge"
	"github.com/mandatehq/mandate/internal/hook"
)

// TokenFileTransport is an http.RoundTripper that presents the task token
// it reads from Path on every request — so a token mandate run renews is
// used from the next request on — as a Bearer token, or with a fresh DPoP
// proof by DPoPKey (mcpbridge.Transport). It sets the Authorization (and
// DPoP) headers whatever the request carries. A file that cannot be read
// fails the request.
type TokenFileTransport struct {
	Path    string
	DPoPKey crypto.Signer
	// Base carries the requests (http.DefaultTransport if nil).
	Base http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (t *TokenFileTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	tok, err := hook.LoadToken(func(k string) string {
		if k == "MANDATE_TASK_TOKEN_FILE" {
			return t.Path
		}
		return ""
	})
	if err != nil {
		if r.Body != nil {
			r.Body.Close()
		}
		return nil, err
	}
	return (&mcpbridge.Transport{Base: t.Base, Token: tok, DPoPKey: t.DPoPKey}).RoundTrip(r)
}
