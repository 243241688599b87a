package egress

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// MaxRequestTarget bounds the request target (the URL of a plain HTTP
// request, the authority of a CONNECT), in bytes; a longer one is
// answered 414 and recorded.
const MaxRequestTarget = 8 << 10

// Default ports: a host reached on its scheme's port is named without
// it (the resource "example.com" is port 80 for plain HTTP and 443 for a
// CONNECT, told apart by the destination's method); any other port is
// part of the resource ("example.com:8443"), so that a scope or policy
// written for a host does not reach its other ports.
const (
	httpPort    = 80
	connectPort = 443
)

// errMalformed marks a request target the proxy cannot read (400);
// errNotCanonical one whose host is not in its one canonical spelling
// (an IP address written any other way, a zone): refused, not cleaned.
var (
	errMalformed    = errors.New("malformed request target")
	errNotCanonical = errors.New("host not canonical")
)

// target is where a request goes, as the proxy decides, resolves and
// forwards it: only canonical forms.
type target struct {
	// host is the canonical host: a name in A-label form, a dotted IPv4
	// address, or a bracketed RFC 5952 IPv6 address.
	host string
	port uint16
	// resource is the http.request resource: host, and ":port" unless
	// port is the scheme's default.
	resource string
	// url is where a plain HTTP request is sent: the canonical
	// authority, the path as received and the query.
	url  *url.URL
	dest policy.Destination
}

// authority is host:port for dialing and for the upstream's Host header
// (without the default port, as clients write it).
func (t *target) authority(defaultPort uint16) string {
	if t.port == defaultPort {
		return t.host
	}
	return t.host + ":" + strconv.Itoa(int(t.port))
}

// parseAbsolute reads the request target of a plain HTTP proxy request:
// absolute form (RFC 9112 §3.2.2), "http://authority[/path][?query]",
// scheme in lower case, no user info, no fragment, no percent-encoding in
// the authority. The raw target is parsed, not net/http's reading of it
// (which decodes a percent-encoded host): what is decided is what is sent.
func parseAbsolute(method, raw string) (*target, error) {
	rest, ok := strings.CutPrefix(raw, "http://")
	switch {
	case !ok && strings.HasPrefix(strings.ToLower(raw), "https://"):
		return nil, fmt.Errorf("%w: an https:// URL goes through CONNECT (the proxy does not make TLS connections for the client)", errMalformed)
	case !ok && strings.HasPrefix(raw, "/"):
		return nil, fmt.Errorf("%w: %s is not a proxy request (want an absolute http:// URL or CONNECT)", errMalformed, resource.Quote(raw))
	case !ok:
		return nil, fmt.Errorf("%w: %s: want an absolute http:// URL (scheme in lower case)", errMalformed, resource.Quote(raw))
	case strings.ContainsRune(raw, '#'):
		return nil, fmt.Errorf("%w: %s has a fragment", errMalformed, resource.Quote(raw))
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	auth, pathQuery := rest[:end], rest[end:]
	if strings.HasPrefix(pathQuery, "?") || pathQuery == "" {
		pathQuery = "/" + pathQuery
	}
	t, err := parseAuthority(auth, httpPort)
	if err != nil {
		return nil, err
	}
	if err := t.setPath("http", httpPort, method, raw, pathQuery); err != nil {
		return nil, err
	}
	return t, nil
}

// setPath sets t's upstream URL (scheme, the canonical authority, the
// path and query of pathQuery as received) and its destination. raw is
// the request target, for errors. The path decided is the path sent.
func (t *target) setPath(scheme string, defaultPort uint16, method, raw, pathQuery string) error {
	for i := 0; i < len(pathQuery); i++ {
		if c := pathQuery[i]; c <= ' ' || c >= 0x7f || c == '#' {
			return fmt.Errorf("%w: %s: a space, control or non-ASCII byte, or a fragment, in the path or query", errMalformed, resource.Quote(raw))
		}
	}
	pu, err := url.ParseRequestURI(pathQuery)
	if err != nil {
		return fmt.Errorf("%w: %s: %v", errMalformed, resource.Quote(raw), err)
	}
	t.url = &url.URL{Scheme: scheme, Host: t.authority(defaultPort), Path: pu.Path, RawPath: pu.RawPath, RawQuery: pu.RawQuery}
	path := t.url.EscapedPath()
	if err := checkPath(path); err != nil {
		return err
	}
	t.dest = policy.Destination{Host: t.resource, Method: method, Path: path}
	return nil
}

// inTunnel reads the target of a request inside an intercepted tunnel
// to t: origin form ("/path?query"; RFC 9112 §3.2.1), and a Host header,
// if any, naming t's host and port. It answers the status to refuse a
// target with: 400, 414, or 421 for another host.
func (t *target) inTunnel(r *http.Request) (*target, int, error) {
	raw := r.RequestURI
	if len(raw) > MaxRequestTarget {
		return nil, http.StatusRequestURITooLong, fmt.Errorf("%w: longer than %d bytes", errTooLong, MaxRequestTarget)
	}
	if !strings.HasPrefix(raw, "/") {
		return nil, http.StatusBadRequest, fmt.Errorf("%w: %s: inside an intercepted tunnel a request target is a path (origin form)", errMalformed, resource.Quote(raw))
	}
	if r.Host != "" {
		h, err := parseAuthority(r.Host, connectPort)
		if err != nil || h.host != t.host || h.port != t.port {
			return nil, http.StatusMisdirectedRequest, fmt.Errorf("%w: Host %s is not the tunnel's %s", errMalformed, resource.Quote(r.Host), t.authority(connectPort))
		}
	}
	in := &target{host: t.host, port: t.port, resource: t.resource}
	if err := in.setPath("https", connectPort, r.Method, raw, raw); err != nil {
		return nil, http.StatusBadRequest, err
	}
	return in, 0, nil
}

// parseConnect reads the target of a CONNECT: authority form
// "host:port" (RFC 9112 §3.2.3), the port required.
func parseConnect(raw string) (*target, error) {
	t, err := parseAuthority(raw, 0)
	if err != nil {
		return nil, err
	}
	if t.port == 0 {
		return nil, fmt.Errorf("%w: CONNECT %s: want host:port", errMalformed, resource.Quote(raw))
	}
	if t.port == connectPort {
		t.resource = t.host
	}
	t.dest = policy.Destination{Host: t.resource, Method: "CONNECT"}
	return t, nil
}

// parseAuthority splits "host[:port]" and canonicalises the host. A port
// equal to defaultPort is dropped from the resource; defaultPort 0 means
// the port is required (the caller checks) and always named.
func parseAuthority(raw string, defaultPort uint16) (*target, error) {
	if raw == "" {
		return nil, fmt.Errorf("%w: no host", errMalformed)
	}
	if strings.ContainsAny(raw, "@%/\\") {
		return nil, fmt.Errorf("%w: host %s: no user info, percent-encoding or path in the authority", errMalformed, resource.Quote(raw))
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c >= 0x7f {
			return nil, fmt.Errorf("%w: host %s: control, space or non-ASCII byte (send internationalised names as xn-- A-labels)", errMalformed, resource.Quote(raw))
		}
	}
	name, portText := raw, ""
	if strings.HasPrefix(raw, "[") {
		end := strings.IndexByte(raw, ']')
		if end < 0 {
			return nil, fmt.Errorf("%w: host %s: unclosed \"[\"", errMalformed, resource.Quote(raw))
		}
		name, portText = raw[:end+1], raw[end+1:]
		if portText != "" {
			var ok bool
			if portText, ok = strings.CutPrefix(portText, ":"); !ok {
				return nil, fmt.Errorf("%w: host %s: want [address]:port", errMalformed, resource.Quote(raw))
			}
		}
	} else if i := strings.LastIndexByte(raw, ':'); i >= 0 {
		name, portText = raw[:i], raw[i+1:]
		if strings.Contains(name, ":") {
			return nil, fmt.Errorf("%w: host %s: an IPv6 address goes in brackets", errMalformed, resource.Quote(raw))
		}
		if portText == "" {
			return nil, fmt.Errorf("%w: host %s: empty port", errMalformed, resource.Quote(raw))
		}
	}
	var port uint16
	if portText != "" {
		n, err := strconv.Atoi(portText)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != portText {
			return nil, fmt.Errorf("%w: host %s: port must be 1-65535 without leading zeros", errMalformed, resource.Quote(raw))
		}
		port = uint16(n)
	} else {
		port = defaultPort
	}
	host, err := canonicalHost(name)
	if err != nil {
		return nil, err
	}
	t := &target{host: host, port: port, resource: host}
	if port != defaultPort {
		t.resource = host + ":" + strconv.Itoa(int(port))
	}
	return t, nil
}

// canonicalHost returns the canonical form of a host as a client spelled
// it: a name is mapped (resource.CanonicalHostName); an address must
// already be in its one spelling (resource.CheckHost): a zone, an
// IPv4-mapped IPv6 address and the octal, hex, short and single-number
// IPv4 forms are refused.
func canonicalHost(name string) (string, error) {
	if name == "" {
		return "", fmt.Errorf("%w: no host", errMalformed)
	}
	if inner, ok := strings.CutPrefix(name, "["); ok {
		inner = strings.TrimSuffix(inner, "]")
		if strings.Contains(inner, "%") {
			return "", fmt.Errorf("%w: host %s: an IPv6 zone is not a host", errNotCanonical, resource.Quote(name))
		}
		if a, err := netip.ParseAddr(inner); err != nil || !a.Is6() {
			return "", fmt.Errorf("%w: host %s: not an IPv6 address", errMalformed, resource.Quote(name))
		}
	}
	host, err := resource.CanonicalHostName(name)
	if err == nil {
		err = resource.CheckHost(host)
	}
	if err != nil {
		return "", fmt.Errorf("%w: %s", errNotCanonical, strings.TrimPrefix(err.Error(), resource.ErrNotCanonical.Error()+": "))
	}
	return host, nil
}

// checkPath holds the path of a plain HTTP request to one reading: it
// starts with "/", and no segment is "." or "..", literally or
// percent-encoded (once or twice: "%2e", "%252e"), with ";" parameters
// or not ("..;x"), or holds a "\", a NUL or a control character, decoded
// or not. A policy on paths sees the path as it is sent; a server that
// resolved dot segments or decoded once more would otherwise see
// another one. An encoded "/" ("%2f", as
// npm sends scoped package names) is allowed: it is one segment.
func checkPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%w: path %s does not start with \"/\"", errMalformed, resource.Quote(p))
	}
	if len(p) > policy.MaxStringLen {
		return fmt.Errorf("%w: path longer than %d bytes", errMalformed, policy.MaxStringLen)
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		once, err := url.PathUnescape(seg)
		if err != nil {
			return fmt.Errorf("%w: path %s: invalid percent-encoding", errMalformed, resource.Quote(p))
		}
		twice, err := url.PathUnescape(once)
		if err != nil {
			twice = once // a literal "%" after one decoding is data
		}
		for _, s := range []string{seg, once, twice} {
			// A segment's ";" parameters are not its name to servers that
			// strip them (Tomcat, Jetty: "/public/..;/admin" is /admin).
			name, _, _ := strings.Cut(s, ";")
			if name == "." || name == ".." || strings.ContainsFunc(s, badPathRune) {
				return fmt.Errorf("%w: path %s: a \".\" or \"..\" segment (encoded or not), \"\\\" or control character", errMalformed, resource.Quote(p))
			}
		}
	}
	return nil
}

func badPathRune(r rune) bool { return r == '\\' || r < 0x20 || r == 0x7f }
