package hook

import (
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strings"

	"golang.org/x/net/idna"

	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/resource"
)

// urlAction is the http.request a fetch of rawURL is: its host in
// canonical form (lowercase A-labels, IP literals in their one spelling,
// the port only when it is not the scheme's default) and the destination.
// A URL mandate cannot name exactly (another scheme, userinfo, a numeric
// host spelt in octal or as one number) is an error: denied.
func urlAction(rawURL string) (Action, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return Action{}, fmt.Errorf("the URL does not parse: %v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return Action{}, fmt.Errorf("only http and https URLs are fetched, not %s", resource.Quote(u.Scheme))
	}
	if u.User != nil {
		return Action{}, errors.New("a URL with userinfo")
	}
	host, err := canonicalHost(u.Hostname())
	if err != nil {
		return Action{}, err
	}
	if port := u.Port(); port != "" && !(u.Scheme == "http" && port == "80" || u.Scheme == "https" && port == "443") {
		host += ":" + port
	}
	if err := resource.CheckHost(host); err != nil {
		return Action{}, err
	}
	p := u.Path
	if p == "" {
		p = "/"
	}
	return Action{Kind: policy.ActionHTTPRequest, Resource: host, Destination: policy.Destination{Host: host, Method: "GET", Path: p}}, nil
}

// canonicalHost writes a host name the one way mandate names it.
func canonicalHost(h string) (string, error) {
	if h == "" {
		return "", errors.New("the URL has no host")
	}
	if addr, err := netip.ParseAddr(h); err == nil {
		if addr.Zone() != "" {
			return "", errors.New("an IPv6 zone is not a host")
		}
		addr = addr.Unmap()
		if addr.Is6() {
			return "[" + addr.String() + "]", nil
		}
		return addr.String(), nil
	}
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	a, err := idna.Lookup.ToASCII(h)
	if err != nil {
		return "", fmt.Errorf("host %s is not a valid name: %v", resource.Quote(h), err)
	}
	return a, nil
}
