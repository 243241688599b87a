package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/egress"
	"github.com/mandatehq/mandate/internal/secrets"
)

// EgressConfig configures the HTTP egress proxy (on its own listener when
// Listen is set).
type EgressConfig struct {
	// Listen is the TCP address of the proxy's listener; empty disables
	// the proxy. A non-loopback address needs TLS (tls.cert, served on
	// this listener too) or allow_insecure_listen, as the main listener.
	Listen string
	// ConnectPorts are the ports CONNECT may reach.
	ConnectPorts []string
	// AllowPrivate are the CIDR prefixes (or single addresses) of
	// otherwise refused addresses (private, loopback, link-local, ...)
	// requests may go to.
	AllowPrivate []string
	// Intercept are the host patterns whose CONNECT tunnels the proxy
	// terminates with mandate's CA (see egress.ParseInterceptPatterns).
	Intercept []string
	// UpstreamCAFile holds PEM roots trusted besides the system's for
	// intercepted hosts' certificates.
	UpstreamCAFile string
}

// checkEgress validates the egress proxy's configuration.
func checkEgress(c *EgressConfig, tlsOn, allowInsecure bool) error {
	var errs []error
	if c.Listen != "" {
		if err := checkListen(c.Listen, tlsOn, allowInsecure); err != nil {
			errs = append(errs, fmt.Errorf("egress.%v", err))
		}
	}
	if _, err := c.ports(); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.prefixes(); err != nil {
		errs = append(errs, err)
	}
	if _, err := egress.ParseInterceptPatterns(c.Intercept); err != nil {
		errs = append(errs, err)
	}
	if _, err := c.upstreamRoots(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// upstreamRoots are the system's roots and UpstreamCAFile's; nil (the
// system's alone) when no file is set.
func (c *EgressConfig) upstreamRoots() (*x509.CertPool, error) {
	if c.UpstreamCAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.UpstreamCAFile)
	if err != nil {
		return nil, fmt.Errorf("egress.upstream_ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("egress.upstream_ca_file: %s holds no PEM certificate", c.UpstreamCAFile)
	}
	return pool, nil
}

func (c *EgressConfig) ports() ([]uint16, error) {
	out := make([]uint16, 0, len(c.ConnectPorts))
	for i, s := range c.ConnectPorts {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("egress.connect_ports[%d]: %q is not a port (1-65535)", i, s)
		}
		out = append(out, uint16(n))
	}
	return out, nil
}

func (c *EgressConfig) prefixes() ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(c.AllowPrivate))
	for i, s := range c.AllowPrivate {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, fmt.Errorf("egress.allow_private[%d]: %q is not a CIDR prefix or an address", i, s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p != p.Masked() {
			return nil, fmt.Errorf("egress.allow_private[%d]: %q has host bits set (write %s)", i, s, p.Masked())
		}
		out = append(out, p)
	}
	return out, nil
}

// egressProxy is the egress proxy and its listener.
type egressProxy struct {
	gw *egress.Gateway
	ln net.Listener
	ca *egress.CA // nil without interception
}

// startEgress builds the egress proxy over the pipeline and binds its
// listener (TLS when the main listener has it), when egress.listen is
// set. With egress.intercept, the interception CA is loaded from the
// data directory, or made there on the first start that needs it.
func (s *Server) startEgress(rec audit.Recorder, broker *secrets.Broker) error {
	c := s.cfg.Egress
	if c.Listen == "" {
		return nil
	}
	ports, err := c.ports()
	if err != nil {
		return err
	}
	allow, err := c.prefixes()
	if err != nil {
		return err
	}
	intercept, err := egress.ParseInterceptPatterns(c.Intercept)
	if err != nil {
		return err
	}
	roots, err := c.upstreamRoots()
	if err != nil {
		return err
	}
	var ca *egress.CA
	if !intercept.Empty() {
		var status egress.CAStatus
		if ca, status, err = egress.LoadCA(s.cfg.DataDir, s.sealer, intercept.Constraints(), time.Now()); err != nil {
			return err
		}
		if status != egress.CALoaded {
			s.log.Warn("egress interception CA "+string(status)+": clients must trust the new certificate (mandate egress ca)",
				"file", filepath.Join(s.cfg.DataDir, egress.CACertFile), "subject", ca.Certificate().Subject.CommonName,
				"not_after", ca.Certificate().NotAfter)
		}
	}
	gw, err := egress.New(egress.Config{
		Pipeline: s.acc.pipeline, Audit: rec, AllowPrivate: allow, ConnectPorts: ports,
		Intercept: intercept, CA: ca, UpstreamRoots: roots, Secrets: broker, Digester: s.ledger.Redactor(),
		Logger: s.log.With("component", "egress"),
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("egress: listen on %s: %w", c.Listen, err)
	}
	if s.httpSrv.TLSConfig != nil {
		ln = tls.NewListener(ln, &tls.Config{MinVersion: tls.VersionTLS12, Certificates: s.httpSrv.TLSConfig.Certificates,
			NextProtos: []string{"http/1.1"}}) // CONNECT tunnels are HTTP/1.1
	}
	if host, _, _ := net.SplitHostPort(c.Listen); s.httpSrv.TLSConfig == nil && !isLoopback(host) {
		s.log.Warn("INSECURE: the egress proxy takes task tokens in clear text on a non-loopback address because allow_insecure_listen is set",
			"listen", ln.Addr().String())
	}
	s.egress = &egressProxy{gw: gw, ln: ln, ca: ca}
	return nil
}

// mountEgressCA serves the interception CA's certificate (PEM) at GET
// /admin/v1/egress/ca on both listeners (an admin token on TCP, as
// every admin path), for `mandate egress ca`; 404 when interception is
// off.
func (s *Server) mountEgressCA(mux, sockMux *http.ServeMux, tokens adminTokens) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.egress == nil || s.egress.ca == nil {
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = w.Write([]byte(`{"type":"about:blank","title":"Not Found","status":404,"detail":"TLS interception is off (egress.listen and egress.intercept)"}` + "\n"))
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(s.egress.ca.CertPEM())
	})
	mux.Handle("GET /admin/v1/egress/ca", requireAdminToken(tokens, s.log, h))
	sockMux.Handle("GET /admin/v1/egress/ca", localAdmin(h))
}

// EgressAddr returns the egress proxy's address, or nil when it is off.
func (s *Server) EgressAddr() net.Addr {
	if s.egress == nil {
		return nil
	}
	return s.egress.ln.Addr()
}

// serveEgress serves the egress proxy until shutdownEgress.
func (s *Server) serveEgress() error {
	if s.egress == nil {
		return nil
	}
	if err := s.egress.gw.Serve(s.egress.ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("egress listener: %w", err)
	}
	return nil
}

// shutdownEgress stops the egress proxy: requests in flight finish (up
// to ctx), open tunnels are closed, and their outcomes recorded.
func (s *Server) shutdownEgress(ctx context.Context) error {
	if s.egress == nil {
		return nil
	}
	return s.egress.gw.Shutdown(ctx)
}
