package egress

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/token"
)

// Realm is the Basic realm of the proxy's challenge.
const challenge = `Basic realm="mandate"`

// maxProxyAuthorization bounds the Proxy-Authorization header: a task
// token in Basic (base64 of "user:token") with room for a user name.
const maxProxyAuthorization = token.MaxAuthorizationLen*4/3 + 512

// errNoCredential: the request has no Proxy-Authorization header.
var errNoCredential = errors.New("no Proxy-Authorization header: a task token is required")

// proxyCredential reads the task token of a proxy request: exactly one
// Proxy-Authorization header, "Basic base64(user:token)" (any user name,
// the token as the password: what clients send for
// http://user:token@proxy) or "Bearer token". The token itself is then
// read by token.FromHeader, the one parser of presented tokens, as a
// Bearer token: DPoP cannot be proven through a proxy, and a DPoP-bound
// token is refused by the verifier.
func proxyCredential(h http.Header) (token.Presentation, error) {
	vs := h.Values("Proxy-Authorization")
	switch {
	case len(vs) == 0:
		return token.Presentation{}, errNoCredential
	case len(vs) > 1:
		return token.Presentation{}, errors.New("more than one Proxy-Authorization header")
	case len(vs[0]) > maxProxyAuthorization:
		return token.Presentation{}, errors.New("Proxy-Authorization header too long")
	}
	scheme, rest, _ := strings.Cut(vs[0], " ")
	var tok string
	switch {
	case strings.EqualFold(scheme, "Basic"):
		raw, err := base64.StdEncoding.Strict().DecodeString(rest)
		if err != nil {
			return token.Presentation{}, errors.New("Proxy-Authorization Basic: not base64")
		}
		_, pass, ok := strings.Cut(string(raw), ":")
		if !ok || pass == "" {
			return token.Presentation{}, errors.New("Proxy-Authorization Basic: no password (the task token is the password)")
		}
		tok = pass
	case strings.EqualFold(scheme, "Bearer"):
		tok = rest
	default:
		return token.Presentation{}, fmt.Errorf("Proxy-Authorization: unsupported scheme %q (want Basic or Bearer)", truncate(scheme, 16))
	}
	return token.FromHeader(http.Header{"Authorization": {"Bearer " + tok}})
}

// authenticate authenticates the task of r for act, answering 407 (the
// pipeline has recorded the refusal) or 503 itself when it cannot.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request, act access.Action) (access.Subject, bool) {
	pres, err := connCredential(r)
	if err != nil {
		// Recorded, a missing credential too: a proxy client sends its
		// credential up front, and every attempt to get out is evidence.
		if rerr := g.cfg.Pipeline.RefuseCredential(r.Context(), act, err); errors.Is(rerr, audit.ErrUnavailable) {
			unavailable(w, g.log, rerr)
			return access.Subject{}, false
		}
		proxyAuthRequired(w, "a task token is required: Proxy-Authorization: Basic with the token as the password (HTTP_PROXY=http://agent:$TOKEN@host:port), or Bearer")
		return access.Subject{}, false
	}
	subj, err := g.cfg.Pipeline.Authenticate(r.Context(), access.Credential{Token: pres.Token, Scheme: pres.Scheme}, act)
	switch {
	case err == nil:
		return subj, true
	case errors.Is(err, access.ErrUnauthenticated) && !errors.Is(err, audit.ErrUnavailable) && !errors.Is(err, fault.ErrUnavailable):
		// Why is in the ledger, not told to the caller.
		proxyAuthRequired(w, "the task token was not accepted")
	default:
		unavailable(w, g.log, err)
	}
	return access.Subject{}, false
}

// connAuth remembers the last Proxy-Authorization header read on a
// client connection and what proxyCredential made of it: a kept-alive
// client sends the same header with every request, and reading it
// (base64, then token.FromHeader) is a pure function of its bytes. Only
// the reading is remembered — the token is verified (signature cache,
// expiry, revocation) by the pipeline on every request. A connection's
// requests are served one at a time, so it needs no lock.
type connAuth struct {
	header string
	pres   token.Presentation
}

type connAuthKey struct{}

// withConnAuth gives a client connection's context its connAuth
// (http.Server.ConnContext).
func withConnAuth(ctx context.Context, _ net.Conn) context.Context {
	return context.WithValue(ctx, connAuthKey{}, &connAuth{})
}

// connCredential is proxyCredential(r.Header), read once per header
// value on a connection.
func connCredential(r *http.Request) (token.Presentation, error) {
	ca, _ := r.Context().Value(connAuthKey{}).(*connAuth)
	vs := r.Header["Proxy-Authorization"]
	if ca != nil && len(vs) == 1 && ca.header != "" && vs[0] == ca.header {
		return ca.pres, nil
	}
	pres, err := proxyCredential(r.Header)
	if ca != nil {
		ca.header, ca.pres = "", token.Presentation{}
		if err == nil {
			ca.header, ca.pres = vs[0], pres
		}
	}
	return pres, err
}

// proxyAuthRequired answers 407 with the proxy's Basic challenge.
func proxyAuthRequired(w http.ResponseWriter, msg string) {
	w.Header().Set("Proxy-Authenticate", challenge)
	problem(w, http.StatusProxyAuthRequired, "proxy authentication required", msg)
}

// unavailable answers 503: the decision could not be made or recorded
// (fail closed); the client may retry.
func unavailable(w http.ResponseWriter, log *slog.Logger, err error) {
	log.Error("egress request refused: decision unavailable", "err", err)
	w.Header().Set("Retry-After", fault.RetryAfter)
	problem(w, http.StatusServiceUnavailable, "unavailable", "the decision could not be made or recorded; retry later")
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
