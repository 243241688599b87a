// Package secrets is mandate's secrets broker: secrets kept encrypted at
// rest, leased just in time to one task, revoked with it.
//
// A Secret is either a static value (an API key, a token), sealed with the
// envelope encryption of package seal under the key-encryption key, or a
// dynamic backend (PostgreSQL) whose sealed value is the connection the
// backend administers with, and which makes a fresh credential per lease.
// Each secret names where its value may be delivered (Target): an MCP
// upstream's environment variable or header, or the hosts whose requests
// the egress proxy may add it to.
//
// Every use of a secret is first a secret.use decision of the one decision
// pipeline (Decider); only an allow issues a Lease, bound to the task, that
// ends no later than the task. Ending, revoking or expiring the task
// revokes its leases (Broker.RevokeTaskLeases, called by the task
// lifecycle, and the sweeper, Broker.Run); a revocation a dynamic backend
// could not perform is retried with backoff and shown (status failed,
// metrics, ledger) until it succeeds: it is never forgotten.
//
// Values never appear in a String, a JSON encoding, an error or the
// ledger: the ledger holds the keyed HMAC of a value (audit.Redactor), and
// a value handed out is a Value, whose formatting and JSON are redacted.
package secrets

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/mandatehq/mandate/internal/resource"
)

// Limits.
const (
	// MaxValueSize is the largest secret value accepted, in bytes.
	MaxValueSize = 64 << 10
	// MaxNameLen is the longest secret name.
	MaxNameLen = 64
	// MaxTargets bounds a secret's delivery targets.
	MaxTargets = 32
	// MaxDescriptionLen bounds a secret's description.
	MaxDescriptionLen = 1024
	// MaxLabels bounds a secret's labels; each key and value is at most
	// MaxLabelLen bytes.
	MaxLabels   = 32
	MaxLabelLen = 256
)

// Sentinel errors. Every error the package (and a Store) returns for
// these conditions wraps one of them; their messages never hold a value.
var (
	// ErrNotFound: no secret of that name.
	ErrNotFound = errors.New("secret not found")
	// ErrLeaseNotFound: no lease of that id.
	ErrLeaseNotFound = errors.New("lease not found")
	// ErrExists: a secret of that name exists already.
	ErrExists = errors.New("secret already exists")
	// ErrInvalid: a name, target, definition or value is not acceptable;
	// the message says why.
	ErrInvalid = errors.New("invalid secret")
	// ErrChanged: the stored secret or lease changed since it was read
	// (a concurrent change); read it again.
	ErrChanged = errors.New("secret or lease changed concurrently")
	// ErrDenied: the secret.use decision denied the lease.
	ErrDenied = errors.New("secret use denied")
	// ErrApprovalRequired: the secret.use decision needs step-up approval
	// first; no lease was issued.
	ErrApprovalRequired = errors.New("secret use needs approval")
	// ErrUnusable: the secret's stored value does not open (altered or
	// corrupted); the secret cannot be leased until it is put again.
	ErrUnusable = errors.New("secret value is unusable")
	// ErrInUse: the secret has leases that could not be revoked yet.
	ErrInUse = errors.New("secret has leases not yet revoked")
	// ErrNotDeliverable: the secret is not delivered where it was asked
	// for (no such target, or no such secret).
	ErrNotDeliverable = errors.New("secret not delivered there")
	// ErrBackend: a dynamic backend (PostgreSQL) could not issue the
	// credential; the lease was not issued.
	ErrBackend = errors.New("secret backend failed")
)

// Name is a secret's name: 1 to 64 characters of [a-z0-9_-], starting
// with a letter. It is the resource of secret.use decisions and scope
// patterns ("secret.use:github-token").
type Name string

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9_-]*$`)

// ParseName validates s as a Name. Nothing is cleaned: "GitHub" is
// refused, not lowered.
func ParseName(s string) (Name, error) {
	if len(s) == 0 || len(s) > MaxNameLen || !nameRE.MatchString(s) {
		return "", fmt.Errorf("%w: name %s must be 1 to %d characters of a-z, 0-9, '-' and '_', starting with a letter", ErrInvalid, resource.Quote(s), MaxNameLen)
	}
	return Name(s), nil
}

// Kind is how a secret's value comes about.
type Kind string

// Kinds.
const (
	// KindStatic: the sealed value is the secret, delivered as is.
	KindStatic Kind = "static"
	// KindPostgres: the sealed value is a PostgreSQL connection URL of a
	// role that may create roles; each lease is a new login role.
	KindPostgres Kind = "postgres"
)

// ParseKind validates s as a Kind.
func ParseKind(s string) (Kind, error) {
	switch k := Kind(s); k {
	case KindStatic, KindPostgres:
		return k, nil
	}
	return "", fmt.Errorf("%w: kind %s: want static or postgres", ErrInvalid, resource.Quote(s))
}

// Target is one place a secret's value may be delivered: an MCP
// upstream's environment variable (Upstream and Env) or HTTP header
// (Upstream and Header), or requests to a host through the egress proxy
// (Host). Exactly one form is set.
type Target struct {
	Upstream string `json:"upstream,omitempty"`
	Env      string `json:"env,omitempty"`
	Header   string `json:"header,omitempty"`
	Host     string `json:"host,omitempty"`
}

var (
	upstreamRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$`)
	envRE      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
	headerRE   = regexp.MustCompile(`^[A-Za-z0-9!#$%&'*+.^_|~-]{1,128}$`)
)

// forbiddenHeaders are headers a secret may not be delivered in: they
// frame the request itself.
var forbiddenHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true,
	"Upgrade": true, "Te": true, "Trailer": true, "Content-Type": true, "Mcp-Session-Id": true,
}

// Validate checks t.
func (t Target) Validate() error {
	switch {
	case t.Host != "":
		if t.Upstream != "" || t.Env != "" || t.Header != "" {
			return fmt.Errorf("%w: target: host is set together with upstream, env or header", ErrInvalid)
		}
		if err := resource.CheckHost(t.Host); err != nil {
			return fmt.Errorf("%w: target: %v", ErrInvalid, err)
		}
		return nil
	case t.Upstream == "":
		return fmt.Errorf("%w: target: want an upstream (with env or header) or a host", ErrInvalid)
	case !upstreamRE.MatchString(t.Upstream):
		return fmt.Errorf("%w: target: upstream %s is not an upstream name", ErrInvalid, resource.Quote(t.Upstream))
	case (t.Env == "") == (t.Header == ""):
		return fmt.Errorf("%w: target: an upstream target names an env variable or a header, one of them", ErrInvalid)
	case t.Env != "" && !envRE.MatchString(t.Env):
		return fmt.Errorf("%w: target: %s is not an environment variable name", ErrInvalid, resource.Quote(t.Env))
	case t.Header != "" && (!headerRE.MatchString(t.Header) || http.CanonicalHeaderKey(t.Header) != t.Header):
		return fmt.Errorf("%w: target: header %s is not a canonical header name (e.g. %s)", ErrInvalid, resource.Quote(t.Header), resource.Quote(http.CanonicalHeaderKey(t.Header)))
	case t.Header != "" && forbiddenHeaders[t.Header]:
		return fmt.Errorf("%w: target: header %s frames the request and cannot carry a secret", ErrInvalid, t.Header)
	}
	return nil
}

// String is the target's text form (see ParseTarget).
func (t Target) String() string {
	switch {
	case t.Host != "":
		return "egress:" + t.Host
	case t.Env != "":
		return "mcp:" + t.Upstream + ":env:" + t.Env
	default:
		return "mcp:" + t.Upstream + ":header:" + t.Header
	}
}

// ParseTarget parses a target's text form, as `mandate secret put
// --deliver` takes it:
//
//	mcp:UPSTREAM:env:VARIABLE     the stdio upstream's environment
//	mcp:UPSTREAM:header:NAME      the HTTP upstream's request header
//	egress:HOST                   requests to HOST through the egress proxy
//
// The result must validate and print back as s: non-canonical input
// (a lower-case header name, a host with a trailing dot) is refused.
func ParseTarget(s string) (Target, error) {
	var t Target
	switch kind, rest, _ := strings.Cut(s, ":"); kind {
	case "egress":
		t.Host = rest
	case "mcp":
		parts := strings.Split(rest, ":")
		if len(parts) != 3 {
			return Target{}, fmt.Errorf("%w: target %s: want mcp:UPSTREAM:env:VARIABLE or mcp:UPSTREAM:header:NAME", ErrInvalid, resource.Quote(s))
		}
		t.Upstream = parts[0]
		switch parts[1] {
		case "env":
			t.Env = parts[2]
		case "header":
			t.Header = parts[2]
		default:
			return Target{}, fmt.Errorf("%w: target %s: after the upstream comes env or header", ErrInvalid, resource.Quote(s))
		}
	default:
		return Target{}, fmt.Errorf("%w: target %s: want mcp:UPSTREAM:env:VARIABLE, mcp:UPSTREAM:header:NAME or egress:HOST", ErrInvalid, resource.Quote(s))
	}
	if err := t.Validate(); err != nil {
		return Target{}, err
	}
	if t.String() != s {
		return Target{}, fmt.Errorf("%w: target %s is not canonical", ErrInvalid, resource.Quote(s))
	}
	return t, nil
}

// PostgresConfig is a PostgreSQL secret's role template: what each lease's
// login role is granted. Grants are "PRIVILEGES ON OBJECTS" clauses, each
// run as GRANT <clause> TO <role>; MemberOf are existing roles the lease's
// role is made a member of (GRANT "r" TO <role>).
type PostgresConfig struct {
	Grants   []string `json:"grants,omitempty"`
	MemberOf []string `json:"member_of,omitempty"`
}

// Limits of a role template.
const (
	MaxGrants   = 32
	MaxGrantLen = 512
)

var roleNameRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// Validate checks the template: a grant is one clause with an ON and no
// TO, statement separator, comment or quote that could end it early.
func (p *PostgresConfig) Validate() error {
	if len(p.Grants)+len(p.MemberOf) == 0 {
		return fmt.Errorf("%w: postgres: the role template grants nothing (set grants or member_of)", ErrInvalid)
	}
	if len(p.Grants) > MaxGrants || len(p.MemberOf) > MaxGrants {
		return fmt.Errorf("%w: postgres: at most %d grants and %d member_of roles", ErrInvalid, MaxGrants, MaxGrants)
	}
	for _, g := range p.Grants {
		up := " " + strings.ToUpper(g) + " "
		switch {
		case g == "" || len(g) > MaxGrantLen:
			return fmt.Errorf("%w: postgres: a grant is 1 to %d bytes", ErrInvalid, MaxGrantLen)
		case strings.ContainsAny(g, ";\\\x00\"\n\r") || strings.Contains(g, "--") || strings.Contains(g, "/*") || strings.Contains(g, "$"):
			return fmt.Errorf("%w: postgres: grant %s: one clause, without ';', quotes, '$', comments or line breaks", ErrInvalid, resource.Quote(g))
		case !strings.Contains(up, " ON "):
			return fmt.Errorf("%w: postgres: grant %s: want PRIVILEGES ON OBJECTS, e.g. \"SELECT ON ALL TABLES IN SCHEMA public\"", ErrInvalid, resource.Quote(g))
		case strings.Contains(up, " TO ") || strings.Contains(up, " WITH "):
			return fmt.Errorf("%w: postgres: grant %s: mandate adds TO <role>; leave out TO and WITH", ErrInvalid, resource.Quote(g))
		}
	}
	for _, r := range p.MemberOf {
		if !roleNameRE.MatchString(r) {
			return fmt.Errorf("%w: postgres: member_of %s is not a role name of [a-z0-9_]", ErrInvalid, resource.Quote(r))
		}
	}
	return nil
}

// Secret is a secret's definition: everything but its value, which the
// Store keeps sealed beside it.
type Secret struct {
	// ID is fixed at creation and binds the sealed value to this secret
	// (the seal record id): a value copied to another row does not open.
	ID          string            `json:"id"`
	Name        Name              `json:"name"`
	Kind        Kind              `json:"kind"`
	Description string            `json:"description,omitempty"`
	Deliver     []Target          `json:"deliver"`
	Labels      map[string]string `json:"labels,omitempty"`
	// Postgres is the role template of a KindPostgres secret.
	Postgres *PostgresConfig `json:"postgres,omitempty"`
	// Version counts the values the secret has had: 1 at creation, one
	// more at each rotation.
	Version   int64     `json:"version"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// Validate checks the definition.
func (s *Secret) Validate() error {
	if _, err := ParseName(string(s.Name)); err != nil {
		return err
	}
	if _, err := ParseKind(string(s.Kind)); err != nil {
		return err
	}
	if s.ID == "" || len(s.ID) > 64 {
		return fmt.Errorf("%w: id is required", ErrInvalid)
	}
	if len(s.Description) > MaxDescriptionLen {
		return fmt.Errorf("%w: description is over %d bytes", ErrInvalid, MaxDescriptionLen)
	}
	if len(s.Deliver) > MaxTargets {
		return fmt.Errorf("%w: at most %d delivery targets", ErrInvalid, MaxTargets)
	}
	seen := map[Target]bool{}
	for _, t := range s.Deliver {
		if err := t.Validate(); err != nil {
			return err
		}
		if seen[t] {
			return fmt.Errorf("%w: target %s is given twice", ErrInvalid, t)
		}
		seen[t] = true
	}
	if len(s.Labels) > MaxLabels {
		return fmt.Errorf("%w: at most %d labels", ErrInvalid, MaxLabels)
	}
	for k, v := range s.Labels {
		if k == "" || len(k) > MaxLabelLen || len(v) > MaxLabelLen {
			return fmt.Errorf("%w: label keys are 1 to %d bytes, values up to %d", ErrInvalid, MaxLabelLen, MaxLabelLen)
		}
	}
	switch {
	case s.Kind == KindPostgres && s.Postgres == nil:
		return fmt.Errorf("%w: a postgres secret needs its role template (postgres.grants or postgres.member_of)", ErrInvalid)
	case s.Kind == KindPostgres:
		if err := s.Postgres.Validate(); err != nil {
			return err
		}
	case s.Postgres != nil:
		return fmt.Errorf("%w: a %s secret has no postgres role template", ErrInvalid, s.Kind)
	}
	if s.Version < 1 {
		return fmt.Errorf("%w: version must be positive", ErrInvalid)
	}
	return nil
}

// Value is a secret value on its way to a delivery path. It formats and
// encodes as "[REDACTED]", so a value logged, printed or marshalled by
// mistake shows nothing; read the bytes with Bytes.
type Value struct{ b []byte }

// NewValue wraps b (not copied).
func NewValue(b []byte) Value { return Value{b: b} }

// Bytes returns the value itself.
func (v Value) Bytes() []byte { return v.b }

// Len is the value's size.
func (v Value) Len() int { return len(v.b) }

const redacted = "[REDACTED]"

// String implements fmt.Stringer: redacted.
func (Value) String() string { return redacted }

// GoString implements fmt.GoStringer: redacted.
func (Value) GoString() string { return redacted }

// Format implements fmt.Formatter: redacted whatever the verb.
func (Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler: redacted.
func (Value) MarshalJSON() ([]byte, error) { return json.Marshal(redacted) }

// MarshalText implements encoding.TextMarshaler: redacted.
func (Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }
