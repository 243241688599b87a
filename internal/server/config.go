package server

import (
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/mandatehq/mandate/internal/token"
)

// Config is everything a mandate server is configured with. Every field
// except Logger and AdminListener is a configuration key (see Keys) that can be set in the
// YAML file, by a MANDATE_* environment variable or by a flag; LoadConfig
// builds a Config from those sources and New completes and validates it.
type Config struct {
	// ConfigFile is the YAML file the configuration was read from, if any.
	ConfigFile string
	// DataDir holds the embedded store and the admin socket. Created 0700.
	DataDir string
	// Listen is the TCP address of the main HTTP listener.
	Listen string
	// PublicURL is the server's externally visible base URL, the OAuth
	// issuer identifier. Empty means derived from Listen and TLS.
	PublicURL string
	// Store is the storage DSN; empty means sqlite:<DataDir>/mandate.db.
	Store string
	// AcceptNewStore starts the server on a store that does not continue
	// the ledger anchored in the data directory, or after the store was
	// lost while running (see LostMarkFile), recording the reset as the
	// ledger's next event (see AnchorFile) and removing the mark. Off:
	// such a store is refused.
	AcceptNewStore bool
	// TrustDomain is the SPIFFE trust domain of agent IDs.
	TrustDomain string
	TLS         TLSConfig
	// AllowInsecureListen permits a non-loopback listener without TLS.
	AllowInsecureListen bool
	Log                 LogConfig
	Tokens              TokensConfig
	Tasks               TasksConfig
	Admin               AdminConfig
	Federation          FederationConfig
	Audit               AuditConfig
	Seal                SealConfig
	Policy              PolicyConfig
	Access              AccessConfig
	MCP                 MCPConfig
	Egress              EgressConfig
	Approvals           ApprovalsConfig
	GC                  GCConfig
	OAuth               OAuthConfig
	People              PeopleConfig

	// Logger receives the server's logs; nil discards them. It is not a
	// configuration key: the command that runs the server builds it from
	// Log (see NewLogger).
	Logger *slog.Logger
	// AdminListener, when set, is where the admin API is served instead of
	// <DataDir>/admin.sock, which is then not created (nor checked for
	// another server on the data directory). It is not a configuration
	// key: only a program that embeds the server sets it, the tests on a
	// platform without AF_UNIX sockets (Wine). Whoever can connect to it
	// is a local admin, as on the socket. Close (or a New that fails) closes it.
	AdminListener net.Listener
}

// TLSConfig names the main listener's certificate and key (PEM files).
type TLSConfig struct {
	CertFile string
	KeyFile  string
}

// Enabled reports whether the main listener serves TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// LogConfig selects the log level and format.
type LogConfig struct {
	Level  string // debug | info | warn | error
	Format string // text | json
}

// TokensConfig configures the OAuth authorization server's tokens.
type TokensConfig struct {
	// AgentTTL is the lifetime of agent (identity) tokens.
	AgentTTL time.Duration
	// TaskTTL is the lifetime of task tokens; renewable by exchange.
	TaskTTL time.Duration
	// KeyRotation is how often the signing key is replaced.
	KeyRotation time.Duration
}

// TasksConfig configures task mandates.
type TasksConfig struct {
	DefaultTTL time.Duration
	MaxTTL     time.Duration
	// MaxDepth is the delegation depth limit; a root task has depth 0.
	MaxDepth int
	// AgentTaintWindow is how long an agent stays tainted after one of
	// its tasks read sensitive data (access.Config.AgentTaintWindow).
	AgentTaintWindow time.Duration
}

// AdminConfig configures admin access over the TCP listener.
type AdminConfig struct {
	// TokenHashes are "sha256:<hex>" digests of the admin bearer tokens
	// accepted on the TCP listener. Empty disables the admin API there
	// (the local socket needs no token).
	TokenHashes []string
}

// FederationConfig lists the external OIDC issuers whose JWTs federated
// agents may authenticate with.
type FederationConfig struct {
	Issuers []FederationIssuer
}

// FederationIssuer is one trusted external OIDC issuer: its JWTs are
// verified against the keys at JWKSURL or in JWKSFile, and must carry
// Audience in aud. With PersonClaim set ("email" or "sub") its tokens also
// prove a person: as subject_token, with an agent's token as actor_token,
// they start a task on that person's behalf.
type FederationIssuer struct {
	Issuer      string `json:"issuer" yaml:"issuer"`
	JWKSURL     string `json:"jwks_url,omitempty" yaml:"jwks_url"`
	JWKSFile    string `json:"jwks_file,omitempty" yaml:"jwks_file"`
	Audience    string `json:"audience,omitempty" yaml:"audience"`
	PersonClaim string `json:"person_claim,omitempty" yaml:"person_claim"`
}

// GCConfig tunes Go's garbage collector for the server's process. The
// server itself does not apply it: GOGC is process-wide, so the program
// that runs the server does (see heapfloor.Start).
type GCConfig struct {
	// HeapFloorBytes is the heap size the collector may grow to between
	// cycles however little of it is live; 0 leaves Go's 4 MiB minimum.
	HeapFloorBytes int
}

// MCPConfig configures the MCP gateway (mounted at /mcp when upstreams
// are configured).
type MCPConfig struct {
	Upstreams []MCPUpstream
	// CallTimeout bounds each upstream call.
	CallTimeout time.Duration
	// MaxMessageBytes bounds a downstream request body.
	MaxMessageBytes int
	// AgentRate and ToolRate are calls per second per agent and per agent
	// and tool; TaskCalls is each task's call budget. Zero: unlimited.
	AgentRate int
	ToolRate  int
	TaskCalls int
}

// MCPUpstream is one MCP server behind the gateway: a stdio command or a
// Streamable HTTP URL (see mcpproxy.Upstream).
type MCPUpstream struct {
	Name    string            `json:"name" yaml:"name"`
	Command string            `json:"command,omitempty" yaml:"command"`
	Args    []string          `json:"args,omitempty" yaml:"args"`
	Env     []string          `json:"env,omitempty" yaml:"env"`
	Dir     string            `json:"dir,omitempty" yaml:"dir"`
	URL     string            `json:"url,omitempty" yaml:"url"`
	Headers map[string]string `json:"headers,omitempty" yaml:"headers"`
}

// Limits on configuration values.
const (
	maxTaskDepth = 16
	// maxTokenTTL caps token lifetimes: mandate's tokens are minutes long.
	maxTokenTTL = 24 * time.Hour
)

// DefaultDataDir returns $XDG_DATA_HOME/mandate, or ~/.local/share/mandate
// when XDG_DATA_HOME is unset, looking variables up with getenv.
func DefaultDataDir(getenv func(string) string) string {
	if d := getenv("XDG_DATA_HOME"); d != "" && filepath.IsAbs(d) {
		return filepath.Join(d, "mandate")
	}
	home := getenv("HOME")
	if home == "" {
		if h, err := os.UserHomeDir(); err == nil {
			home = h
		}
	}
	if home == "" {
		return filepath.Join(os.TempDir(), "mandate-"+fmt.Sprint(os.Getuid()))
	}
	return filepath.Join(home, ".local", "share", "mandate")
}

// SocketPath returns the admin socket's path in dataDir.
func SocketPath(dataDir string) string { return filepath.Join(dataDir, "admin.sock") }

// complete fills the defaults that derive from other keys: DataDir (from
// the environment) and Store (from DataDir). PublicURL is derived by New
// once the listener is bound, because the port may be chosen then.
func (c *Config) complete(getenv func(string) string) {
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir(getenv)
	}
	if c.Store == "" {
		c.Store = "sqlite:" + filepath.Join(c.DataDir, "mandate.db")
	}
}

// Validate checks every key and the rules between them. It returns all
// problems found, each naming its key.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	if c.DataDir == "" {
		bad("data_dir", "is required")
	}
	if c.Store == "" {
		bad("store", "is required")
	}
	if _, err := spiffeid.TrustDomainFromString(c.TrustDomain); err != nil || c.TrustDomain == "" {
		bad("trust_domain", "%q is not a valid SPIFFE trust domain (lower-case letters, digits, '.', '-', '_')", c.TrustDomain)
	}

	// TLS: both files or neither, and they must load.
	switch {
	case c.TLS.CertFile != "" && c.TLS.KeyFile == "":
		bad("tls.key", "is required when tls.cert is set")
	case c.TLS.CertFile == "" && c.TLS.KeyFile != "":
		bad("tls.cert", "is required when tls.key is set")
	case c.TLS.CertFile != "":
		if _, err := tls.LoadX509KeyPair(c.TLS.CertFile, c.TLS.KeyFile); err != nil {
			bad("tls.cert", "cannot load the certificate and key: %v", err)
		}
	}

	if err := checkMCP(&c.MCP); err != nil {
		errs = append(errs, err)
	}
	if err := checkEgress(&c.Egress, c.TLS.Enabled(), c.AllowInsecureListen); err != nil {
		errs = append(errs, err)
	}

	// The listener: non-loopback needs TLS or an explicit opt-out.
	if err := checkListen(c.Listen, c.TLS.Enabled(), c.AllowInsecureListen); err != nil {
		errs = append(errs, err)
	}
	if c.PublicURL != "" {
		u, err := url.Parse(c.PublicURL)
		switch {
		case err != nil || !u.IsAbs() || u.Host == "":
			bad("public_url", "%q must be an absolute URL", c.PublicURL)
		case u.Scheme != "https" && u.Scheme != "http":
			bad("public_url", "%q must be an http or https URL", c.PublicURL)
		case u.RawQuery != "" || u.Fragment != "" || u.User != nil:
			bad("public_url", "%q must not have a query, fragment or user info", c.PublicURL)
		}
	}

	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is not one of text, json", c.Log.Format)
	}

	for _, d := range []struct {
		key string
		v   time.Duration
		max time.Duration
	}{
		{"tokens.agent_ttl", c.Tokens.AgentTTL, maxTokenTTL},
		{"tokens.task_ttl", c.Tokens.TaskTTL, maxTokenTTL},
		{"tokens.key_rotation", c.Tokens.KeyRotation, 0},
		{"tasks.default_ttl", c.Tasks.DefaultTTL, 0},
		{"tasks.max_ttl", c.Tasks.MaxTTL, 0},
		{"tasks.agent_taint_window", c.Tasks.AgentTaintWindow, 0},
	} {
		if d.v <= 0 {
			bad(d.key, "must be a positive duration (got %s)", d.v)
		} else if d.max > 0 && d.v > d.max {
			bad(d.key, "must be at most %s (got %s)", d.max, d.v)
		}
	}
	if c.GC.HeapFloorBytes < 0 {
		bad("gc.heap_floor_bytes", "must not be negative (got %d; 0 turns the floor off)", c.GC.HeapFloorBytes)
	}
	if c.Tasks.DefaultTTL > c.Tasks.MaxTTL && c.Tasks.MaxTTL > 0 {
		bad("tasks.default_ttl", "%s is longer than tasks.max_ttl %s", c.Tasks.DefaultTTL, c.Tasks.MaxTTL)
	}
	if c.Tasks.MaxDepth < 0 || c.Tasks.MaxDepth > maxTaskDepth {
		bad("tasks.max_depth", "must be between 0 and %d (got %d)", maxTaskDepth, c.Tasks.MaxDepth)
	}

	for i, h := range c.Admin.TokenHashes {
		if _, _, err := parseAdminTokenEntry(h); err != nil {
			bad(fmt.Sprintf("admin.token_hashes[%d]", i), "%v", err)
		}
	}

	seen := map[string]bool{}
	for i, f := range c.Federation.Issuers {
		key := fmt.Sprintf("federation.issuers[%d]", i)
		u, err := url.Parse(f.Issuer)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad(key+".issuer", "%q must be an absolute http(s) URL", f.Issuer)
		}
		if seen[f.Issuer] {
			bad(key+".issuer", "%q is listed twice", f.Issuer)
		}
		switch f.PersonClaim {
		case "", token.PersonClaimEmail, token.PersonClaimSubject:
		default:
			bad(key+".person_claim", "must be %q or %q (got %q)", token.PersonClaimEmail, token.PersonClaimSubject, f.PersonClaim)
		}
		seen[f.Issuer] = true
		switch {
		case (f.JWKSURL == "") == (f.JWKSFile == ""):
			bad(key, "exactly one of jwks_url and jwks_file is required")
		case f.JWKSURL != "":
			if u, err := url.Parse(f.JWKSURL); err != nil || u.Scheme != "https" && u.Scheme != "http" || u.Host == "" {
				bad(key+".jwks_url", "%q must be an absolute http(s) URL", f.JWKSURL)
			}
		default:
			if st, err := os.Stat(f.JWKSFile); err != nil {
				bad(key+".jwks_file", "%v", err)
			} else if st.IsDir() {
				bad(key+".jwks_file", "%s is a directory", f.JWKSFile)
			}
		}
	}
	c.Audit.validate(bad)
	c.Seal.validate(bad)
	c.Approvals.validate(bad)
	return errors.Join(errs...)
}

// checkListen enforces "non-loopback listeners need TLS".
func checkListen(addr string, tlsOn, allowInsecure bool) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("listen: %q is not a host:port address: %v", addr, err)
	}
	if port == "" {
		return fmt.Errorf("listen: %q has no port", addr)
	}
	if tlsOn || allowInsecure || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("listen: %s is not a loopback address and TLS is off: set tls.cert and tls.key "+
		"(--tls-cert, --tls-key), listen on 127.0.0.1, or set allow_insecure_listen "+
		"(--allow-insecure-listen) if a TLS-terminating proxy in front of mandate is the only client", addr)
}

// isLoopback reports whether host (from a listen address) only accepts
// local connections. Other host names are not resolved: they count as
// non-loopback.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseTokenHash parses "sha256:<64 hex digits>".
func parseTokenHash(s string) ([]byte, error) {
	hexPart, ok := strings.CutPrefix(s, "sha256:")
	if !ok {
		return nil, fmt.Errorf("%q must have the form sha256:<hex> (see `mandate admin token generate`)", s)
	}
	b, err := hex.DecodeString(hexPart)
	if err != nil || len(b) != 32 {
		return nil, fmt.Errorf("%q: want sha256: followed by 64 hex digits", s)
	}
	return b, nil
}

// NewLogger returns a logger for cfg's level and format writing to w.
func NewLogger(w interface{ Write([]byte) (int, error) }, cfg LogConfig) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.Level)) // validated; info on error
	opts := &slog.HandlerOptions{Level: level}
	if cfg.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
