package egress

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/mandatehq/mandate/internal/resource"
	"github.com/mandatehq/mandate/internal/token"
)

// targetCases are request targets an attacker would try, with what the
// proxy makes of them: the resource decided (and the host dialed), or
// the error class.
var absoluteCases = []struct {
	raw, resource, uri string
	err                error
}{
	{"http://example.com/", "example.com", "/", nil},
	{"http://example.com", "example.com", "/", nil},
	{"http://example.com?q=1", "example.com", "/?q=1", nil},
	{"http://Example.COM/a", "example.com", "/a", nil},
	{"http://example.com./a", "example.com", "/a", nil},
	{"http://example.com:80/a", "example.com", "/a", nil},
	{"http://example.com:8080/a", "example.com:8080", "/a", nil},
	{"http://xn--bcher-kva.de/", "xn--bcher-kva.de", "/", nil},
	{"http://127.0.0.1:9/x", "127.0.0.1:9", "/x", nil},
	{"http://[2001:db8::1]/", "[2001:db8::1]", "/", nil},
	{"http://[2001:db8::1]:8080/", "[2001:db8::1]:8080", "/", nil},
	{"http://registry.npmjs.org/@babel%2fcore", "registry.npmjs.org", "/@babel%2fcore", nil},
	// IP spellings: one canonical form, the rest refused.
	{"http://2130706433/", "", "", errNotCanonical},
	{"http://0177.0.0.1/", "", "", errNotCanonical},
	{"http://0x7f.1/", "", "", errNotCanonical},
	{"http://0x7f000001/", "", "", errNotCanonical},
	{"http://127.1/", "", "", errNotCanonical},
	{"http://127.0.0.1./", "", "", errNotCanonical},
	{"http://127.000.000.001/", "", "", errNotCanonical},
	{"http://[::ffff:127.0.0.1]/", "", "", errNotCanonical},
	{"http://[::FFFF:7f00:1]/", "", "", errNotCanonical},
	{"http://[2001:DB8::1]/", "", "", errNotCanonical},
	{"http://[2001:db8:0::1]/", "", "", errNotCanonical},
	{"http://[fe80::1%25eth0]/", "", "", errMalformed},
	{"http://[fe80::1%eth0]/", "", "", errMalformed},
	{"http://[::1/", "", "", errMalformed},
	{"http://[127.0.0.1]/", "", "", errMalformed},
	// Names.
	{"http://exa_mple.com/", "", "", errNotCanonical},
	{"http://-example.com/", "", "", errNotCanonical},
	{"http://example..com/", "", "", errNotCanonical},
	{"http://xn--abc.com/", "", "", errNotCanonical},
	{"http://b\u00fccher.de/", "", "", errMalformed},
	{"http://ex%61mple.com/", "", "", errMalformed},
	{"http://user:pw@example.com/", "", "", errMalformed},
	{"http://example.com@evil.com/", "", "", errMalformed},
	{"http://example.com\\@evil.com/", "", "", errMalformed},
	{"http://exa mple.com/", "", "", errMalformed},
	{"http:///x", "", "", errMalformed},
	{"http://:80/", "", "", errMalformed},
	// Ports.
	{"http://example.com:/", "", "", errMalformed},
	{"http://example.com:080/", "", "", errMalformed},
	{"http://example.com:0/", "", "", errMalformed},
	{"http://example.com:65536/", "", "", errMalformed},
	{"http://example.com:+80/", "", "", errMalformed},
	{"http://example.com:8080:80/", "", "", errMalformed},
	// Forms.
	{"/", "", "", errMalformed},
	{"https://example.com/", "", "", errMalformed},
	{"HTTP://example.com/", "", "", errMalformed},
	{"ftp://example.com/", "", "", errMalformed},
	{"http://example.com/#frag", "", "", errMalformed},
	{"example.com:80", "", "", errMalformed},
	// Paths.
	{"http://example.com/a/../admin", "", "", errMalformed},
	{"http://example.com/a/./b", "", "", errMalformed},
	{"http://example.com/a/%2e%2e/admin", "", "", errMalformed},
	{"http://example.com/a/.%2E/admin", "", "", errMalformed},
	{"http://example.com/a/%252e%252e/admin", "", "", errMalformed},
	{"http://example.com/a%5c..%5cadmin", "", "", errMalformed},
	{"http://example.com/a\\b", "", "", errMalformed},
	{"http://example.com/a%00b", "", "", errMalformed},
	{"http://example.com/a%zz", "", "", errMalformed},
	{"http://example.com/a?b\x01", "", "", errMalformed},
}

func TestParseAbsolute(t *testing.T) {
	t.Parallel()
	for _, tc := range absoluteCases {
		got, err := parseAbsolute("GET", tc.raw)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("parseAbsolute(%q) = %+v, %v; want %v", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseAbsolute(%q): %v", tc.raw, err)
			continue
		}
		if got.resource != tc.resource || got.url.RequestURI() != tc.uri || got.dest.Host != tc.resource {
			t.Errorf("parseAbsolute(%q) = resource %q, upstream target %q; want %q, %q", tc.raw, got.resource, got.url.RequestURI(), tc.resource, tc.uri)
		}
	}
}

var connectCases = []struct {
	raw, resource string
	port          uint16
	err           error
}{
	{"example.com:443", "example.com", 443, nil},
	{"Example.com.:443", "example.com", 443, nil},
	{"example.com:22", "example.com:22", 22, nil},
	{"[2001:db8::1]:443", "[2001:db8::1]", 443, nil},
	{"93.184.216.34:443", "93.184.216.34", 443, nil},
	{"example.com", "", 0, errMalformed},
	{"example.com:", "", 0, errMalformed},
	{"example.com:0443", "", 0, errMalformed},
	{"2130706433:443", "", 0, errNotCanonical},
	{"0177.0.0.1:443", "", 0, errNotCanonical},
	{"0x7f.1:443", "", 0, errNotCanonical},
	{"127.1:443", "", 0, errNotCanonical},
	{"[::ffff:169.254.169.254]:443", "", 0, errNotCanonical},
	{"[fe80::1%25lo]:443", "", 0, errMalformed},
	{"http://example.com:443", "", 0, errMalformed},
	{"example.com:443/x", "", 0, errMalformed},
	{"", "", 0, errMalformed},
}

func TestParseConnect(t *testing.T) {
	t.Parallel()
	for _, tc := range connectCases {
		got, err := parseConnect(tc.raw)
		if tc.err != nil {
			if !errors.Is(err, tc.err) {
				t.Errorf("parseConnect(%q) = %+v, %v; want %v", tc.raw, got, err, tc.err)
			}
			continue
		}
		if err != nil || got.resource != tc.resource || got.port != tc.port || got.dest.Method != "CONNECT" || got.dest.Path != "" {
			t.Errorf("parseConnect(%q) = %+v, %v; want resource %q port %d", tc.raw, got, err, tc.resource, tc.port)
		}
	}
}

// FuzzParseTarget: whatever a client sends, what the proxy decides on is
// canonical, and it is what it would dial and send.
func FuzzParseTarget(f *testing.F) {
	for _, tc := range absoluteCases {
		f.Add(tc.raw)
	}
	for _, tc := range connectCases {
		f.Add(tc.raw)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		if tg, err := parseAbsolute("GET", raw); err == nil {
			checkTarget(t, raw, tg)
			if tg.url.Scheme != "http" || tg.url.Host != tg.authority(httpPort) || tg.url.User != nil {
				t.Fatalf("parseAbsolute(%q): upstream URL %v is not the decided authority %q", raw, tg.url, tg.authority(httpPort))
			}
			if err := checkPath(tg.url.EscapedPath()); err != nil || tg.url.EscapedPath() != tg.dest.Path {
				t.Fatalf("parseAbsolute(%q): path decided %q, sent %q (%v)", raw, tg.dest.Path, tg.url.EscapedPath(), err)
			}
			again, err := parseAbsolute("GET", "http://"+tg.resource+tg.url.RequestURI())
			if err != nil || again.resource != tg.resource || again.url.String() != tg.url.String() {
				t.Fatalf("parseAbsolute(%q) = %q, %v; its canonical form reads as %+v, %v", raw, tg.resource, tg.url, again, err)
			}
		}
		if tg, err := parseConnect(raw); err == nil {
			checkTarget(t, raw, tg)
			if tg.port == 0 {
				t.Fatalf("parseConnect(%q): no port", raw)
			}
		}
	})
}

func checkTarget(t *testing.T, raw string, tg *target) {
	t.Helper()
	if err := resource.CheckHost(tg.resource); err != nil {
		t.Fatalf("%q: resource %q is not canonical: %v", raw, tg.resource, err)
	}
	if err := resource.CheckHost(tg.host); err != nil || strings.Contains(tg.host, ":") && !strings.HasPrefix(tg.host, "[") {
		t.Fatalf("%q: host %q is not canonical: %v", raw, tg.host, err)
	}
	if a, err := netip.ParseAddr(trimBrackets(tg.host)); err == nil && (a.String() != trimBrackets(tg.host) || a.Is4In6() || a.Zone() != "") {
		t.Fatalf("%q: address %q has another spelling %s", raw, tg.host, a)
	}
}

func TestAddressPolicy(t *testing.T) {
	t.Parallel()
	open := &addressPolicy{allow: []netip.Prefix{netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("169.254.0.0/16")}}
	strict := &addressPolicy{}
	for _, tc := range []struct {
		addr          string
		strict, open_ bool // allowed by each
	}{
		{"93.184.216.34", true, true},
		{"2606:2800:220:1:248:1893:25c8:1946", true, true},
		{"127.0.0.1", false, false},
		{"127.255.255.254", false, false},
		{"::1", false, false},
		{"::ffff:127.0.0.1", false, false},
		{"::ffff:10.1.2.3", false, true},
		{"10.1.2.3", false, true},
		{"10.2.0.1", false, false},
		{"172.16.0.1", false, false},
		{"192.168.1.1", false, false},
		{"100.64.0.1", false, false},
		{"0.0.0.0", false, false},
		{"0.1.2.3", false, false},
		{"::", false, false},
		{"169.254.1.1", false, true},
		{"169.254.169.254", false, false}, // metadata: a range does not open it
		{"::ffff:169.254.169.254", false, false},
		{"169.254.170.2", false, false},
		{"100.100.100.200", false, false},
		{"fd00:ec2::254", false, false},
		{"fd12:3456::1", false, false},
		{"fe80::1", false, false},
		{"ff02::1", false, false},
		{"224.0.0.1", false, false},
		{"255.255.255.255", false, false},
		{"64:ff9b::a9fe:a9fe", false, false}, // NAT64 of 169.254.169.254
		{"2002:7f00:1::", false, false},      // 6to4 of 127.0.0.1
		{"::127.0.0.1", false, false},        // IPv4-compatible
		{"198.18.0.1", false, false},
	} {
		a := netip.MustParseAddr(tc.addr)
		if _, err := strict.check(a); (err == nil) != tc.strict {
			t.Errorf("default check(%s) = %v, want allowed %v", tc.addr, err, tc.strict)
		}
		if _, err := open.check(a); (err == nil) != tc.open_ {
			t.Errorf("allow_private check(%s) = %v, want allowed %v", tc.addr, err, tc.open_)
		}
	}
	exact := &addressPolicy{allow: []netip.Prefix{netip.MustParsePrefix("169.254.169.254/32")}}
	if _, err := exact.check(netip.MustParseAddr("169.254.169.254")); err != nil {
		t.Errorf("a metadata address named exactly is refused: %v", err)
	}
}

// FuzzProxyCredential: a Proxy-Authorization header either yields a
// Bearer presentation of a token FromHeader accepts, or an error.
func FuzzProxyCredential(f *testing.F) {
	for _, s := range []string{"Basic YWdlbnQ6dG9r", "Bearer tok", "basic YWdlbnQ=", "Basic !!!", "Digest x", "Basic OnRvaw==", "Bearer  a b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		p, err := proxyCredential(http.Header{"Proxy-Authorization": {v}})
		if err != nil {
			return
		}
		if p.Scheme != token.SchemeBearer || p.Token == "" || p.DPoPProof != "" {
			t.Fatalf("proxyCredential(%q) = %+v", v, p)
		}
		if _, err := token.FromHeader(http.Header{"Authorization": {"Bearer " + p.Token}}); err != nil {
			t.Fatalf("proxyCredential(%q) = token %q that FromHeader refuses: %v", v, p.Token, err)
		}
	})
}
