package egress

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/resource"
	"github.com/mandatehq/mandate/internal/secrets"
	"github.com/mandatehq/mandate/internal/task"
)

// Secrets leases the secrets a request's placeholders name: the secrets
// broker (secrets.Broker.LeaseForHost), whose leases are secret.use
// decisions of the one pipeline.
type Secrets interface {
	// LeaseForHost leases to the task every secret of names (each must
	// deliver to host, else the error wraps secrets.ErrNotDeliverable)
	// and returns one Delivery per secret.
	LeaseForHost(ctx context.Context, taskID task.ID, host string, names []secrets.Name) ([]secrets.Delivery, error)
	// Changes is a counter that moves after every change to a secret and
	// the end of every lease: the proxy reuses a delivery (leaseCache)
	// only while it has not moved.
	Changes() uint64
}

// Digester is the ledger's keyed digest of a value (audit.Redactor).
type Digester interface {
	HMAC(b []byte) string
}

// Event types of secret injection. A value is never in an event: its
// keyed HMAC is (details.value_hmac).
const (
	// TypeSecretInjected: a leased secret replaced its placeholder in a
	// request to its bound host (one event per secret and request, before
	// the request is sent).
	TypeSecretInjected audit.Type = "secret.injected"
	// TypePlaceholderRefused: a request carried a placeholder the proxy
	// will not replace (the secret is not delivered to that host, its
	// lease was refused, the placeholder is malformed); the request was
	// not sent.
	TypePlaceholderRefused audit.Type = "secret.placeholder_refused"
)

// Limits of injection.
const (
	placeholderPrefix = "[secret:"
	// minInjected is the shortest value injected: a shorter one could
	// not be told apart from ordinary text when it is scrubbed.
	minInjected = 8
	// maxInjected is the longest value injected into a header.
	maxInjected = 8 << 10
)

// placeholders returns the secrets the placeholders "[secret:NAME]" in
// h's values name, sorted and unique. A "[secret:" in any case that does
// not start a well-formed placeholder is an error: refused, not passed
// on as text the agent might believe replaced.
func placeholders(h http.Header) ([]secrets.Name, error) {
	var names []secrets.Name
	for k, vs := range h {
		if strings.HasPrefix(k, "Proxy-") {
			continue // never forwarded
		}
		for _, v := range vs {
			ns, err := parsePlaceholders(v)
			if err != nil {
				return nil, fmt.Errorf("header %s: %w", k, err)
			}
			names = append(names, ns...)
		}
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}

// parsePlaceholders returns the secret names of the placeholders in v.
func parsePlaceholders(v string) ([]secrets.Name, error) {
	var names []secrets.Name
	lower := asciiLower(v)
	for i := 0; ; {
		j := strings.Index(lower[i:], placeholderPrefix)
		if j < 0 {
			return names, nil
		}
		at := i + j
		if v[at:at+len(placeholderPrefix)] != placeholderPrefix {
			return nil, fmt.Errorf("%s is not a placeholder: write [secret:NAME] in lower case", resource.Quote(v[at:at+len(placeholderPrefix)]))
		}
		rest := v[at+len(placeholderPrefix):]
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return nil, errors.New("an unclosed [secret: placeholder")
		}
		n, err := secrets.ParseName(rest[:end])
		if err != nil {
			return nil, fmt.Errorf("placeholder [secret:%s]: %w", truncate(rest[:end], secrets.MaxNameLen+1), err)
		}
		names = append(names, n)
		i = at + len(placeholderPrefix) + end + 1
	}
}

// asciiLower lowers A-Z only, keeping every byte's position.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// inject replaces the placeholders in r's headers with the values of
// their secrets, leased to the task for t's host, and records each
// injection; it answers and reports false when the request must not be
// sent (the outcome is then recorded).
func (g *Gateway) inject(w http.ResponseWriter, r *http.Request, subj access.Subject, act access.Action, t *target) bool {
	names, err := placeholders(r.Header)
	if err == nil && len(names) > 0 && (r.Header.Get("Range") != "" || r.Header.Get("If-Range") != "") {
		// Ranges could cut an echoed value into pieces no scrubber sees.
		err = errors.New("a request that carries a secret placeholder may not ask for a byte range")
	}
	if err != nil {
		g.refusePlaceholders(w, r, subj, act, names, http.StatusBadRequest, err.Error())
		return false
	}
	if len(names) == 0 {
		return true
	}
	if g.cfg.Secrets == nil {
		g.refusePlaceholders(w, r, subj, act, names, http.StatusForbidden, "the egress proxy delivers no secrets (no broker configured)")
		return false
	}
	agents := agentsOf(subj)
	active := func() bool { return g.cfg.Pipeline.Active(subj.Task, agents) }
	ds, err := g.leases.get(r.Context(), g.cfg.Secrets, active, subj.Task, t.resource, names, time.Now())
	switch {
	case err == nil:
	case errors.Is(err, audit.ErrUnavailable), errors.Is(err, fault.ErrUnavailable):
		unavailable(w, g.log, err)
		return false
	default:
		// Not delivered there, denied, held for approval, unusable: the
		// value goes nowhere.
		g.refusePlaceholders(w, r, subj, act, names, http.StatusForbidden, err.Error())
		return false
	}
	values := make(map[secrets.Name]string, len(ds))
	for _, d := range ds {
		v := string(d.Value.Bytes())
		if reason := injectable(v); reason != "" {
			g.refusePlaceholders(w, r, subj, act, []secrets.Name{d.Lease.Secret}, http.StatusForbidden,
				fmt.Sprintf("secret %s cannot be injected: %s", d.Lease.Secret, reason))
			return false
		}
		if !g.scrubs.add(subj.Task, agents, string(d.Lease.Secret), v) {
			g.refusePlaceholders(w, r, subj, act, []secrets.Name{d.Lease.Secret}, http.StatusForbidden,
				fmt.Sprintf("the task has had %d secret values injected; no more", maxScrubbedPerTask))
			return false
		}
		ev := g.event(subj, act, TypeSecretInjected)
		ev.Decision, ev.Resource = audit.DecisionAllow, "secret:"+string(d.Lease.Secret)
		ev.Details["host"], ev.Details["lease"] = t.resource, string(d.Lease.ID)
		ev.Details["value_hmac"] = g.cfg.Digester.HMAC(d.Value.Bytes())
		if err := g.cfg.Audit.Record(context.WithoutCancel(r.Context()), ev); err != nil {
			unavailable(w, g.log, err) // an injection the ledger does not know of does not happen
			return false
		}
		values[d.Lease.Secret] = v
	}
	for _, n := range names {
		if _, ok := values[n]; !ok {
			g.refusePlaceholders(w, r, subj, act, []secrets.Name{n}, http.StatusForbidden, fmt.Sprintf("secret %s was not delivered", n))
			return false
		}
	}
	for k, vs := range r.Header {
		for i, v := range vs {
			if strings.Contains(v, placeholderPrefix) {
				for n, val := range values {
					v = strings.ReplaceAll(v, placeholderPrefix+string(n)+"]", val)
				}
				r.Header[k][i] = v
			}
		}
	}
	return true
}

// injectable says why value cannot go into a header, or "".
func injectable(v string) string {
	switch {
	case len(v) < minInjected:
		return fmt.Sprintf("shorter than %d bytes (it could not be scrubbed from responses)", minInjected)
	case len(v) > maxInjected:
		return fmt.Sprintf("longer than %d bytes", maxInjected)
	case strings.Contains(asciiLower(v), placeholderPrefix):
		return "it holds a placeholder"
	case strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }):
		return "a control character cannot be sent in a header"
	}
	return ""
}

// refusePlaceholders records a TypePlaceholderRefused event per secret
// named and the request's outcome (refused), and answers status.
func (g *Gateway) refusePlaceholders(w http.ResponseWriter, r *http.Request, subj access.Subject, act access.Action, names []secrets.Name, status int, reason string) {
	ctx := context.WithoutCancel(r.Context())
	if len(names) == 0 {
		names = []secrets.Name{""}
	}
	for _, n := range names {
		ev := g.event(subj, act, TypePlaceholderRefused)
		ev.Decision, ev.Reason, ev.Details["host"] = audit.DecisionDeny, reason, act.Resource
		if n != "" {
			ev.Resource = "secret:" + string(n)
		}
		if err := g.cfg.Audit.Record(ctx, ev); err != nil {
			g.log.Error("audit record of a refused placeholder failed", "err", err)
		}
	}
	g.recordOutcome(ctx, subj, act, audit.Outcome{Status: outcomeRefused, Error: reason}, nil)
	problem(w, status, "secret placeholder refused", reason)
}
