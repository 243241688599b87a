package identity

import (
	"errors"
	"fmt"
	"strings"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// agentPathPrefix is the path every agent's SPIFFE ID lives under.
const agentPathPrefix = "/agent/"

// ErrInvalidID is returned (wrapped) by ParseID and NewID for any string that
// is not an agent SPIFFE ID.
var ErrInvalidID = errors.New("invalid agent ID")

// ID is an agent's workload identity: a SPIFFE ID of the form
// spiffe://<trust-domain>/agent/<name>. The zero ID is not valid; IDs are
// created with ParseID or NewID, which enforce the SPIFFE ID rules
// (lower-case trust domain, no empty, "." or ".." path segments, no query,
// fragment, port or user info) and the agent path shape.
//
// ID is a comparable value type and may be used as a map key.
type ID struct {
	id spiffeid.ID
}

// ParseID parses s as an agent ID.
func ParseID(s string) (ID, error) {
	sid, err := spiffeid.FromString(s)
	if err != nil {
		return ID{}, fmt.Errorf("%w %q: %v", ErrInvalidID, s, err)
	}
	return fromSPIFFE(sid)
}

// NewID returns the agent ID for name in trustDomain.
func NewID(trustDomain, name string) (ID, error) {
	td, err := spiffeid.TrustDomainFromString(trustDomain)
	if err != nil {
		return ID{}, fmt.Errorf("%w: trust domain %q: %v", ErrInvalidID, trustDomain, err)
	}
	sid, err := spiffeid.FromSegments(td, "agent", name)
	if err != nil {
		return ID{}, fmt.Errorf("%w: name %q: %v", ErrInvalidID, name, err)
	}
	return fromSPIFFE(sid)
}

// MustParseID is ParseID for literals in source and tests; it panics on error.
func MustParseID(s string) ID {
	id, err := ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

func fromSPIFFE(sid spiffeid.ID) (ID, error) {
	name, ok := strings.CutPrefix(sid.Path(), agentPathPrefix)
	if !ok || name == "" || strings.Contains(name, "/") {
		return ID{}, fmt.Errorf("%w %q: path must be %s<name>", ErrInvalidID, sid.String(), agentPathPrefix)
	}
	return ID{id: sid}, nil
}

// String returns the ID in its URI form, or "" for the zero ID.
func (id ID) String() string { return id.id.String() }

// TrustDomain returns the trust domain name, e.g. "example.org".
func (id ID) TrustDomain() string { return id.id.TrustDomain().Name() }

// Name returns the agent's name: the last path segment.
func (id ID) Name() string { return strings.TrimPrefix(id.id.Path(), agentPathPrefix) }

// IsZero reports whether id is the zero ID.
func (id ID) IsZero() bool { return id.id.IsZero() }

// MarshalText implements encoding.TextMarshaler.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler; the empty string gives
// the zero ID.
func (id *ID) UnmarshalText(text []byte) error {
	if len(text) == 0 {
		*id = ID{}
		return nil
	}
	parsed, err := ParseID(string(text))
	if err != nil {
		return err
	}
	*id = parsed
	return nil
}
