package server

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/spf13/pflag"
)

// load runs LoadConfig with the given file contents (none if empty), env
// and command-line arguments.
func load(t *testing.T, file string, env map[string]string, args ...string) (Config, error) {
	t.Helper()
	dir := t.TempDir()
	if env == nil {
		env = map[string]string{}
	}
	if _, ok := env["HOME"]; !ok {
		env["HOME"] = dir
	}
	if file != "" {
		p := filepath.Join(dir, "config.yaml")
		if err := os.WriteFile(p, []byte(file), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append([]string{"--config", p}, args...)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	AddFlags(fs)
	if err := fs.Parse(args); err != nil {
		return Config{}, err
	}
	return LoadConfig(LoadOptions{Flags: fs, Getenv: func(k string) string { return env[k] }})
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	c, err := load(t, "", map[string]string{"HOME": "/home/u"})
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		DataDir:     "/home/u/.local/share/mandate",
		Listen:      "127.0.0.1:8420",
		Store:       "sqlite:/home/u/.local/share/mandate/mandate.db",
		TrustDomain: "mandate.local",
		Log:         LogConfig{Level: "info", Format: "text"},
		Tokens:      TokensConfig{AgentTTL: 5 * time.Minute, TaskTTL: 5 * time.Minute, KeyRotation: 24 * time.Hour},
		Tasks:       TasksConfig{DefaultTTL: time.Hour, MaxTTL: 24 * time.Hour, MaxDepth: 4, AgentTaintWindow: time.Hour},
		Audit:       AuditConfig{CheckpointInterval: time.Minute, SinkBuffer: 4096, FileSinkMaxMB: 100, FileSinkBackups: 5},
		Policy:      PolicyConfig{Defaults: true, PollInterval: 2 * time.Second},
		MCP:         MCPConfig{CallTimeout: time.Minute, MaxMessageBytes: 4 << 20},
		Egress:      EgressConfig{ConnectPorts: []string{"443"}},
		Approvals:   ApprovalsConfig{WaitTimeout: 50 * time.Second, ExpireAfter: 15 * time.Minute, EscalateAfter: 10 * time.Minute, RequestsPerMinute: 10, DenialsThreshold: 20, DenialsWindow: 10 * time.Minute},
		GC:          GCConfig{HeapFloorBytes: 64 << 20},
		People:      PeopleConfig{SessionTTL: 12 * time.Hour, LocalPrincipal: "admin"},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("LoadConfig() mismatch (-want +got):\n%s", diff)
	}

	c, err = load(t, "", map[string]string{"HOME": "/home/u", "XDG_DATA_HOME": "/xdg"})
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/xdg/mandate" {
		t.Errorf("DataDir with XDG_DATA_HOME = %q, want /xdg/mandate", c.DataDir)
	}
}

func TestLoadConfigFile(t *testing.T) {
	t.Parallel()
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	file := `# mandate
data_dir: /srv/mandate
listen: "127.0.0.1:9000"
trust_domain: example.org
log:
  level: debug
  format: json
tokens:
  agent_ttl: 2m
tasks:
  max_depth: 2
admin:
  token_hashes:
    - sha256:` + strings.Repeat("ab", 32) + `
federation:
  issuers:
    - issuer: https://token.actions.githubusercontent.com
      jwks_url: https://token.actions.githubusercontent.com/.well-known/jwks
      audience: mandate
    - issuer: https://kubernetes.default.svc
      jwks_file: ` + jwks + `
`
	c, err := load(t, file, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.DataDir != "/srv/mandate" || c.Store != "sqlite:/srv/mandate/mandate.db" || c.Listen != "127.0.0.1:9000" ||
		c.TrustDomain != "example.org" || c.Log != (LogConfig{"debug", "json"}) || c.Tokens.AgentTTL != 2*time.Minute ||
		c.Tokens.TaskTTL != 5*time.Minute || c.Tasks.MaxDepth != 2 || len(c.Admin.TokenHashes) != 1 {
		t.Errorf("LoadConfig() = %+v", c)
	}
	wantIss := []FederationIssuer{
		{Issuer: "https://token.actions.githubusercontent.com", JWKSURL: "https://token.actions.githubusercontent.com/.well-known/jwks", Audience: "mandate"},
		{Issuer: "https://kubernetes.default.svc", JWKSFile: jwks},
	}
	if diff := cmp.Diff(wantIss, c.Federation.Issuers); diff != "" {
		t.Errorf("issuers mismatch (-want +got):\n%s", diff)
	}
}

func TestLoadConfigFileErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, file, want string
	}{
		{"unknown nested key", "listen: 127.0.0.1:1\n\ntokens:\n  agnet_ttl: 5m\n", `config.yaml: line 4: unknown key "tokens.agnet_ttl"`},
		{"unknown top-level key", "lisen: x\n", `config.yaml: line 1: unknown key "lisen"`},
		{"config key in file", "config: other.yaml\n", `config.yaml: line 1: unknown key "config"`},
		{"unknown issuer field", "federation:\n  issuers:\n    - issuer: https://a.example\n      audd: x\n", `config.yaml: line 4: federation.issuers: unknown field "audd"`},
		{"bad duration", "tokens:\n  task_ttl: 5x\n", `config.yaml: line 2: tokens.task_ttl: invalid duration "5x"`},
		{"duration without unit", "tokens:\n  task_ttl: 300\n", `tokens.task_ttl: invalid duration "300"`},
		{"float for int", "tasks:\n  max_depth: 1.5\n", `line 2: tasks.max_depth: invalid integer "1.5"`},
		{"yaml 1.1 bool", "allow_insecure_listen: yes\n", `allow_insecure_listen: invalid boolean "yes"`},
		{"mapping for scalar", "listen:\n  host: x\n", `line 2: listen: expected a single value`},
		{"scalar for section", "tokens: 3\n", `config.yaml: line 1:`},
		{"scalar for list", "admin:\n  token_hashes: sha256:00\n", `admin.token_hashes: expected a list`},
		{"duplicate key", "listen: a:1\nlisten: b:2\n", `config.yaml: line 2: mapping key "listen" already defined`},
		{"syntax", "listen: [\n", `config.yaml: line`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, tc.file, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadConfig(%q) error = %v, want it to contain %q", tc.file, err, tc.want)
			}
		})
	}
}

func TestLoadConfigMissingFile(t *testing.T) {
	t.Parallel()
	_, err := load(t, "", nil, "--config", "/nonexistent/mandate.yaml")
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/mandate.yaml") {
		t.Errorf("LoadConfig(missing file) error = %v, want it to name the file", err)
	}
}

func TestLoadConfigPrecedence(t *testing.T) {
	t.Parallel()
	file := "tokens:\n  agent_ttl: 1m\n  task_ttl: 2m\n  key_rotation: 3h\ntasks:\n  default_ttl: 10m\n"
	env := map[string]string{
		"MANDATE_TOKENS_TASK_TTL":     "20m",
		"MANDATE_TOKENS_KEY_ROTATION": "30h",
	}
	c, err := load(t, file, env, "--tokens-key-rotation", "300h")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		key  string
		got  time.Duration
		want time.Duration
	}{
		{"tokens.agent_ttl (file)", c.Tokens.AgentTTL, time.Minute},
		{"tokens.task_ttl (env over file)", c.Tokens.TaskTTL, 20 * time.Minute},
		{"tokens.key_rotation (flag over env over file)", c.Tokens.KeyRotation, 300 * time.Hour},
		{"tasks.default_ttl (file over default)", c.Tasks.DefaultTTL, 10 * time.Minute},
		{"tasks.max_ttl (default)", c.Tasks.MaxTTL, 24 * time.Hour},
	} {
		if tc.got != tc.want {
			t.Errorf("%s = %s, want %s", tc.key, tc.got, tc.want)
		}
	}

	// The config file itself: flag over env.
	envFile := filepath.Join(t.TempDir(), "env.yaml")
	if err := os.WriteFile(envFile, []byte("trust_domain: from-env.example\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err = load(t, "trust_domain: from-flag.example\n", map[string]string{"MANDATE_CONFIG": envFile})
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain != "from-flag.example" {
		t.Errorf("trust_domain = %q, want the --config file's", c.TrustDomain)
	}
	c, err = load(t, "", map[string]string{"MANDATE_CONFIG": envFile})
	if err != nil {
		t.Fatal(err)
	}
	if c.TrustDomain != "from-env.example" {
		t.Errorf("trust_domain = %q, want MANDATE_CONFIG's file's", c.TrustDomain)
	}

	// Lists: flags repeat and split on commas; env splits on commas;
	// issuers are JSON.
	h1, h2, h3 := "sha256:"+strings.Repeat("01", 32), "sha256:"+strings.Repeat("02", 32), "sha256:"+strings.Repeat("03", 32)
	c, err = load(t, "", map[string]string{"MANDATE_ADMIN_TOKEN_HASHES": h1 + "," + h2,
		"MANDATE_FEDERATION_ISSUERS": `[{"issuer":"https://a.example","jwks_url":"https://a.example/jwks","audience":"m"}]`})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{h1, h2}, c.Admin.TokenHashes); diff != "" {
		t.Errorf("token hashes from env (-want +got):\n%s", diff)
	}
	if len(c.Federation.Issuers) != 1 || c.Federation.Issuers[0].Audience != "m" {
		t.Errorf("issuers from env = %+v", c.Federation.Issuers)
	}
	c, err = load(t, "", nil, "--admin-token-hashes", h1+","+h2, "--admin-token-hashes", h3)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{h1, h2, h3}, c.Admin.TokenHashes); diff != "" {
		t.Errorf("token hashes from flags (-want +got):\n%s", diff)
	}
}

func TestLoadConfigSourceErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		env  map[string]string
		args []string
		want string
	}{
		{"env duration", map[string]string{"MANDATE_TASKS_MAX_TTL": "forever"}, nil, `MANDATE_TASKS_MAX_TTL: invalid duration "forever"`},
		{"flag duration", nil, []string{"--tasks-max-ttl", "forever"}, `invalid duration "forever"`},
		{"env bool", map[string]string{"MANDATE_ALLOW_INSECURE_LISTEN": "si"}, nil, `MANDATE_ALLOW_INSECURE_LISTEN: invalid boolean "si"`},
		{"env issuers unknown field", map[string]string{"MANDATE_FEDERATION_ISSUERS": `[{"isuer":"x"}]`}, nil, `unknown field "isuer"`},
		{"unknown flag", nil, []string{"--tokens-agnet-ttl", "5m"}, "unknown flag: --tokens-agnet-ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := load(t, "", tc.env, tc.args...)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadConfig() error = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	cert, key := writeTestCert(t)
	jwks := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(jwks, []byte(`{"keys":[]}`), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func() Config {
		c := Defaults()
		c.DataDir = "/data"
		c.complete(func(string) string { return "" })
		return c
	}
	for _, tc := range []struct {
		name   string
		modify func(*Config)
		want   string // "" means valid
	}{
		{"defaults", func(*Config) {}, ""},
		{"loopback v6", func(c *Config) { c.Listen = "[::1]:8420" }, ""},
		{"localhost", func(c *Config) { c.Listen = "localhost:8420" }, ""},
		{"all interfaces without TLS", func(c *Config) { c.Listen = ":8420" }, "listen: :8420 is not a loopback address and TLS is off"},
		{"public IP without TLS", func(c *Config) { c.Listen = "0.0.0.0:8420" }, "--allow-insecure-listen"},
		{"host name without TLS", func(c *Config) { c.Listen = "mandate.internal:8420" }, "is not a loopback address"},
		{"non-loopback with TLS", func(c *Config) { c.Listen = "0.0.0.0:8443"; c.TLS = TLSConfig{cert, key} }, ""},
		{"non-loopback allowed insecure", func(c *Config) { c.Listen = "0.0.0.0:8420"; c.AllowInsecureListen = true }, ""},
		{"bad listen", func(c *Config) { c.Listen = "8420" }, "listen: \"8420\" is not a host:port address"},
		{"cert without key", func(c *Config) { c.TLS.CertFile = cert }, "tls.key: is required when tls.cert is set"},
		{"key without cert", func(c *Config) { c.TLS.KeyFile = key }, "tls.cert: is required when tls.key is set"},
		{"missing cert file", func(c *Config) { c.TLS = TLSConfig{"/nonexistent.pem", key} }, "tls.cert: cannot load"},
		{"zero ttl", func(c *Config) { c.Tokens.TaskTTL = 0 }, "tokens.task_ttl: must be a positive duration"},
		{"negative ttl", func(c *Config) { c.Tasks.DefaultTTL = -time.Minute }, "tasks.default_ttl: must be a positive duration"},
		{"long token", func(c *Config) { c.Tokens.AgentTTL = 48 * time.Hour }, "tokens.agent_ttl: must be at most 24h0m0s"},
		{"default over max", func(c *Config) { c.Tasks.DefaultTTL = 48 * time.Hour }, "tasks.default_ttl: 48h0m0s is longer than tasks.max_ttl"},
		{"depth", func(c *Config) { c.Tasks.MaxDepth = -1 }, "tasks.max_depth: must be between 0 and 16"},
		{"zero taint window", func(c *Config) { c.Tasks.AgentTaintWindow = 0 }, "tasks.agent_taint_window: must be a positive duration"},
		{"negative heap floor", func(c *Config) { c.GC.HeapFloorBytes = -1 }, "gc.heap_floor_bytes: must not be negative"},
		{"trust domain", func(c *Config) { c.TrustDomain = "Example.ORG" }, "trust_domain: \"Example.ORG\" is not a valid SPIFFE trust domain"},
		{"empty trust domain", func(c *Config) { c.TrustDomain = "" }, "trust_domain:"},
		{"public url", func(c *Config) { c.PublicURL = "mandate.example" }, "public_url: \"mandate.example\" must be an absolute URL"},
		{"public url query", func(c *Config) { c.PublicURL = "https://m.example/?a=b" }, "must not have a query"},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, "log.level: \"loud\" is not one of"},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, "log.format: \"xml\" is not one of text, json"},
		{"token hash prefix", func(c *Config) { c.Admin.TokenHashes = []string{"abcd"} }, "admin.token_hashes[0]: \"abcd\" must have the form sha256:<hex>"},
		{"token hash length", func(c *Config) { c.Admin.TokenHashes = []string{"sha256:abcd"} }, "followed by 64 hex digits"},
		{"issuer without jwks", func(c *Config) {
			c.Federation.Issuers = []FederationIssuer{{Issuer: "https://a.example"}}
		}, "federation.issuers[0]: exactly one of jwks_url and jwks_file is required"},
		{"issuer with both jwks", func(c *Config) {
			c.Federation.Issuers = []FederationIssuer{{Issuer: "https://a.example", JWKSURL: "https://a.example/k", JWKSFile: jwks}}
		}, "exactly one of"},
		{"issuer jwks file missing", func(c *Config) {
			c.Federation.Issuers = []FederationIssuer{{Issuer: "https://a.example", JWKSFile: "/nonexistent/jwks.json"}}
		}, "federation.issuers[0].jwks_file:"},
		{"person claim", func(c *Config) {
			c.Federation.Issuers = []FederationIssuer{{Issuer: "https://a.example", JWKSFile: jwks, PersonClaim: "name"}}
		}, `federation.issuers[0].person_claim: must be "email" or "sub" (got "name")`},
		{"issuer not a URL", func(c *Config) {
			c.Federation.Issuers = []FederationIssuer{{Issuer: "a.example", JWKSFile: jwks}}
		}, "federation.issuers[0].issuer: \"a.example\" must be an absolute http(s) URL"},
		{"issuer twice", func(c *Config) {
			i := FederationIssuer{Issuer: "https://a.example", JWKSFile: jwks}
			c.Federation.Issuers = []FederationIssuer{i, i}
		}, "federation.issuers[1].issuer: \"https://a.example\" is listed twice"},
		{"valid issuer", func(c *Config) {
			c.Federation.Issuers = []FederationIssuer{{Issuer: "https://a.example", JWKSFile: jwks, Audience: "mandate"}}
		}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := base()
			tc.modify(&c)
			err := c.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate() = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestValidateReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := load(t, "", nil, "--listen", "0.0.0.0:1", "--log-format", "xml", "--tasks-max-depth", "99")
	if err == nil {
		t.Fatal("LoadConfig() = nil error")
	}
	for _, want := range []string{"listen:", "log.format:", "tasks.max_depth:"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("LoadConfig() error = %v, want it to mention %s", err, want)
		}
	}
}

func TestInsecureListenFlag(t *testing.T) {
	t.Parallel()
	if _, err := load(t, "", nil, "--listen", "0.0.0.0:8420"); err == nil {
		t.Error("non-loopback listen without TLS: LoadConfig() = nil error")
	}
	c, err := load(t, "", nil, "--listen", "0.0.0.0:8420", "--allow-insecure-listen")
	if err != nil || !c.AllowInsecureListen {
		t.Errorf("with --allow-insecure-listen: LoadConfig() = %v, %v", c.AllowInsecureListen, err)
	}
	cert, key := writeTestCert(t)
	if _, err := load(t, "", nil, "--listen", "0.0.0.0:8443", "--tls-cert", cert, "--tls-key", key); err != nil {
		t.Errorf("with TLS: LoadConfig() error = %v", err)
	}
	if _, err := load(t, "", map[string]string{"MANDATE_ALLOW_INSECURE_LISTEN": "true"}, "--listen", "0.0.0.0:8420", "--allow-insecure-listen=false"); err == nil {
		t.Error("--allow-insecure-listen=false over env true: LoadConfig() = nil error")
	}
}

func TestKeyNames(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for _, k := range Keys() {
		if seen[k.Path] {
			t.Errorf("key %s defined twice", k.Path)
		}
		seen[k.Path] = true
		if k.Help == "" {
			t.Errorf("key %s has no help", k.Path)
		}
	}
	k := Key{Path: "tokens.agent_ttl"}
	if k.Flag() != "tokens-agent-ttl" || k.Env() != "MANDATE_TOKENS_AGENT_TTL" {
		t.Errorf("names of %s = %s, %s", k.Path, k.Flag(), k.Env())
	}
	// The file schema has every key except the flag/env-only ones.
	_, index := fileSchema()
	for _, k := range Keys() {
		if _, ok := index[k.Path]; ok == k.FlagEnvOnly {
			t.Errorf("file schema has %s = %v, want %v", k.Path, ok, !k.FlagEnvOnly)
		}
	}
}

// writeTestCert writes a self-signed certificate for 127.0.0.1 and its key.
func writeTestCert(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "mandate test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  nil,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &priv.PublicKey, priv)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}
