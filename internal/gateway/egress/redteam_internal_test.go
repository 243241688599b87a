package egress

import (
	"errors"
	"net/http"
	"net/netip"
	"testing"
)

// Paths a server reads otherwise than the policy would: dot segments
// with ";" parameters (Tomcat and Jetty strip them), encoded or not.
func TestRedteamPaths(t *testing.T) {
	t.Parallel()
	for _, p := range []string{
		"/public/..;/admin", "/public/..;x=1/admin", "/a/.;/b", "/a/%2e%2e;/admin", "/a/%2e%2e%3b/admin", "/a/%252e%252e%253b/admin", "/..;",
	} {
		if err := checkPath(p); !errors.Is(err, errMalformed) {
			t.Errorf("checkPath(%q) = %v, want refused", p, err)
		}
	}
	for _, p := range []string{"/a;jsessionid=1/b", "/a/...;/b", "/v1/items;rev=2", "/a/..x;/b"} {
		if err := checkPath(p); err != nil {
			t.Errorf("checkPath(%q) = %v, want allowed", p, err)
		}
	}
}

// The IPv4-translated (SIIT) form reaches IPv4 like NAT64 does.
func TestRedteamTranslatedAddresses(t *testing.T) {
	t.Parallel()
	open := &addressPolicy{allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}}
	for _, a := range []string{"::ffff:0:7f00:1", "::ffff:0:a9fe:a9fe", "::ffff:0:808:808", "64:ff9b::7f00:1", "2002:7f00:1::1"} {
		if _, err := open.check(netip.MustParseAddr(a)); !errors.Is(err, errAddressRefused) {
			t.Errorf("check(%s) = %v, want refused", a, err)
		}
	}
}

// A value echoed in a header's name (which the transport canonicalised:
// "X-Ghp_abc…") is dropped with the field; values are scrubbed as before.
func TestRedteamScrubHeaderNames(t *testing.T) {
	t.Parallel()
	s := newScrubber(map[string]string{"ghp_abcdef123456": "gh"})
	h := http.Header{}
	h.Set("X-Ghp_abcdef123456-Echo", "1")
	h.Set("X-Echo", "token ghp_abcdef123456")
	h.Set("X-Other", "fine")
	s.header(h)
	if len(h) != 2 || h.Get("X-Echo") != "token [secret:gh]" || h.Get("X-Other") != "fine" {
		t.Errorf("scrubbed header = %v, want the named field dropped and the value replaced", h)
	}
}
