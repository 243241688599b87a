package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Resolver resolves a host name to its addresses (net.Resolver's
// LookupNetIP with network "ip"). Tests inject one; the default is
// net.DefaultResolver.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// errAddressRefused marks a destination whose name resolves to (or is)
// an address the proxy does not connect to: 403, recorded as the
// outcome of the allowed request.
var errAddressRefused = errors.New("destination address refused")

// blocked are the address ranges no request goes to unless
// Config.AllowPrivate names them: everything that is not globally
// reachable unicast (IANA's IPv4 and IPv6 special-purpose registries)
// and the ranges that reach it by translation (NAT64, 6to4, Teredo, the
// IPv4-compatible form). IPv4-mapped IPv6 addresses are checked as the
// IPv4 address they carry.
var blocked = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8",       // "this network": Linux connects 0.x to the host itself
		"10.0.0.0/8",      // private
		"100.64.0.0/10",   // shared address space (CGNAT; Alibaba Cloud's metadata 100.100.100.200)
		"127.0.0.0/8",     // loopback
		"169.254.0.0/16",  // link-local (cloud metadata 169.254.169.254, ECS 169.254.170.2)
		"172.16.0.0/12",   // private
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast
		"192.168.0.0/16",  // private
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"224.0.0.0/4",     // multicast
		"240.0.0.0/4",     // reserved, and 255.255.255.255 broadcast
		"::/96",           // unspecified, loopback (::1 is in ::/127) and IPv4-compatible
		"::1/128",         // loopback
		"::ffff:0:0:0/96", // IPv4-translated (SIIT, RFC 2765): reaches any IPv4 address
		"64:ff9b::/96",    // NAT64: reaches any IPv4 address, private ones included
		"64:ff9b:1::/48",  // local-use NAT64
		"100::/64",        // discard-only
		"2001::/32",       // Teredo (embeds an IPv4 address)
		"2001:db8::/32",   // documentation
		"2002::/16",       // 6to4 (embeds an IPv4 address)
		"fc00::/7",        // unique local (AWS's metadata fd00:ec2::254)
		"fe80::/10",       // link-local
		"fec0::/10",       // site-local (deprecated)
		"ff00::/8",        // multicast
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// metadata are the cloud metadata services' addresses. They hold the
// credentials of the machine mandate runs on: an AllowPrivate range that
// merely contains one does not open it; only the address itself, as a
// /32 or /128, does.
var metadata = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack, Oracle, DigitalOcean
	netip.MustParseAddr("169.254.170.2"),   // AWS ECS task metadata
	netip.MustParseAddr("100.100.100.200"), // Alibaba Cloud
	netip.MustParseAddr("fd00:ec2::254"),   // AWS over IPv6
}

// addressPolicy decides which addresses the proxy connects to.
type addressPolicy struct {
	allow []netip.Prefix
}

// check reports why the proxy must not connect to a, or nil; private
// reports whether a is an address of the blocked ranges that AllowPrivate
// opened.
func (p *addressPolicy) check(a netip.Addr) (private bool, err error) {
	a = a.Unmap()
	if a.Zone() != "" {
		return false, fmt.Errorf("%w: %s has a zone", errAddressRefused, a)
	}
	for _, m := range metadata {
		if a == m {
			for _, pr := range p.allow {
				if pr.IsSingleIP() && pr.Addr().Unmap() == a {
					return true, nil
				}
			}
			return true, fmt.Errorf("%w: %s is a cloud metadata address", errAddressRefused, a)
		}
	}
	for _, pr := range blocked {
		if !pr.Contains(a) {
			continue
		}
		for _, allow := range p.allow {
			if allow.Contains(a) {
				return true, nil
			}
		}
		return true, fmt.Errorf("%w: %s is a private, loopback, link-local, multicast or reserved address (%s); egress.allow_private can allow it", errAddressRefused, a, pr)
	}
	return false, nil
}

// resolve returns the addresses of t's host, every one of them checked:
// an address literal is itself; a name is resolved once, and one refused
// address refuses the name (a name that resolves to a public and a
// private address is how rebinding and split answers get in).
func (g *Gateway) resolve(ctx context.Context, t *target) ([]netip.Addr, error) {
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(trimBrackets(t.host)); err == nil {
		addrs = []netip.Addr{a}
	} else if isLocalhost(t.host) {
		addrs = []netip.Addr{localhostAddr}
	} else {
		rctx, cancel := context.WithTimeout(ctx, dialTimeout)
		defer cancel()
		if addrs, err = g.cfg.Resolver.LookupNetIP(rctx, "ip", t.host); err != nil {
			return nil, fmt.Errorf("resolve %s: %w", t.host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("resolve %s: no addresses", t.host)
		}
	}
	var public, private bool
	for i, a := range addrs {
		priv, err := g.addrs.check(a)
		if err != nil {
			if trimBrackets(t.host) != a.String() {
				err = fmt.Errorf("%s resolves to %w", t.host, err)
			}
			return nil, err
		}
		public, private = public || !priv, private || priv
		addrs[i] = a.Unmap()
	}
	if public && private {
		// Even when the private address is allowed: the policy decided on
		// a name that also points outside, and which answer a client gets
		// is the name owner's choice.
		return nil, fmt.Errorf("%w: %s resolves to both public and private addresses", errAddressRefused, t.host)
	}
	if len(addrs) > maxAddresses {
		addrs = addrs[:maxAddresses]
	}
	return addrs, nil
}

// localhostAddr is the address of "localhost" and the names under it,
// which are never looked up: RFC 6761 §6.3 makes them loopback, and a
// resolver that sent "data.localhost" to DNS would leak the name and let
// the answer point anywhere.
var localhostAddr = netip.MustParseAddr("127.0.0.1")

// isLocalhost reports whether the canonical host name h is "localhost"
// or a name under it.
func isLocalhost(h string) bool {
	return h == "localhost" || strings.HasSuffix(h, ".localhost")
}

// dialChecked connects to one of addrs (each already checked) on port, in
// order; it never resolves anything.
func (g *Gateway) dialChecked(ctx context.Context, addrs []netip.Addr, port uint16) (net.Conn, netip.AddrPort, error) {
	var errs []error
	for _, a := range addrs {
		ap := netip.AddrPortFrom(a, port)
		c, err := g.dialer.DialContext(ctx, "tcp", ap.String())
		if err == nil {
			return c, ap, nil
		}
		errs = append(errs, err)
	}
	return nil, netip.AddrPort{}, errors.Join(errs...)
}

// Bounds on connecting.
const (
	// dialTimeout bounds the resolution and each connection attempt.
	dialTimeout = 10 * time.Second
	// maxAddresses bounds the addresses of a name that are tried (all
	// of them are checked).
	maxAddresses = 16
)

func trimBrackets(h string) string {
	if len(h) > 1 && h[0] == '[' && h[len(h)-1] == ']' {
		return h[1 : len(h)-1]
	}
	return h
}
