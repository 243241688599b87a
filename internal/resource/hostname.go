package resource

import (
	"fmt"
	"strings"
)

// CanonicalHostName maps a DNS host name as a client spelled it to the
// canonical form CheckHost requires: one trailing "." dropped, then UTS
// #46 mapping (lower case, full-width forms) and A-labels, with the same
// IDNA profile CheckHost checks against. It is for an enforcement point
// that receives a name the way a user typed it (an HTTP proxy's request
// target) and then uses only the canonical name: it decides on it,
// resolves it and sends it upstream, so nothing downstream sees another
// spelling.
//
// Names that read as IPv4 addresses (CheckHost's rule: the last label
// numeric or "0x…") and bracketed IPv6 literals are not mapped but
// returned as given: an address has exactly one spelling, and CheckHost
// refuses the others ("0177.0.0.1", "2130706433", "127.1"). The result
// is not checked; pass it to CheckHost.
func CanonicalHostName(name string) (string, error) {
	if strings.HasPrefix(name, "[") || readsAsIPv4(name) {
		return name, nil
	}
	trimmed := strings.TrimSuffix(name, ".")
	if trimmed == "" || readsAsIPv4(trimmed) {
		return name, nil
	}
	out, err := hostProfile.ToASCII(trimmed)
	if err != nil {
		return "", fmt.Errorf("%w: host %s: not a valid host name: %s", ErrNotCanonical, Quote(name), ascii(err.Error()))
	}
	return out, nil
}

// readsAsIPv4 reports whether resolvers and URL parsers read name as an
// IPv4 address: its last label is numeric or starts with "0x" (WHATWG
// URL's rule, which CheckHost applies).
func readsAsIPv4(name string) bool {
	last := name[strings.LastIndexByte(name, '.')+1:]
	last = strings.ToLower(last)
	return last != "" && (strings.HasPrefix(last, "0x") || strings.Trim(last, "0123456789") == "")
}
