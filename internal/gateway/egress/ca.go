package egress

import (
	"container/list"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// Lifetimes of mandate's interception CA and of the leaf certificates it
// issues.
const (
	// CALifetime is how long a new CA is valid; CARenewBefore how close to
	// its end it is replaced by a new one (at start).
	CALifetime    = 365 * 24 * time.Hour
	CARenewBefore = 30 * 24 * time.Hour
	// LeafLifetime is how long a leaf certificate is valid; a cached leaf
	// is replaced once less than leafRenewBefore is left.
	LeafLifetime    = 24 * time.Hour
	leafRenewBefore = time.Hour
	// leafBackdate covers clients whose clock is a little behind.
	leafBackdate = 5 * time.Minute
	// DefaultLeafCacheSize bounds the cached leaf certificates.
	DefaultLeafCacheSize = 1024
)

// CA is mandate's local certificate authority for TLS interception: an
// ECDSA P-256 key and a self-signed certificate whose name constraints
// permit only the intercepted hosts (so that the key, were it stolen,
// could not vouch for anyone else), and a bounded cache of the leaf
// certificates it issues per host. It is safe for concurrent use.
type CA struct {
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	now     func() time.Time

	mu     sync.Mutex
	max    int
	lru    *list.List // of *leafEntry, most recent first
	leaves map[string]*list.Element
}

type leafEntry struct {
	host string
	cert *tls.Certificate
}

// Constraints are the names and addresses a CA may vouch for: the
// intercepted host patterns as X.509 name constraints. All (a pattern
// "*") is a CA without constraints.
type Constraints struct {
	All bool
	DNS []string     // "api.github.com"; "github.com" for "*.github.com"
	IPs []netip.Addr // addresses intercepted by literal
}

// GenerateCA makes a new CA valid from now for CALifetime, constrained to
// c.
func GenerateCA(c Constraints, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("egress: generate CA key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	pub, err := key.PublicKey.Bytes()
	if err != nil {
		return nil, fmt.Errorf("egress: CA key: %w", err)
	}
	ski := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{Organization: []string{"mandate"},
			CommonName: "mandate egress interception CA " + hex.EncodeToString(ski[:4])},
		NotBefore:             now.Add(-leafBackdate),
		NotAfter:              now.Add(CALifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          ski[:20],
	}
	if !c.All {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = slices.Clone(c.DNS)
		for _, a := range c.IPs {
			tmpl.PermittedIPRanges = append(tmpl.PermittedIPRanges, ipNet(a))
		}
		if len(c.IPs) == 0 {
			// No address at all: without this, IP SANs would be
			// unconstrained.
			tmpl.ExcludedIPRanges = []*net.IPNet{{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, {IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}}
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("egress: make CA certificate: %w", err)
	}
	return newCA(der, key)
}

func newCA(der []byte, key *ecdsa.PrivateKey) (*CA, error) {
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("egress: CA certificate: %w", err)
	}
	pub, ok := cert.PublicKey.(*ecdsa.PublicKey)
	if !ok || !pub.Equal(&key.PublicKey) || !cert.IsCA {
		return nil, errors.New("egress: the CA key does not belong to the CA certificate")
	}
	return &CA{cert: cert, key: key, now: time.Now, max: DefaultLeafCacheSize, lru: list.New(), leaves: map[string]*list.Element{},
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// CertPEM returns the CA certificate in PEM: the bundle clients trust
// (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS, REQUESTS_CA_BUNDLE,
// GIT_SSL_CAINFO).
func (ca *CA) CertPEM() []byte { return slices.Clone(ca.certPEM) }

// Certificate returns the CA certificate.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// SetLeafCacheSize bounds the cached leaf certificates (at least 1).
func (ca *CA) SetLeafCacheSize(n int) {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	ca.max = max(1, n)
	ca.evict()
}

// constrainedTo reports whether the CA's name constraints are exactly c's.
func (ca *CA) constrainedTo(c Constraints) bool {
	if c.All {
		return len(ca.cert.PermittedDNSDomains) == 0 && len(ca.cert.PermittedIPRanges) == 0 && len(ca.cert.ExcludedIPRanges) == 0
	}
	if !slices.Equal(sorted(ca.cert.PermittedDNSDomains), sorted(c.DNS)) || len(ca.cert.PermittedIPRanges) != len(c.IPs) {
		return false
	}
	for i, a := range c.IPs {
		if ca.cert.PermittedIPRanges[i].String() != ipNet(a).String() {
			return false
		}
	}
	return true
}

// leaf returns a certificate for host (a canonical host: a name, a dotted
// IPv4 address or a bracketed IPv6 one), from the cache while it has more
// than leafRenewBefore left.
func (ca *CA) leaf(host string) (*tls.Certificate, error) {
	now := ca.now()
	ca.mu.Lock()
	if el, ok := ca.leaves[host]; ok {
		e := el.Value.(*leafEntry)
		if e.cert.Leaf.NotAfter.Sub(now) > leafRenewBefore {
			ca.lru.MoveToFront(el)
			ca.mu.Unlock()
			return e.cert, nil
		}
	}
	ca.mu.Unlock()
	c, err := ca.issue(host, now)
	if err != nil {
		return nil, err
	}
	ca.mu.Lock()
	defer ca.mu.Unlock()
	if el, ok := ca.leaves[host]; ok {
		el.Value = &leafEntry{host: host, cert: c}
		ca.lru.MoveToFront(el)
	} else {
		ca.leaves[host] = ca.lru.PushFront(&leafEntry{host: host, cert: c})
		ca.evict()
	}
	return c, nil
}

func (ca *CA) evict() {
	for ca.lru.Len() > ca.max {
		el := ca.lru.Back()
		ca.lru.Remove(el)
		delete(ca.leaves, el.Value.(*leafEntry).host)
	}
}

func (ca *CA) cached() int {
	ca.mu.Lock()
	defer ca.mu.Unlock()
	return ca.lru.Len()
}

// issue signs a new leaf for host with a fresh P-256 key, valid for
// LeafLifetime and never past the CA.
func (ca *CA) issue(host string, now time.Time) (*tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("egress: leaf key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: trimBrackets(host)},
		NotBefore:      now.Add(-leafBackdate),
		NotAfter:       now.Add(LeafLifetime),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: ca.cert.SubjectKeyId,
	}
	if tmpl.NotAfter.After(ca.cert.NotAfter) {
		tmpl.NotAfter = ca.cert.NotAfter
	}
	if a, err := netip.ParseAddr(trimBrackets(host)); err == nil {
		tmpl.IPAddresses = []net.IP{a.AsSlice()}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("egress: sign leaf for %s: %w", host, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

func randomSerial() (*big.Int, error) {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("egress: serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func ipNet(a netip.Addr) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(a.BitLen(), a.BitLen())}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// InterceptPatterns are the hosts whose CONNECT tunnels the proxy
// terminates (egress.intercept): an exact canonical host
// ("api.github.com", "127.0.0.1", "[2001:db8::1]"), a name and every
// name under it ("*.github.com": "api.github.com", "a.b.github.com", not
// "github.com"), or "*" (every host). A port never appears: a pattern
// covers the host on every port CONNECT may reach.
type InterceptPatterns struct {
	all      bool
	exact    map[string]bool
	suffixes []string // ".github.com"
	list     []string
}

// ParseInterceptPatterns validates ps. Patterns must be canonical (lower
// case A-labels, addresses in their one spelling): nothing is cleaned.
func ParseInterceptPatterns(ps []string) (*InterceptPatterns, error) {
	out := &InterceptPatterns{exact: map[string]bool{}}
	for i, p := range ps {
		if p == "*" {
			out.all = true
			out.list = append(out.list, p)
			continue
		}
		name, wild := strings.CutPrefix(p, "*.")
		host, err := canonicalHost(name)
		if err != nil || host != name || strings.Contains(name, ":") && !strings.HasPrefix(name, "[") {
			return nil, fmt.Errorf("egress.intercept[%d]: %q is not a canonical host or *.name pattern", i, p)
		}
		_, addrErr := netip.ParseAddr(trimBrackets(host))
		if wild && (addrErr == nil || !strings.Contains(host, ".")) {
			return nil, fmt.Errorf("egress.intercept[%d]: %q: a wildcard covers the names under a domain of at least two labels", i, p)
		}
		if wild {
			out.suffixes = append(out.suffixes, "."+host)
		} else {
			out.exact[host] = true
		}
		out.list = append(out.list, p)
	}
	return out, nil
}

// Match reports whether CONNECTs to host (canonical, without port) are
// intercepted.
func (ip *InterceptPatterns) Match(host string) bool {
	if ip == nil {
		return false
	}
	if ip.all || ip.exact[host] {
		return true
	}
	for _, s := range ip.suffixes {
		if strings.HasSuffix(host, s) {
			return true
		}
	}
	return false
}

// Empty reports whether nothing is intercepted.
func (ip *InterceptPatterns) Empty() bool { return ip == nil || len(ip.list) == 0 }

// Constraints are the name constraints of a CA for these patterns.
func (ip *InterceptPatterns) Constraints() Constraints {
	c := Constraints{All: ip.all}
	if ip.all {
		return c
	}
	for h := range ip.exact {
		if a, err := netip.ParseAddr(trimBrackets(h)); err == nil {
			c.IPs = append(c.IPs, a)
		} else {
			c.DNS = append(c.DNS, h)
		}
	}
	for _, s := range ip.suffixes {
		c.DNS = append(c.DNS, s[1:])
	}
	slices.Sort(c.DNS)
	c.DNS = slices.Compact(c.DNS)
	slices.SortFunc(c.IPs, func(a, b netip.Addr) int { return a.Compare(b) })
	return c
}

// fingerprint is the SHA-256 of a certificate, in hex: the sealed CA key
// is bound to its certificate by it.
func fingerprint(der []byte) string {
	s := sha256.Sum256(der)
	return hex.EncodeToString(s[:])
}
