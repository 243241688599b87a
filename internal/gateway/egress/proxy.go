package egress

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/policy"
	"github.com/mandatehq/mandate/internal/task"
)

// Point is the enforcement point name of the proxy's actions.
const Point = "egress"

// Limits of the proxy's listener.
const (
	// MaxHeaderBytes bounds the request line and headers of a request
	// (net/http answers 431 past it, before anything is decided).
	MaxHeaderBytes = 32 << 10
	// MaxHeaders bounds the header fields of a request: more is a
	// recorded 431.
	MaxHeaders = 100
	// readHeaderTimeout bounds how long a client may take to send a
	// request's head; idleTimeout how long a kept-alive connection waits.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
	// liveCheckInterval is how often open tunnels are checked against
	// their task: a tunnel of a task that ended or was revoked is closed.
	liveCheckInterval = time.Second
)

// DefaultConnectPorts are the ports CONNECT may reach unless
// Config.ConnectPorts says otherwise.
var DefaultConnectPorts = []uint16{443}

// Pipeline is what the proxy needs of access.Pipeline, which implements
// it: every decision is the pipeline's.
type Pipeline interface {
	Authenticate(ctx context.Context, cred access.Credential, act access.Action) (access.Subject, error)
	RefuseCredential(ctx context.Context, act access.Action, cause error) error
	DecideAs(ctx context.Context, subj access.Subject, act access.Action) (access.Decision, error)
	Active(taskID task.ID, agents []string) bool
}

var _ Pipeline = (*access.Pipeline)(nil)

// Config configures a Gateway.
type Config struct {
	// Pipeline authenticates and decides (required).
	Pipeline Pipeline
	// Audit records what the proxy itself refuses (a malformed request, a
	// CONNECT port) and the outcome of every allowed request (required).
	Audit audit.Recorder
	// Resolver resolves host names; nil is net.DefaultResolver.
	Resolver Resolver
	// AllowPrivate are the otherwise refused address ranges (private,
	// loopback, link-local, ...) requests may go to. A cloud metadata
	// address is opened only by naming it as a single address.
	AllowPrivate []netip.Prefix
	// ConnectPorts are the ports CONNECT may reach; nil is
	// DefaultConnectPorts.
	ConnectPorts []uint16
	// Intercept are the hosts whose CONNECT tunnels the proxy terminates
	// with a certificate of CA, deciding each request inside by method
	// and path; nil intercepts nothing (tunnels are opaque).
	Intercept *InterceptPatterns
	// CA issues the intercepted hosts' certificates (required when
	// Intercept is not empty).
	CA *CA
	// UpstreamRoots verify the certificates of intercepted hosts; nil is
	// the system's roots.
	UpstreamRoots *x509.CertPool
	// Secrets leases the secrets that requests name by placeholder
	// ("[secret:NAME]" in a header); nil refuses every placeholder.
	Secrets Secrets
	// Digester is the ledger's HMAC of injected values (required with
	// Secrets).
	Digester Digester
	// Logger receives the proxy's logs; nil discards them.
	Logger *slog.Logger
}

// Gateway is the egress proxy: an http.Handler for a listener of its own
// (Serve). It is safe for concurrent use.
type Gateway struct {
	cfg       Config
	log       *slog.Logger
	addrs     addressPolicy
	dialer    *net.Dialer
	transport *http.Transport
	forwarder *httputil.ReverseProxy
	srv       *http.Server

	// idPrefix and seq make request IDs, which tie a request's decision
	// to its outcome in the ledger.
	idPrefix string
	seq      atomic.Uint64

	tunnels tunnels
	// scrubs are the values injected for each task, scrubbed from every
	// response to it.
	scrubs scrubs
	// leases are the deliveries of live leases, reused by requests.
	leases leaseCache
	// outcomes are the outcome records still being written.
	outcomes outcomes
	// sessions resumes TLS sessions with intercepted hosts.
	sessions tls.ClientSessionCache
}

// New returns a Gateway.
func New(cfg Config) (*Gateway, error) {
	if cfg.Pipeline == nil || cfg.Audit == nil {
		return nil, errors.New("egress: a pipeline and an audit recorder are required")
	}
	if !cfg.Intercept.Empty() && cfg.CA == nil {
		return nil, errors.New("egress: interception needs a CA")
	}
	if cfg.Secrets != nil && cfg.Digester == nil {
		return nil, errors.New("egress: secret injection needs the ledger's digester")
	}
	if cfg.Resolver == nil {
		cfg.Resolver = net.DefaultResolver
	}
	if cfg.ConnectPorts == nil {
		cfg.ConnectPorts = DefaultConnectPorts
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Gateway{cfg: cfg, log: log, addrs: addressPolicy{allow: cfg.AllowPrivate},
		dialer: &net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}, idPrefix: rand.Text()[:10],
		sessions: tls.NewLRUClientSessionCache(256), outcomes: outcomes{slots: make(chan struct{}, maxOutcomesInFlight)}}
	g.transport = &http.Transport{
		// Never another proxy from the environment: the proxy connects
		// to the addresses it checked.
		Proxy:                  nil,
		DialContext:            g.dialForward,
		MaxIdleConns:           256,
		MaxIdleConnsPerHost:    64,
		IdleConnTimeout:        90 * time.Second,
		DisableCompression:     true, // bodies pass through as they are
		MaxResponseHeaderBytes: 1 << 20,
	}
	g.forwarder = &httputil.ReverseProxy{Rewrite: rewrite, Transport: g.transport, ErrorHandler: g.forwardError, BufferPool: &bufferPool{},
		ModifyResponse: modifyResponse,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	g.srv = &http.Server{
		Handler:           g,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnContext:       withConnAuth,
		// HTTP/1.1 only: CONNECT tunnels are hijacked connections.
		TLSNextProto: map[string]func(*http.Server, *tls.Conn, http.Handler){},
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return g, nil
}

// Serve accepts proxy connections on ln (a TLS listener, if the proxy is
// reached over the network) until Shutdown; it returns
// http.ErrServerClosed after Shutdown.
func (g *Gateway) Serve(ln net.Listener) error {
	stop := make(chan struct{})
	defer close(stop)
	go g.watchTunnels(stop)
	return g.srv.Serve(ln)
}

// Shutdown stops accepting requests, waits (up to ctx) for the requests
// in flight, then closes the open tunnels and waits for every outcome to
// be recorded.
func (g *Gateway) Shutdown(ctx context.Context) error {
	err := g.srv.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, g.srv.Close())
	}
	g.tunnels.closeAll("shutdown")
	g.tunnels.wait()
	g.outcomes.wg.Wait()
	g.transport.CloseIdleConnections()
	return err
}

// ServeHTTP handles one proxy request: a CONNECT or an absolute-form
// plain HTTP request.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	t, terr := parseRequest(r)
	act := access.Action{Kind: policy.ActionHTTPRequest, Point: Point, RequestID: g.requestID()}
	if t != nil {
		act.Resource, act.Destination = t.resource, t.dest
	} else {
		act.Resource = ledgerResource(r)
		act.Destination = policy.Destination{Method: r.Method}
	}
	subj, ok := g.authenticate(w, r, act)
	if !ok {
		return
	}
	if terr != nil {
		status := http.StatusBadRequest
		if errors.Is(terr, errTooLong) {
			status = http.StatusRequestURITooLong
		}
		g.refuse(w, r, subj, act, status, terr.Error())
		return
	}
	if n := headerCount(r.Header); n > MaxHeaders {
		g.refuse(w, r, subj, act, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("%d header fields; at most %d", n, MaxHeaders))
		return
	}
	if r.Method == http.MethodConnect && !slices.Contains(g.cfg.ConnectPorts, t.port) {
		g.refuse(w, r, subj, act, http.StatusForbidden, fmt.Sprintf("CONNECT to port %d is not allowed (egress.connect_ports: %s)", t.port, portList(g.cfg.ConnectPorts)))
		return
	}
	if r.Method != http.MethodConnect && r.Header.Get("Upgrade") != "" {
		g.refuse(w, r, subj, act, http.StatusBadRequest, "protocol upgrades are not relayed over plain HTTP (use CONNECT)")
		return
	}
	d, err := g.cfg.Pipeline.DecideAs(r.Context(), subj, act)
	if !g.enforce(w, r, d, err) {
		return
	}
	if !g.noObligations(w, r, subj, act, d, start) {
		return
	}
	if r.Method == http.MethodConnect {
		g.tunnel(w, r, subj, act, t, start)
		return
	}
	g.forward(g.forwarder, w, r, subj, act, t, start)
}

// noObligations refuses (and records) an allow that comes with
// obligations: one the proxy cannot honour as the policy asks is not
// carried out (fail closed).
func (g *Gateway) noObligations(w http.ResponseWriter, r *http.Request, subj access.Subject, act access.Action, d access.Decision, start time.Time) bool {
	if len(d.Obligations) == 0 {
		return true
	}
	reason := fmt.Sprintf("the policy's obligations %v are not supported by the egress proxy", d.Obligations)
	g.recordOutcome(r.Context(), subj, act, audit.Outcome{Status: outcomeRefused, Error: reason, Duration: time.Since(start)}, nil)
	problem(w, http.StatusForbidden, "denied", reason)
	return false
}

// parseRequest reads the target of r, if it can.
func parseRequest(r *http.Request) (*target, error) {
	if len(r.RequestURI) > MaxRequestTarget {
		return nil, fmt.Errorf("%w: longer than %d bytes", errTooLong, MaxRequestTarget)
	}
	if r.Method == http.MethodConnect {
		return parseConnect(r.RequestURI)
	}
	if r.ProtoMajor != 1 {
		return nil, fmt.Errorf("%w: HTTP/%d.%d; the proxy speaks HTTP/1.x", errMalformed, r.ProtoMajor, r.ProtoMinor)
	}
	return parseAbsolute(r.Method, r.RequestURI)
}

// errTooLong marks a request target past MaxRequestTarget.
var errTooLong = fmt.Errorf("%w: request target too long", errMalformed)

// enforce answers a decision that is not an allow, and reports whether
// the request may proceed.
func (g *Gateway) enforce(w http.ResponseWriter, r *http.Request, d access.Decision, err error) bool {
	switch {
	case err == nil && d.Allowed():
		return true
	case errors.Is(err, audit.ErrUnavailable), errors.Is(err, access.ErrAuthUnavailable):
		unavailable(w, g.log, err)
	case errors.Is(err, access.ErrUnauthenticated):
		proxyAuthRequired(w, "the task is no longer active")
	case errors.Is(err, access.ErrInvalidAction):
		problem(w, http.StatusBadRequest, "invalid request", decisionText(d, err))
	case err != nil:
		unavailable(w, g.log, err)
	case len(d.Reasons) > 0 && d.Reasons[0].Policy == access.PolicyRateLimit:
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int((d.RetryAfter+time.Second-1)/time.Second))))
		problem(w, http.StatusTooManyRequests, "rate limited", decisionText(d, nil))
	case d.Effect == policy.ApprovalRequired:
		problem(w, http.StatusForbidden, "approval required", "approval required (the egress proxy does not hold requests for approval): "+decisionText(d, nil))
	default:
		problem(w, http.StatusForbidden, "denied", decisionText(d, nil))
	}
	return false
}

// requestID returns a new request ID: unique to this proxy's lifetime,
// unguessable across restarts.
func (g *Gateway) requestID() string {
	return "egress-" + g.idPrefix + "-" + strconv.FormatUint(g.seq.Add(1), 36)
}

func headerCount(h http.Header) int {
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	return n
}

func portList(ps []uint16) string {
	b := make([]byte, 0, 8*len(ps))
	for i, p := range ps {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendUint(b, uint64(p), 10)
	}
	return string(b)
}

// tunnels are the open CONNECT tunnels.
type tunnels struct {
	mu     sync.Mutex
	m      map[*tunnelConn]struct{}
	closed bool
	wg     sync.WaitGroup
}
