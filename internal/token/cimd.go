package token

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
)

// Limits on fetching Client ID Metadata Documents.
const (
	// MaxClientMetadataSize bounds a metadata document (the draft
	// suggests 5 KiB).
	MaxClientMetadataSize = 5 << 10
	// DefaultMetadataFetchTimeout bounds one fetch, connection included.
	DefaultMetadataFetchTimeout = 5 * time.Second
	// metadataDefaultCache is how long a document without caching headers
	// is kept; metadataMaxCache the longest any is.
	metadataDefaultCache = 5 * time.Minute
	metadataMaxCache     = 24 * time.Hour
	// metadataCacheEntries bounds the cache.
	metadataCacheEntries = 1024
)

// MetadataFetch configures how Client ID Metadata Documents are fetched.
type MetadataFetch struct {
	// AllowPrivate lets documents be fetched from loopback, private and
	// link-local addresses, and over plain http from loopback (tests,
	// a lab); never in production.
	AllowPrivate bool
	// Timeout bounds one fetch (default DefaultMetadataFetchTimeout).
	Timeout time.Duration
	// Transport, if set, replaces the transport (its dialer must do the
	// address checks itself).
	Transport http.RoundTripper
}

// cimdFetcher fetches, checks and caches Client ID Metadata Documents.
type cimdFetcher struct {
	cfg   MetadataFetch
	http  *http.Client
	now   func() time.Time
	onBad func(ctx context.Context, clientID string, err error)

	mu    sync.Mutex
	cache map[string]cimdEntry
}

type cimdEntry struct {
	client *Client
	until  time.Time
}

func newCIMDFetcher(cfg MetadataFetch, now func() time.Time, onBad func(context.Context, string, error)) *cimdFetcher {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultMetadataFetchTimeout
	}
	rt := cfg.Transport
	if rt == nil {
		d := &net.Dialer{Timeout: cfg.Timeout, Control: addressGuard(cfg.AllowPrivate)}
		rt = &http.Transport{
			Proxy: nil, DialContext: d.DialContext, TLSHandshakeTimeout: cfg.Timeout,
			ResponseHeaderTimeout: cfg.Timeout, MaxResponseHeaderBytes: 16 << 10, DisableCompression: true,
			MaxIdleConns: 16, IdleConnTimeout: time.Minute,
		}
	}
	return &cimdFetcher{
		cfg: cfg, now: now, onBad: onBad, cache: make(map[string]cimdEntry),
		http: &http.Client{Transport: rt, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
}

// addressGuard refuses connections to loopback, private, link-local,
// unspecified, multicast and shared (CGNAT) addresses unless allowed. It
// runs on the address actually dialled, after name resolution, so a name
// that resolves to an internal address is refused too.
func addressGuard(allowPrivate bool) func(network, address string, _ syscall.RawConn) error {
	return func(network, address string, _ syscall.RawConn) error {
		ap, err := netip.ParseAddrPort(address)
		if err != nil {
			return fmt.Errorf("metadata fetch: bad address %q", address)
		}
		if !allowPrivate && internalAddr(ap.Addr()) {
			return fmt.Errorf("metadata fetch: %s is an internal address", ap.Addr())
		}
		return nil
	}
}

var sharedAddrSpace = netip.MustParsePrefix("100.64.0.0/10")

func internalAddr(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsUnspecified() || a.IsMulticast() || a.IsInterfaceLocalMulticast() || sharedAddrSpace.Contains(a)
}

// checkMetadataURL checks a client ID that is a metadata document URL:
// https (http only for a loopback host when AllowPrivate), a host, a path
// other than "/", no user info, fragment, "." or ".." segments. It is
// compared byte for byte with the document's client_id, so it must be in
// canonical form already.
func (f *cimdFetcher) checkMetadataURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return errors.New("the client_id is not a URL")
	}
	switch {
	case u.Scheme == "http" && !(f.cfg.AllowPrivate && isLoopbackHost(u.Hostname())):
		return errors.New("a client metadata document must be served over https")
	case u.Scheme != "https" && u.Scheme != "http":
		return errors.New("a client metadata document URL must be https")
	case u.Host == "" || u.User != nil || u.Fragment != "" || strings.Contains(raw, "#"):
		return errors.New("a client metadata document URL needs a host and no user info or fragment")
	case u.Host != strings.ToLower(u.Host) || strings.Contains(raw, "%"):
		return errors.New("a client metadata document URL must have a lower-case host and no percent-encoding")
	case u.Path == "" || u.Path == "/":
		return errors.New("a client metadata document URL must have a path")
	case u.String() != raw:
		return errors.New("the client_id URL is not in canonical form")
	}
	for _, seg := range strings.Split(u.Path, "/")[1:] {
		if seg == "." || seg == ".." {
			return errors.New("a client metadata document URL must not have \".\" or \"..\" segments")
		}
	}
	return nil
}

func isLoopbackHost(h string) bool {
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

// client returns the client whose metadata document is at clientID, from
// the cache while it is fresh. Errors are *ClientError.
func (f *cimdFetcher) client(ctx context.Context, clientID string) (*Client, error) {
	now := f.now()
	f.mu.Lock()
	e, ok := f.cache[clientID]
	f.mu.Unlock()
	if ok && now.Before(e.until) {
		return e.client, nil
	}
	c, until, err := f.fetch(ctx, clientID)
	if err != nil {
		f.onBad(ctx, clientID, err)
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.cache) >= metadataCacheEntries {
		for k, v := range f.cache {
			if !now.Before(v.until) || len(f.cache) >= metadataCacheEntries {
				delete(f.cache, k)
			}
		}
	}
	if now.Before(until) {
		f.cache[clientID] = cimdEntry{client: c, until: until}
	}
	return c, nil
}

func (f *cimdFetcher) fetch(ctx context.Context, clientID string) (*Client, time.Time, error) {
	if err := f.checkMetadataURL(clientID); err != nil {
		return nil, time.Time{}, clientErr(nil, "the client_id %q: %v", audit.Clip(clientID, 200), err)
	}
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, clientID, nil)
	if err != nil {
		return nil, time.Time{}, clientErr(err, "the client's metadata document cannot be fetched")
	}
	req.Header.Set("Accept", "application/json")
	resp, err := f.http.Do(req)
	if err != nil {
		return nil, time.Time{}, clientErr(err, "the client's metadata document could not be fetched (unreachable, too slow or at an internal address)")
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return nil, time.Time{}, clientErr(nil, "the client's metadata document URL redirects; it must be served directly")
	case resp.StatusCode != http.StatusOK:
		return nil, time.Time{}, clientErr(nil, "the client's metadata document answered HTTP %d", resp.StatusCode)
	}
	if mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type")); err != nil || mt != "application/json" {
		return nil, time.Time{}, clientErr(nil, "the client's metadata document is not application/json")
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxClientMetadataSize+1))
	if err != nil {
		return nil, time.Time{}, clientErr(err, "the client's metadata document could not be read in time")
	}
	if len(body) > MaxClientMetadataSize {
		return nil, time.Time{}, clientErr(nil, "the client's metadata document is larger than %d bytes", MaxClientMetadataSize)
	}
	md, err := parseClientMetadata(body, true)
	if err != nil {
		return nil, time.Time{}, clientErr(err, "the client's metadata document is refused: %s", AsRegistrationError(err).Description)
	}
	if md.ClientID != clientID {
		return nil, time.Time{}, clientErr(nil, "the client's metadata document names another client_id than its own URL")
	}
	c := &Client{ID: clientID, Name: md.ClientName, URI: md.ClientURI, RedirectURIs: md.RedirectURIs}
	return c, cacheUntil(f.now(), resp.Header, metadataDefaultCache, metadataMaxCache), nil
}
