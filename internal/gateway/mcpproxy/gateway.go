package mcpproxy

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/auth"
	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/modelcontextprotocol/go-sdk/oauthex"

	"github.com/mandatehq/mandate/internal/access"
	"github.com/mandatehq/mandate/internal/audit"
	"github.com/mandatehq/mandate/internal/fault"
	"github.com/mandatehq/mandate/internal/token"
	"github.com/mandatehq/mandate/internal/toolpin"
)

// Limits bound what the gateway accepts and how long it waits. Zero
// fields get the defaults below.
type Limits struct {
	// MaxMessageBytes bounds a downstream HTTP request body.
	MaxMessageBytes int64
	// MaxResultBytes bounds an upstream result relayed downstream.
	MaxResultBytes int
	// CallTimeout bounds each upstream call.
	CallTimeout time.Duration
	// ConnectTimeout bounds connecting to (or spawning) an upstream.
	ConnectTimeout time.Duration
	// SessionTimeout closes idle downstream sessions (and their upstream
	// sessions and processes).
	SessionTimeout time.Duration
	// Rate limits and the per-task call budget are not the gateway's:
	// they are decisions of the access pipeline (access.Limits of point
	// "mcp"), recorded like any other.
}

// Defaults for Limits.
const (
	DefaultMaxMessageBytes = 4 << 20
	DefaultMaxResultBytes  = 16 << 20
	DefaultCallTimeout     = 60 * time.Second
	DefaultConnectTimeout  = 30 * time.Second
	DefaultSessionTimeout  = 30 * time.Minute
)

func (l *Limits) fill() {
	def := func(p *time.Duration, v time.Duration) {
		if *p <= 0 {
			*p = v
		}
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if l.MaxResultBytes <= 0 {
		l.MaxResultBytes = DefaultMaxResultBytes
	}
	def(&l.CallTimeout, DefaultCallTimeout)
	def(&l.ConnectTimeout, DefaultConnectTimeout)
	def(&l.SessionTimeout, DefaultSessionTimeout)
}

// Config configures a Gateway.
type Config struct {
	// Upstreams are the MCP servers behind the gateway.
	Upstreams []Upstream
	// Authenticator verifies downstream credentials; required.
	Authenticator Authenticator
	// Decider decides every call; required.
	Decider Decider
	// Approvals holds approval_required calls; nil denies them with
	// "approval required".
	Approvals ApprovalWaiter
	// Credentials, if set, supply the secrets leased to a session's task
	// for each upstream it connects (secrets.go); nil delivers none.
	Credentials Credentials
	// Audit records every call, outcome and pinning change; required.
	Audit audit.Recorder
	// Redactor turns a call's arguments into what the ledger keeps: their
	// keyed digest, and the redacted arguments when a decision's
	// full_arguments obligation asks (the ledger's own, Ledger.Redactor,
	// so redact_fields applies). Nil keys one at random: digests then
	// correlate only within this process.
	Redactor *audit.Redactor
	// Pins pins the upstreams' tool definitions; the admin API approves
	// through the same Pins. Nil keeps pins in memory, recorded in Audit.
	Pins *toolpin.Pins
	// PublicURL is the externally visible base URL of the server the
	// gateway is mounted on (no trailing slash), for resource identifiers
	// and RFC 9728 metadata.
	PublicURL string
	// AuthorizationServers are the issuers advertised in the protected
	// resource metadata (mandate's own issuer).
	AuthorizationServers []string
	// Issuer is mandate's OAuth issuer, the audience of a task token
	// issued without a resource indicator; every endpoint accepts such a
	// token as well as one for its own resource URL. Default: PublicURL
	// (the gateway is mounted on mandate's server, whose public URL is
	// the issuer).
	Issuer string
	// BasePath is where the endpoints are mounted; default "/mcp".
	BasePath string
	Limits   Limits
	// HTTPClient reaches HTTP upstreams (default: a dedicated client).
	HTTPClient *http.Client
	Logger     *slog.Logger
}

// Gateway is the MCP gateway: an http.Handler serving one Streamable HTTP
// endpoint per upstream ({BasePath}/{name}) and an aggregated one
// ({BasePath}) whose tools and prompts are named "{upstream}__{name}",
// plus the RFC 9728 protected resource metadata for each. Each endpoint's
// resource identifier (Resources) is the audience it accepts, with the
// issuer: a task token issued for one upstream's endpoint (RFC 8707) is
// refused at every other. It is safe for concurrent use; Close stops
// every session and upstream process.
type Gateway struct {
	cfg     Config
	log     *slog.Logger
	ups     map[string]*Upstream
	names   []string
	pins    *toolpin.Pins
	clash   *collisions
	handler http.Handler
	httpc   *http.Client
	// relayers carry the raw relay's requests to each HTTP upstream, with
	// its headers. (Calling the transport directly spares http.Client's
	// per-request copying; the relay needs no redirects or cookies.)
	relayers map[string]http.RoundTripper
	relaySeq atomic.Uint64
	stateKey [32]byte    // binds requestStates to their task and call (requeststate.go)
	proto    *mcp.Server // answers the SDK's per-request questions (see routes)
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	// idle hands work to a goroutine that async started and that waits
	// for more; waiting counts those goroutines, workers all of them.
	idle     chan func()
	waiting  atomic.Int32
	workers  sync.WaitGroup
	mu       sync.Mutex
	sessions map[*session]struct{}
	byID     map[string]*session // initialized sessions by downstream session id
	byTask   map[string]*session // task sessions (sessionless.go) by endpoint and principal
	draining bool                // Shutdown has begun: no new sessions
}

// fillURLs fills the defaults of the URLs the gateway's resource
// identifiers are made of.
func (c *Config) fillURLs() {
	if c.BasePath == "" {
		c.BasePath = "/mcp"
	}
	c.BasePath = "/" + strings.Trim(c.BasePath, "/")
	c.PublicURL = strings.TrimSuffix(c.PublicURL, "/")
	if c.Issuer == "" {
		c.Issuer = c.PublicURL
	}
}

// Resources returns the resource identifiers (RFC 8707, RFC 9728) of the
// endpoints a gateway with cfg serves: the aggregated endpoint's,
// PublicURL+BasePath, then each upstream's, PublicURL+BasePath+"/"+name,
// in name order. They are what the gateway advertises in its protected
// resource metadata, and the audiences, besides the issuer, that
// mandate's authorization server issues task tokens for.
func Resources(cfg Config) []string {
	cfg.fillURLs()
	names := make([]string, 0, len(cfg.Upstreams))
	for _, u := range cfg.Upstreams {
		names = append(names, u.Name)
	}
	slices.Sort(names)
	out := []string{cfg.PublicURL + cfg.BasePath}
	for _, n := range names {
		out = append(out, cfg.PublicURL+cfg.BasePath+"/"+n)
	}
	return out
}

// New builds a gateway. It does not contact upstreams: each downstream
// session connects to its upstreams when it initializes.
func New(cfg Config) (*Gateway, error) {
	if cfg.Authenticator == nil || cfg.Decider == nil || cfg.Audit == nil {
		return nil, errors.New("mcpproxy: gateway needs an authenticator, a decider and an audit recorder")
	}
	cfg.fillURLs()
	cfg.Limits.fill()
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Pins == nil {
		cfg.Pins = toolpin.New(toolpin.Config{Store: toolpin.NewMemoryStore(), Audit: cfg.Audit, Log: cfg.Logger})
	}
	if cfg.Redactor == nil {
		key := make([]byte, 32)
		_, _ = rand.Read(key) // crypto/rand.Read never fails (Go 1.24+)
		cfg.Redactor = audit.NewRedactor(key, nil)
	}
	g := &Gateway{
		cfg: cfg, log: cfg.Logger, ups: map[string]*Upstream{}, relayers: map[string]http.RoundTripper{},
		sessions: map[*session]struct{}{}, byID: map[string]*session{}, byTask: map[string]*session{}, idle: make(chan func()),
	}
	_, _ = rand.Read(g.stateKey[:]) // crypto/rand.Read never fails (Go 1.24+)
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		if err := u.Validate(); err != nil {
			return nil, err
		}
		if g.ups[u.Name] != nil {
			return nil, fmt.Errorf("mcpproxy: upstream %q configured twice", u.Name)
		}
		g.ups[u.Name] = u
		g.names = append(g.names, u.Name)
	}
	slices.Sort(g.names)
	g.httpc = cfg.HTTPClient
	if g.httpc == nil {
		g.httpc = &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: false,
		}}
	}
	for n, u := range g.ups {
		if u.URL != "" {
			rt := g.upstreamHTTP(u).Transport
			if rt == nil {
				rt = http.DefaultTransport
			}
			g.relayers[n] = rt
		}
	}
	g.pins = cfg.Pins
	g.clash = &collisions{audit: cfg.Audit, log: g.log}
	g.ctx, g.cancel = context.WithCancel(context.Background())
	g.proto = mcp.NewServer(&mcp.Implementation{Name: "mandate", Version: "1"}, nil)
	g.handler = g.routes()
	g.wg.Add(1)
	go g.closeIdle()
	return g, nil
}

// closeIdle closes sessions that have had no request for longer than the
// session timeout, and those of tasks that ended (see Liveness), until
// the gateway closes. (The gateway keeps time
// itself: calls on the raw relay never reach the SDK's handler, whose own
// idle timer would close sessions in the middle of their work.)
func (g *Gateway) closeIdle() {
	defer g.wg.Done()
	d := g.cfg.Limits.SessionTimeout
	t := time.NewTicker(min(max(d/4, 10*time.Millisecond), time.Minute))
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case now := <-t.C:
			g.mu.Lock()
			var idle []*session
			var ended []*session
			for s := range g.sessions {
				switch {
				case s.idle(now, d):
					idle = append(idle, s)
				case s.ended():
					ended = append(ended, s)
				}
			}
			g.mu.Unlock()
			for _, s := range idle {
				g.log.Debug("closing idle MCP session", "endpoint", s.endpoint)
				s.close()
			}
			for _, s := range ended {
				g.log.Info("closing the MCP session of an ended task", "endpoint", s.endpoint)
				s.close()
			}
		}
	}
}

// EndTasks closes at once the sessions of the tasks ids, which have
// stopped (ended, revoked, expired): their upstream processes and
// connections, which may hold the tasks' leased credentials, go with them
// (closeIdle would find them within a minute; Liveness).
func (g *Gateway) EndTasks(ids []string) {
	g.mu.Lock()
	var ended []*session
	for s := range g.sessions {
		s.mu.Lock()
		p := s.principal
		s.mu.Unlock()
		if p != nil && slices.Contains(ids, p.Task) {
			ended = append(ended, s)
		}
	}
	g.mu.Unlock()
	for _, s := range ended {
		g.log.Info("closing the MCP session of a stopped task", "endpoint", s.endpoint, "task", s.principal.Task)
		s.close()
	}
}

// Upstreams returns the configured upstream names, sorted.
func (g *Gateway) Upstreams() []string { return slices.Clone(g.names) }

// Pins returns the gateway's tool pins.
func (g *Gateway) Pins() *toolpin.Pins { return g.pins }

// ServeHTTP serves the endpoints and their metadata.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) { g.handler.ServeHTTP(w, r) }

// Shutdown stops the gateway gracefully: it refuses new sessions, closes
// each session as soon as no call is in flight on it (its idle GET
// stream ends with it, so an HTTP server's own Shutdown is not held up by
// it), and, when ctx ends first, closes what remains. It then does what
// Close does.
func (g *Gateway) Shutdown(ctx context.Context) error {
	g.mu.Lock()
	g.draining = true
	g.mu.Unlock()
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		g.mu.Lock()
		n := len(g.sessions)
		var idle []*session
		for s := range g.sessions {
			if s.busy.Load() == 0 {
				idle = append(idle, s)
			}
		}
		g.mu.Unlock()
		for _, s := range idle {
			s.close()
		}
		if len(idle) == n {
			break
		}
		select {
		case <-ctx.Done():
			return g.Close()
		case <-t.C:
		}
	}
	return g.Close()
}

func (g *Gateway) isDraining() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.draining
}

// Close ends every session, stops upstream processes and waits for the
// gateway's goroutines.
func (g *Gateway) Close() error {
	g.cancel()
	g.mu.Lock()
	ss := make([]*session, 0, len(g.sessions))
	for s := range g.sessions {
		ss = append(ss, s)
	}
	g.mu.Unlock()
	for _, s := range ss {
		s.close()
	}
	g.wg.Wait()
	g.workers.Wait()
	return nil
}

func (g *Gateway) upstreamHTTP(u *Upstream) *http.Client {
	if len(u.Headers) == 0 {
		return g.httpc
	}
	base := g.httpc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	c := *g.httpc
	c.Transport = &headerTransport{base: base, headers: u.Headers}
	return &c
}

// routes mounts one endpoint per upstream, the aggregated endpoint and the
// metadata documents.
func (g *Gateway) routes() http.Handler {
	mux := http.NewServeMux()
	mount := func(path, upstream string) {
		resource := g.cfg.PublicURL + path
		metaPath := "/.well-known/oauth-protected-resource" + path
		md := &oauthex.ProtectedResourceMetadata{
			Resource:                      resource,
			AuthorizationServers:          g.cfg.AuthorizationServers,
			BearerMethodsSupported:        []string{"header"},
			ResourceName:                  "mandate MCP gateway",
			DPOPSigningAlgValuesSupported: []string{"EdDSA", "ES256"},
		}
		mux.Handle("GET "+metaPath, auth.ProtectedResourceMetadataHandler(md))
		mux.Handle("OPTIONS "+metaPath, auth.ProtectedResourceMetadataHandler(md))
		h := mcp.NewStreamableHTTPHandler(func(r *http.Request) *mcp.Server {
			if r.Header.Get("Mcp-Session-Id") != "" {
				// The SDK asks on every request; only a request without
				// a session can start one.
				return g.proto
			}
			return g.newSession(upstream, path).server
		}, &mcp.StreamableHTTPOptions{
			MaxRequestBodyBytes: g.cfg.Limits.MaxMessageBytes,
			Logger:              g.log,
		})
		stateless := mcp.NewStreamableHTTPHandler(sessionlessServer, &mcp.StreamableHTTPOptions{
			Stateless: true,
			// A client that goes away cancels its call, upstream too.
			PropagateRequestCancellation: true,
			MaxRequestBodyBytes:          g.cfg.Limits.MaxMessageBytes,
			Logger:                       g.log,
		})
		front := g.front(path, upstream, g.sdkAuth(g.cfg.PublicURL+metaPath, h), g.sdkAuth(g.cfg.PublicURL+metaPath, stateless))
		mux.Handle(path, g.authenticate(path, upstream, g.cfg.PublicURL+metaPath, front))
	}
	mount(g.cfg.BasePath, "")
	for _, n := range g.names {
		mount(g.cfg.BasePath+"/"+n, n)
	}
	return mux
}

type principalKey struct{}

// sdkAuth hands the principal that authenticate established to the SDK's
// handler, as the SDK's TokenInfo, whose UserID (task and agent) also binds
// each session to its task.
func (g *Gateway) sdkAuth(metadataURL string, next http.Handler) http.Handler {
	inner := auth.RequireBearerToken(func(ctx context.Context, _ string, r *http.Request) (*auth.TokenInfo, error) {
		p, _ := ctx.Value(principalKey{}).(*authed)
		if p == nil {
			return nil, auth.ErrInvalidToken
		}
		return &auth.TokenInfo{
			UserID: p.p.owner(), Expiration: p.p.Expiry,
			Extra: map[string]any{extraPrincipal: p},
		}, nil
	}, &auth.RequireBearerTokenOptions{ResourceMetadataURL: metadataURL})(next)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a, _ := r.Context().Value(principalKey{}).(*authed)
		if a == nil {
			inner.ServeHTTP(w, r)
			return
		}
		// The SDK's bearer middleware only understands the Bearer scheme.
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+a.cred.Token)
		inner.ServeHTTP(w, r)
	})
}

// authenticate verifies the credential of every request (token.FromHeader:
// Bearer, or DPoP with its proof) with the Authenticator, for the
// audiences the endpoint accepts (audiences), answering 401 with RFC
// 6750, RFC 9728 and RFC 9449 challenges when it is missing or refused,
// and passes the principal on in the request's context. The answer's
// text is fixed: why a credential was refused is in the ledger (the
// Authenticator records it) and never told to the caller.
func (g *Gateway) authenticate(endpoint, upstream, metadataURL string, next authedHandler) http.Handler {
	params := fmt.Sprintf("resource_metadata=%q, scope=%q", metadataURL, challengeScope(upstream))
	resource := g.cfg.PublicURL + endpoint
	audiences := g.audiences(resource)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		pres, err := token.FromHeader(r.Header)
		if errors.Is(err, token.ErrNoCredential) {
			unauthorized(w, pres, err, params, "an access token is required (Authorization: DPoP or Bearer)")
			return
		}
		cred := Credential{Scheme: pres.Scheme, Token: pres.Token, DPoPProof: pres.DPoPProof,
			Method: r.Method, URL: g.requestURL(r), Resource: resource, Audiences: audiences, Malformed: err}
		p, err := g.cfg.Authenticator.Authenticate(r.Context(), cred)
		if err == nil && p == nil {
			err = ErrUnauthenticated
		}
		switch {
		case err == nil:
			next(w, r, &authed{p: p, cred: cred})
		case errors.Is(err, ErrUnauthenticated) && !errors.Is(err, fault.ErrUnavailable) && !errors.Is(err, access.ErrAuthUnavailable):
			// A refusal, recorded. (One that names an unavailable store or
			// ledger is not: it is answered below.)
			unauthorized(w, pres, err, params, "invalid_token: the access token was not accepted")
		default:
			// The credential could not be checked (access.ErrAuthUnavailable,
			// a store or a ledger that is unavailable): not a refusal, and
			// never a 401 that would send the client for a new token.
			g.log.Error("authentication unavailable", "err", err)
			w.Header().Set("Retry-After", fault.RetryAfter)
			http.Error(w, "authentication is temporarily unavailable; retry later", http.StatusServiceUnavailable)
		}
	})
}

// audiences are the token audiences the endpoint whose resource
// identifier is resource accepts (RFC 8707): the resource itself and, for
// a token issued without a resource indicator, the issuer. A token for
// another endpoint (another upstream's, or the aggregated one's) is
// refused: this is the one place that decides.
func (g *Gateway) audiences(resource string) []string {
	out := []string{resource}
	if g.cfg.Issuer != "" && g.cfg.Issuer != resource {
		out = append(out, g.cfg.Issuer)
	}
	return out
}

// challengeScope is the scope an endpoint's challenges name (RFC 6750
// §3, "scope"): what a task needs to use it. For an upstream's endpoint,
// its tools and prompts ("tool.call:<upstream>/* prompt.get:<upstream>/*";
// its resources' URIs are the upstream's own, so resource.read patterns
// cannot be named in advance); for the aggregated endpoint, every tool,
// prompt and resource. It is a hint for the client's token request: what
// a token grants is the task's scope and the policies' decision.
func challengeScope(upstream string) string {
	if upstream == "" {
		return ActionToolCall + " " + ActionPromptGet + " " + ActionResourceRead
	}
	return ActionToolCall + ":" + upstream + "/* " + ActionPromptGet + ":" + upstream + "/*"
}

// unauthorized answers 401 with the challenges for a refused (or absent)
// credential and the fixed text msg.
func unauthorized(w http.ResponseWriter, pres token.Presentation, err error, params, msg string) {
	for _, c := range token.Challenges(pres, err, params) {
		w.Header().Add("WWW-Authenticate", c)
	}
	http.Error(w, msg, http.StatusUnauthorized)
}

// requestURL is the request's public URL without query, for a DPoP
// proof's htu.
func (g *Gateway) requestURL(r *http.Request) string {
	if g.cfg.PublicURL != "" {
		return g.cfg.PublicURL + r.URL.Path
	}
	proto := "http"
	if r.TLS != nil {
		proto = "https"
	}
	return proto + "://" + r.Host + r.URL.Path
}

// authedHandler serves a request that authenticate has authenticated as a.
type authedHandler func(w http.ResponseWriter, r *http.Request, a *authed)

// withPrincipal returns r with a in its context, where sdkAuth finds it.
// (The raw relay is handed a directly: a request copied for its context
// on every call would cost more than the rest of the hand-over.)
func withPrincipal(r *http.Request, a *authed) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, a))
}

const extraPrincipal = "mandate.principal"

type authed struct {
	p    *Principal
	cred Credential
}

func principalFrom(extra *mcp.RequestExtra) *authed {
	if extra == nil || extra.TokenInfo == nil {
		return nil
	}
	a, _ := extra.TokenInfo.Extra[extraPrincipal].(*authed)
	return a
}

// logWriter forwards an upstream's stderr to the log, line by line.
type logWriter struct {
	log      *slog.Logger
	upstream string
	mu       sync.Mutex
	buf      bytes.Buffer
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err == io.EOF {
			if w.buf.Len() > 8<<10 {
				w.buf.Reset()
			}
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.log.Debug("upstream stderr", "upstream", w.upstream, "line", strings.TrimRight(line, "\r\n"))
	}
}

// retryError is an error the caller may retry after a delay.
type retryError struct {
	err   error
	after time.Duration
}

func (e *retryError) Error() string { return e.err.Error() }
func (e *retryError) Unwrap() error { return e.err }

// jsonData marshals v for a JSON-RPC error's data member.
func jsonData(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
