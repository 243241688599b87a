package token

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxResourceLen bounds a resource indicator.
const MaxResourceLen = 2048

// CheckResource reports whether s is a resource indicator in the
// canonical form mandate issues task tokens for (RFC 8707 §2): an
// absolute http or https URL, scheme and host in lower case, no user
// info, default port, query or fragment (not even an empty "?" or "#"),
// and a path that is empty or made of non-empty segments other than "."
// and "..", with no trailing slash and no percent-encoding. Nothing is
// cleaned up: "…/mcp/go/../admin", "…/MCP/go", "…/mcp%2fgo" and
// "…/mcp/go/" are refused, not resolved, since a resource identifier is
// compared byte for byte (Server.Config.Audiences).
func CheckResource(s string) error {
	if s == "" || len(s) > MaxResourceLen {
		return errors.New("a resource must be a URL of at most 2048 bytes")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~!$&'()*+,;=:@/[]", c) >= 0) {
			return fmt.Errorf("a resource must not contain %q (no query, fragment or percent-encoding)", c)
		}
	}
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("a resource must be an absolute URL")
	}
	switch {
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("a resource must be an http or https URL, its scheme in lower case")
	case u.Opaque != "" || u.Host == "" || !strings.HasPrefix(s, u.Scheme+"://"):
		return errors.New("a resource must be an absolute URL with a host")
	case u.User != nil:
		return errors.New("a resource must not have user info")
	case u.Host != strings.ToLower(u.Host):
		return errors.New("a resource's host must be in lower case")
	case u.Port() == "" && strings.HasSuffix(u.Host, ":"),
		u.Scheme == "http" && u.Port() == "80", u.Scheme == "https" && u.Port() == "443":
		return errors.New("a resource must not name its scheme's default port")
	}
	if u.Path != "" {
		if !strings.HasPrefix(u.Path, "/") || strings.ContainsAny(u.Path, "[]") {
			return errors.New("a resource's path must be absolute")
		}
		for _, seg := range strings.Split(u.Path[1:], "/") {
			if seg == "" || seg == "." || seg == ".." {
				return errors.New("a resource's path must not have empty, \".\" or \"..\" segments, nor a trailing slash")
			}
		}
	}
	if u.String() != s {
		return errors.New("a resource must be in canonical form")
	}
	return nil
}
