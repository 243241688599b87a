// Package server is the one place that wires mandate together: it turns a
// typed Config (loaded from a strict YAML file, MANDATE_* environment
// variables and flags; see LoadConfig) into running listeners, stores and
// background work. New builds everything; Run serves until its context ends
// and then shuts everything down.
//
// A server has two listeners: the main HTTP listener (TCP, TLS required
// unless it is loopback-only) with the OAuth endpoints, the admin API behind
// admin bearer tokens, /healthz, /readyz and /metrics; and the local admin
// socket <data_dir>/admin.sock (mode 0600) whose callers are local admins.
package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/mandatehq/mandate/internal/admin"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/gateway/mcpproxy"
	"github.com/mandatehq/mandate/internal/httpapi"
	"github.com/mandatehq/mandate/internal/seal"
	"github.com/mandatehq/mandate/internal/store"
	"github.com/mandatehq/mandate/internal/task/lifecycle"
	"github.com/mandatehq/mandate/internal/token"
	"github.com/mandatehq/mandate/internal/web"
)

// Timeouts and limits of the HTTP servers.
const (
	readHeaderTimeout = 10 * time.Second
	readTimeout       = time.Minute
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	// shutdownTimeout bounds a graceful shutdown: requests still running
	// after it are cut off.
	shutdownTimeout = 10 * time.Second
	// readyTimeout bounds the store ping behind /readyz.
	readyTimeout = 2 * time.Second
	// expiryInterval is how often finished-by-time tasks are marked expired.
	expiryInterval = 30 * time.Second
	// maxSocketPath is the longest unix socket path every supported OS
	// accepts (sun_path is 104 bytes on the BSDs, 108 on Linux).
	maxSocketPath = 103
)

// Server is a wired mandate server. Create it with New; then call Run once
// (or Close, to release what New acquired without serving).
type Server struct {
	cfg       Config
	log       *slog.Logger
	publicURL string

	backend store.Backend
	tcp     net.Listener
	sock    net.Listener
	httpSrv *http.Server // main listener
	sockSrv *http.Server // admin socket
	metrics *prometheus.Registry
	authz   *token.Server     // the OAuth authorization server
	acc     *accessLayer      // policies and the decision pipeline
	mcp     *mcpproxy.Gateway // the MCP gateway, when upstreams are configured
	egress  *egressProxy      // the egress proxy, when egress.listen is set
	pages   *web.Server       // sign-in, consent and /me
	ledger  *audit.Ledger
	sealer  *seal.Keyring // seals the keys kept in the store
	// lostLedger is the ledger, for the store's OnLost hook, which may run
	// on the store's watcher before New has finished.
	lostLedger atomic.Pointer[audit.Ledger]

	approvals *approvalsLayer // held actions and their approvals (approvals.go)

	// background are the subsystems that run beside the listeners under
	// Run's group; each returns when its context ends.
	background []func(context.Context) error

	closeOnce sync.Once
	closeErr  error
}

// New validates cfg, creates the data directory, claims the admin socket,
// opens the store, binds the main listener and builds every handler. The
// caller must call Run or Close.
func New(ctx context.Context, cfg Config) (_ *Server, err error) {
	cfg.complete(os.Getenv)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid configuration:\n%w", err)
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Server{cfg: cfg, log: log, sock: cfg.AdminListener}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()

	if err := ensureDataDir(cfg.DataDir, log); err != nil {
		return nil, err
	}
	// The socket first: it tells us whether another server owns this data
	// directory before we touch its store.
	if s.sock == nil {
		if s.sock, err = listenSocket(SocketPath(cfg.DataDir)); err != nil {
			return nil, err
		}
	}
	var unsealable func(error) error
	if s.sealer, unsealable, err = openSealer(&cfg); err != nil {
		return nil, err
	}
	defer func() { err = unsealable(err) }()
	// A store lost under the last server stops the start before the
	// store is opened: opening it replays what the path now holds.
	lost, err := s.checkLostMark()
	if err != nil {
		return nil, err
	}
	if s.backend, err = store.OpenWith(ctx, cfg.Store, store.Options{OnLost: s.storeLost, RefuseLeftoverWAL: lost != nil}); err != nil {
		return nil, fmt.Errorf("open store %s: %w", redactDSN(cfg.Store), err)
	}
	if s.tcp, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen on %s: %w", cfg.Listen, err)
	}
	s.publicURL = cfg.PublicURL
	if s.publicURL == "" {
		s.publicURL = derivePublicURL(cfg.Listen, s.tcp.Addr(), cfg.TLS.Enabled())
	}

	// Domain services. One revocation state is shared by the token layer
	// (which checks it on every verification) and the admin service (which
	// updates it in the same request that suspends an agent or ends a task).
	ledger, err := s.openLedger(ctx)
	if err != nil {
		return nil, err
	}
	s.ledger = ledger
	s.lostLedger.Store(ledger)
	if err := s.checkAnchor(ctx, ledger, lost); err != nil {
		return nil, err
	}
	var recorder audit.Recorder = ledger
	revocations := token.NewRevocations(nil)
	if err := revocations.Load(ctx, s.backend, s.backend, s.backend, time.Now()); err != nil {
		return nil, fmt.Errorf("load revocation state: %w", err)
	}
	// One task lifecycle for the token server and the admin API: one order
	// of operations for starting and stopping tasks, one retry queue.
	stops := &stopHook{} // secrets.go: the gateway and the broker, once built
	tasks, err := lifecycle.New(lifecycle.Config{Tasks: s.backend, Recorder: recorder, Revoker: revocations, OnStop: stops, Logger: log.With("component", "tasks")})
	if err != nil {
		return nil, err
	}
	federation, err := federatedIssuers(cfg.Federation.Issuers, s.publicURL)
	if err != nil {
		return nil, err
	}
	clients, err := clientRules(cfg.OAuth.Clients)
	if err != nil {
		return nil, err
	}
	authz, err := token.NewServer(ctx, token.Config{
		Grants: s.backend, Clients: clients, Registration: cfg.OAuth.Registration,
		MetadataFetch:   token.MetadataFetch{AllowPrivate: cfg.OAuth.MetadataAllowPrivate, Transport: cfg.OAuth.MetadataTransport},
		Issuer:          s.publicURL,
		Audiences:       mcpAudiences(&cfg.MCP, s.publicURL),
		TrustDomain:     cfg.TrustDomain,
		AgentTokenTTL:   cfg.Tokens.AgentTTL,
		TaskTokenTTL:    cfg.Tokens.TaskTTL,
		RotateEvery:     cfg.Tokens.KeyRotation,
		MaxTaskLifetime: cfg.Tasks.MaxTTL,
		DefaultTaskTTL:  cfg.Tasks.DefaultTTL,
		Federation:      federation,
		Identities:      s.backend, Tasks: s.backend, Entitlements: s.backend, Tokens: s.backend, Audit: recorder, Sealer: s.sealer,
		Revocations: revocations, Lifecycle: tasks,
		Logger: log.With("component", "oauth"),
	})
	if err != nil {
		return nil, fmt.Errorf("authorization server: %w", err)
	}
	s.authz = authz
	adminSvc, err := admin.New(admin.Config{
		Agents: s.backend, Tasks: s.backend, Entitlements: s.backend, Recorder: recorder, Revoker: revocations, Lifecycle: tasks,
		TrustDomain:    cfg.TrustDomain,
		DefaultTaskTTL: cfg.Tasks.DefaultTTL, MaxTaskTTL: cfg.Tasks.MaxTTL,
		Logger: log.With("component", "admin"),
	})
	if err != nil {
		return nil, err
	}
	approvals, err := newApprovals(ctx, cfg.Approvals, s, recorder, adminSvc)
	if err != nil {
		return nil, err
	}
	s.approvals = approvals
	acc, err := newAccessLayer(ctx, cfg, s.backend, authz, recorder, approvals.svc, approvals.denials, log)
	if err != nil {
		return nil, err
	}
	s.acc = acc
	approvals.engine.Store(acc.engine)
	broker, err := s.newSecrets(ctx, stops, acc.pipeline, recorder, log.With("component", "secrets"))
	if err != nil {
		return nil, err
	}
	s.background = append(s.background,
		acc.run, // policy directory polling
		func(ctx context.Context) error { return acc.pipeline.RunUsageFlush(ctx, 0) }, // budget usage to the store
		authz.Run, // signing key rotation, pruning of used jtis and revocations
		tasks.Run, // task stops the store or the ledger could not take at once
		func(ctx context.Context) error { return adminSvc.RunExpiry(ctx, expiryInterval) },
		ledger.Run, // checkpoints, retention, streaming sinks
	)

	// HTTP.
	s.metrics = newRegistry()
	s.metrics.MustRegister(ledger.Collectors()...)
	if m, ok := s.backend.(interface{ Collectors() []prometheus.Collector }); ok {
		s.metrics.MustRegister(m.Collectors()...) // the SQLite ledger journal's
	}
	s.metrics.MustRegister(acc.collectors()...)
	s.metrics.MustRegister(broker.Collectors()...)
	reqMetrics := newHTTPMetrics(s.metrics)
	adminAPI := httpapi.NewAdmin(httpapi.AdminConfig{Service: adminSvc, Ledger: ledger, Logger: log.With("component", "adminapi")})
	tokens, err := parseAdminTokens(cfg.Admin.TokenHashes)
	if err != nil {
		return nil, err
	}

	mux := http.NewServeMux()
	s.mountHealth(mux)
	mux.Handle("GET /metrics", metricsHandler(s.metrics))
	mux.Handle("/admin/", requireAdminToken(tokens, log, adminAPI))
	httpapi.NewOAuth(httpapi.OAuthConfig{
		Server: authz,
		// Admins may introspect and revoke any token with an admin token.
		AdminAuth: func(r *http.Request) bool {
			actor, _ := tokens.check(r)
			return len(tokens.hashes) > 0 && actor != ""
		},
		Logger: log.With("component", "oauthapi"),
	}).Register(mux)

	sockMux := http.NewServeMux()
	s.mountHealth(sockMux)
	sockMux.Handle("/admin/", localAdmin(adminAPI))
	acc.mount(mux, sockMux, s.publicURL, tokens, log)
	mountSecrets(broker, acc.pipeline, s.publicURL, mux, sockMux, tokens, log.With("component", "secretsapi"))
	approvals.mount(mux, sockMux, tokens, acc, adminSvc, s)
	if err := s.mountMCP(mux, sockMux, recorder, tokens, broker, stops); err != nil {
		return nil, err
	}
	s.mountEgressCA(mux, sockMux, tokens)
	if err := s.mountPeople(mux, sockMux, recorder, adminSvc); err != nil {
		return nil, err
	}

	s.httpSrv = s.newHTTPServer(reqMetrics.wrap("tcp", mux))
	s.sockSrv = s.newHTTPServer(reqMetrics.wrap("socket", sockMux))
	if cfg.TLS.Enabled() {
		cert, err := tls.LoadX509KeyPair(cfg.TLS.CertFile, cfg.TLS.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		s.httpSrv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if err := s.startEgress(recorder, broker); err != nil {
		return nil, err
	}

	if host, _, _ := net.SplitHostPort(cfg.Listen); !cfg.TLS.Enabled() && !isLoopback(host) {
		log.Warn("INSECURE: serving plain HTTP on a non-loopback address because allow_insecure_listen is set; "+
			"tokens and admin credentials cross the network in clear text unless a TLS-terminating proxy is the only client",
			"listen", s.tcp.Addr().String())
	}
	return s, nil
}

func (s *Server) newHTTPServer(h http.Handler) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// Addr returns the main listener's address (useful with port 0).
func (s *Server) Addr() net.Addr { return s.tcp.Addr() }

// PublicURL returns the server's public base URL, the OAuth issuer.
func (s *Server) PublicURL() string { return s.publicURL }

// SocketPath returns the admin socket's path.
func (s *Server) SocketPath() string { return SocketPath(s.cfg.DataDir) }

// AdminAddr returns the address the admin API is served on: the admin
// socket's, or Config.AdminListener's.
func (s *Server) AdminAddr() net.Addr { return s.sock.Addr() }

// Run serves until ctx ends or a subsystem fails, then shuts down
// gracefully (in-flight requests get up to shutdownTimeout) and releases
// everything New acquired. It returns nil after a shutdown caused by ctx.
func (s *Server) Run(ctx context.Context) error {
	defer s.Close()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		var err error
		if s.httpSrv.TLSConfig != nil {
			err = s.httpSrv.ServeTLS(s.tcp, "", "")
		} else {
			err = s.httpSrv.Serve(s.tcp)
		}
		if errors.Is(err, http.ErrServerClosed) {
			return nil
		}
		return fmt.Errorf("http listener: %w", err)
	})
	g.Go(func() error {
		if err := s.sockSrv.Serve(s.sock); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("admin socket: %w", err)
		}
		return nil
	})
	g.Go(s.serveEgress)
	// Background work (usage flushing, checkpoints, retention, sinks)
	// outlives the listeners: it stops only once every request has been
	// answered and the MCP gateway has recorded its last outcomes, so that
	// the final usage flush and checkpoint see every event.
	bctx, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	for _, run := range s.background {
		g.Go(func() error { return run(bctx) })
	}
	g.Go(func() error {
		<-gctx.Done()
		defer stopBackground()
		s.log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
		defer cancel()
		// The MCP gateway ends its sessions as their calls finish, which
		// also ends their long-lived streams, which the HTTP servers'
		// Shutdown would otherwise wait out.
		var mcpErr, egressErr error
		var wg sync.WaitGroup
		if s.mcp != nil {
			wg.Go(func() { mcpErr = s.mcp.Shutdown(sctx) })
		}
		wg.Go(func() { egressErr = s.shutdownEgress(sctx) })
		var errs []error
		for _, srv := range []*http.Server{s.httpSrv, s.sockSrv} {
			if err := srv.Shutdown(sctx); err != nil {
				errs = append(errs, err, srv.Close())
			}
		}
		wg.Wait()
		return errors.Join(append(errs, mcpErr, egressErr)...)
	})
	s.log.Info("mandate serving", "listen", s.tcp.Addr().String(), "public_url", s.publicURL,
		"admin_socket", s.AdminAddr().String(), "store", redactDSN(s.cfg.Store), "trust_domain", s.cfg.TrustDomain,
		"tls", s.cfg.TLS.Enabled())
	err := g.Wait()
	if err != nil {
		s.log.Error("server stopped", "err", err)
		return err
	}
	s.log.Info("server stopped")
	return nil
}

// Close releases the listeners and the store. Run calls it; call it
// directly only for a server that is not run.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		closers := []io.Closer{s.tcp, s.sock}
		if s.egress != nil {
			closers = append(closers, s.egress.ln)
		}
		for _, c := range closers {
			if c != nil {
				if err := c.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
					errs = append(errs, err)
				}
			}
		}
		if s.mcp != nil {
			errs = append(errs, s.mcp.Close())
		}
		if s.ledger != nil {
			// Its sinks, if the server never ran (Run closes them).
			errs = append(errs, s.ledger.Close())
		}
		if s.backend != nil {
			errs = append(errs, s.backend.Close())
		}
		s.closeErr = errors.Join(errs...)
	})
	return s.closeErr
}

func (s *Server) mountHealth(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readyTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := s.backend.Ping(ctx); err != nil {
			s.log.Warn("readiness check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = io.WriteString(w, readyReason(err)+"\n")
			return
		}
		_, _ = io.WriteString(w, "ok\n")
	})
}

// ensureDataDir creates dir with mode 0700, and warns if an existing one is
// readable by others.
func ensureDataDir(dir string, log *slog.Logger) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	st, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data directory: %w", err)
	}
	if !st.IsDir() {
		return fmt.Errorf("data directory %s is not a directory", dir)
	}
	if st.Mode().Perm()&0o077 != 0 {
		log.Warn("data directory is accessible by other users; mandate keeps its store there (chmod 700 it)",
			"dir", dir, "mode", st.Mode().Perm().String())
	}
	return nil
}

// listenSocket claims the admin socket at path: a stale socket (no server
// answering) is removed; a live one means another server owns the data
// directory.
func listenSocket(path string) (net.Listener, error) {
	if len(path) > maxSocketPath {
		return nil, fmt.Errorf("admin socket path %s is %d bytes, longer than the %d the OS allows: use a shorter data_dir", path, len(path), maxSocketPath)
	}
	if st, err := os.Lstat(path); err == nil {
		if st.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket: move it away", path)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			_ = c.Close()
			return nil, fmt.Errorf("another mandate server is running on data directory %s (its admin socket %s answers): stop it or use another --data-dir",
				filepath.Dir(path), path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale admin socket: %w", err)
		}
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	// The data directory is 0700, so the socket is never reachable by
	// others before this chmod.
	if err := os.Chmod(path, 0o600); err != nil {
		_ = ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	return ln, nil
}

// derivePublicURL builds the default public URL from the configured
// listen host (unless it is a wildcard) and the bound port.
func derivePublicURL(listen string, bound net.Addr, tlsOn bool) string {
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	host, _, _ := net.SplitHostPort(listen)
	_, port, _ := net.SplitHostPort(bound.String())
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "localhost"
	}
	return (&url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}).String()
}

// redactDSN hides a password in a store DSN for logs and errors.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		return u.Redacted()
	}
	return dsn
}

// federatedIssuers converts the configured issuers for the token layer,
// reading JWKS files now so that a bad file stops the start. A missing
// audience defaults to the public URL.
func federatedIssuers(cfg []FederationIssuer, publicURL string) ([]token.FederatedIssuer, error) {
	out := make([]token.FederatedIssuer, 0, len(cfg))
	for i, f := range cfg {
		fi := token.FederatedIssuer{Issuer: f.Issuer, JWKSURL: f.JWKSURL, Audience: f.Audience, PersonClaim: f.PersonClaim}
		if fi.Audience == "" {
			fi.Audience = publicURL
		}
		if f.JWKSFile != "" {
			b, err := readLimited(f.JWKSFile)
			if err != nil {
				return nil, fmt.Errorf("federation.issuers[%d].jwks_file: %w", i, err)
			}
			fi.JWKS = b
		}
		out = append(out, fi)
	}
	return out, nil
}
