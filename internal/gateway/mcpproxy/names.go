package mcpproxy

import (
	"strings"
)

// NamespaceSep joins an upstream's name and a tool or prompt name on the
// aggregated endpoint: "github__create_issue".
const NamespaceSep = "__"

// exposed returns the downstream name of an upstream's tool or prompt.
func (s *session) exposed(u *upConn, name string) string {
	if s.upstream != "" {
		return name
	}
	return u.cfg.Name + NamespaceSep + name
}

// split resolves an aggregated name "<upstream>__<name>".
func (s *session) split(exposed string) (*upConn, string, bool) {
	if s.upstream != "" {
		return s.ups[0], exposed, true
	}
	up, name, ok := strings.Cut(exposed, NamespaceSep)
	if !ok {
		return nil, "", false
	}
	u := s.byName[up]
	return u, name, u != nil && name != ""
}
