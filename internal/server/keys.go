package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Kind is the type of a configuration key's value.
type Kind string

// Key kinds. Every source (file, environment, flag) parses a value of a
// kind with the same function, so they cannot disagree.
const (
	KindString   Kind = "string"
	KindBool     Kind = "bool"
	KindInt      Kind = "int"
	KindDuration Kind = "duration"
	// KindList is a list of strings: a YAML sequence, or comma-separated
	// in the environment and flags (flags may also repeat).
	KindList Kind = "list"
	// KindIssuers is the federation issuer list: a YAML sequence of
	// mappings, or a JSON array in the environment and flags.
	KindIssuers Kind = "issuers"
	// KindUpstreams is the MCP upstream list: a YAML sequence of mappings,
	// or a JSON array in the environment and flags.
	KindUpstreams Kind = "upstreams"
	// KindClients is the OAuth client rule list and KindIdPs the identity
	// provider list: YAML sequences of mappings, or JSON arrays in the
	// environment and flags.
	KindClients Kind = "clients"
	KindIdPs    Kind = "idps"
)

// Key is one configuration key. Its flag and environment variable names
// are derived from Path, so the three ways to set it cannot drift apart.
type Key struct {
	// Path is the dotted path in the YAML file, e.g. "tokens.agent_ttl".
	Path string
	Kind Kind
	// Default is the default in the syntax of an environment value; empty
	// means none, or derived (see DefaultDoc).
	Default string
	// DefaultDoc describes a derived default for help and docs.
	DefaultDoc string
	Help       string
	// FlagEnvOnly keys cannot be set in the file (the file's own path).
	FlagEnvOnly bool
	field       func(*Config) any
}

// Flag returns the key's command-line flag name (without dashes):
// "tokens.agent_ttl" → "tokens-agent-ttl".
func (k Key) Flag() string {
	return strings.NewReplacer(".", "-", "_", "-").Replace(k.Path)
}

// Env returns the key's environment variable: "tokens.agent_ttl" →
// "MANDATE_TOKENS_AGENT_TTL".
func (k Key) Env() string {
	return "MANDATE_" + strings.ToUpper(strings.ReplaceAll(k.Path, ".", "_"))
}

// DefaultText is the default as shown in help and docs.
func (k Key) DefaultText() string {
	if k.DefaultDoc != "" {
		return k.DefaultDoc
	}
	return k.Default
}

// keys is the one table of configuration keys.
var keys = []Key{
	{Path: "config", Kind: KindString, FlagEnvOnly: true,
		Help:  "path of the YAML configuration file (flag and environment only)",
		field: func(c *Config) any { return &c.ConfigFile }},
	{Path: "data_dir", Kind: KindString, DefaultDoc: "$XDG_DATA_HOME/mandate or ~/.local/share/mandate",
		Help:  "directory for the embedded store and the admin socket (created with mode 0700)",
		field: func(c *Config) any { return &c.DataDir }},
	{Path: "listen", Kind: KindString, Default: "127.0.0.1:8420",
		Help:  "TCP address of the HTTP listener; a non-loopback address needs TLS or allow_insecure_listen",
		field: func(c *Config) any { return &c.Listen }},
	{Path: "public_url", Kind: KindString, DefaultDoc: "http(s)://<listen address>",
		Help:  "externally visible base URL: the OAuth issuer identifier agents use",
		field: func(c *Config) any { return &c.PublicURL }},
	{Path: "store", Kind: KindString, DefaultDoc: "sqlite:<data_dir>/mandate.db",
		Help:  "storage DSN: sqlite:<path> (embedded) or postgres://…",
		field: func(c *Config) any { return &c.Store }},
	{Path: "accept_new_store", Kind: KindBool, Default: "false", FlagEnvOnly: true,
		Help:  "start on a store that does not continue the audit ledger anchored in <data_dir>/ledger.anchor (deleted, replaced or restored from an older copy), or after the store was lost while running (<data_dir>/store.lost); the ledger's next event, ledger.reset, records the old anchor, and store.lost is removed. Use once, then unset it (flag and environment only; see docs/operations.md)",
		field: func(c *Config) any { return &c.AcceptNewStore }},
	{Path: "trust_domain", Kind: KindString, Default: "mandate.local",
		Help:  "SPIFFE trust domain of agent IDs (spiffe://<trust_domain>/agent/<name>)",
		field: func(c *Config) any { return &c.TrustDomain }},
	{Path: "tls.cert", Kind: KindString,
		Help:  "PEM certificate (chain) file for the HTTP listener; requires tls.key",
		field: func(c *Config) any { return &c.TLS.CertFile }},
	{Path: "tls.key", Kind: KindString,
		Help:  "PEM private key file for the HTTP listener; requires tls.cert",
		field: func(c *Config) any { return &c.TLS.KeyFile }},
	{Path: "allow_insecure_listen", Kind: KindBool, Default: "false",
		Help:  "permit a non-loopback listener without TLS (only behind a TLS-terminating proxy)",
		field: func(c *Config) any { return &c.AllowInsecureListen }},
	{Path: "log.level", Kind: KindString, Default: "info",
		Help:  "log level: debug, info, warn or error",
		field: func(c *Config) any { return &c.Log.Level }},
	{Path: "log.format", Kind: KindString, Default: "text",
		Help:  "log format: text or json",
		field: func(c *Config) any { return &c.Log.Format }},
	{Path: "tokens.agent_ttl", Kind: KindDuration, Default: "5m",
		Help:  "lifetime of agent (identity) tokens",
		field: func(c *Config) any { return &c.Tokens.AgentTTL }},
	{Path: "tokens.task_ttl", Kind: KindDuration, Default: "5m",
		Help:  "lifetime of task tokens (renewable by token exchange until the task ends)",
		field: func(c *Config) any { return &c.Tokens.TaskTTL }},
	{Path: "tokens.key_rotation", Kind: KindDuration, Default: "24h",
		Help:  "how often the token signing key is rotated",
		field: func(c *Config) any { return &c.Tokens.KeyRotation }},
	{Path: "tasks.default_ttl", Kind: KindDuration, Default: "1h",
		Help:  "lifetime of a task when its request names none",
		field: func(c *Config) any { return &c.Tasks.DefaultTTL }},
	{Path: "tasks.max_ttl", Kind: KindDuration, Default: "24h",
		Help:  "longest lifetime any task may have",
		field: func(c *Config) any { return &c.Tasks.MaxTTL }},
	{Path: "tasks.max_depth", Kind: KindInt, Default: "4",
		Help:  "delegation depth limit (a root task has depth 0)",
		field: func(c *Config) any { return &c.Tasks.MaxDepth }},
	{Path: "tasks.agent_taint_window", Kind: KindDuration, Default: "1h",
		Help:  "how long an agent stays tainted after one of its tasks read sensitive data: its tasks see context.agent_taint and the tasks it starts meanwhile start tainted",
		field: func(c *Config) any { return &c.Tasks.AgentTaintWindow }},
	{Path: "admin.token_hashes", Kind: KindList,
		Help:  "\"sha256:<hex>\" digests of admin tokens accepted on the TCP listener (see `mandate admin token generate`); none disables the admin API over TCP",
		field: func(c *Config) any { return &c.Admin.TokenHashes }},
	{Path: "federation.issuers", Kind: KindIssuers,
		Help:  "trusted external OIDC issuers: a list of {issuer, jwks_url | jwks_file, audience, person_claim}; their tokens authenticate federated agents, and with person_claim (email or sub) also prove the person a task is started for; JSON in flags and environment",
		field: func(c *Config) any { return &c.Federation.Issuers }},
	{Path: "audit.fail_open", Kind: KindBool, Default: "false",
		Help:  "let actions proceed when their audit event cannot be written (logged loudly at start and on every failure); off fails closed",
		field: func(c *Config) any { return &c.Audit.FailOpen }},
	{Path: "audit.origin", Kind: KindString, DefaultDoc: "<trust_domain>/audit",
		Help:  "name of the ledger in its signed checkpoints; fixed when the ledger key is first generated",
		field: func(c *Config) any { return &c.Audit.Origin }},
	{Path: "audit.signing_key_file", Kind: KindString,
		Help:  "file (mode 0600) holding the checkpoint signing key from `mandate audit keygen`, kept out of the store so that write access to the database does not allow signing; empty keeps a generated key in the store",
		field: func(c *Config) any { return &c.Audit.SigningKeyFile }},
	{Path: "audit.checkpoint_interval", Kind: KindDuration, Default: "1m",
		Help:  "how often a signed checkpoint is made if the ledger grew (0 disables; `mandate audit checkpoint` makes one on demand)",
		field: func(c *Config) any { return &c.Audit.CheckpointInterval }},
	{Path: "audit.retention", Kind: KindDuration, Default: "0s",
		Help:  "how long events are kept before pruning (their tree hashes are kept, so checkpoints and proofs still verify); 0 keeps them forever",
		field: func(c *Config) any { return &c.Audit.Retention }},
	{Path: "audit.redact_fields", Kind: KindList,
		Help:  "argument fields always replaced by hmac-sha256: values when full arguments are recorded (secret-looking fields and values always are)",
		field: func(c *Config) any { return &c.Audit.RedactFields }},
	{Path: "audit.sinks.buffer", Kind: KindInt, Default: "4096",
		Help:  "events each streaming sink may have waiting; when full, events are dropped from that sink (counted and logged), never from the ledger",
		field: func(c *Config) any { return &c.Audit.SinkBuffer }},
	{Path: "audit.sinks.file", Kind: KindString,
		Help:  "path of a JSON-lines file that receives every audit event, rotated by size; empty disables it",
		field: func(c *Config) any { return &c.Audit.FileSink }},
	{Path: "audit.sinks.file_max_mb", Kind: KindInt, Default: "100",
		Help:  "size in MiB at which the file sink rotates",
		field: func(c *Config) any { return &c.Audit.FileSinkMaxMB }},
	{Path: "audit.sinks.file_backups", Kind: KindInt, Default: "5",
		Help:  "rotated files the file sink keeps (<file>.1 is the newest)",
		field: func(c *Config) any { return &c.Audit.FileSinkBackups }},
	{Path: "audit.sinks.webhook", Kind: KindString,
		Help:  "URL that receives batches of audit events as JSON lines (POST, application/x-ndjson); empty disables it",
		field: func(c *Config) any { return &c.Audit.Webhook }},
	{Path: "audit.sinks.webhook_token_file", Kind: KindString,
		Help:  "file holding a bearer token the webhook sink sends as Authorization (kept out of flags and the environment)",
		field: func(c *Config) any { return &c.Audit.WebhookTokenFile }},
	{Path: "audit.sinks.syslog", Kind: KindString,
		Help:  "syslog sink: local, udp://host:port, tcp://host:port or unix:///path; empty disables it",
		field: func(c *Config) any { return &c.Audit.Syslog }},
	{Path: "seal.kek_file", Kind: KindString, DefaultDoc: "<data_dir>/seal.kek, generated on first start",
		Help:  "file (mode 0600) holding the key-encryption key that seals the signing keys in the store: 44 characters of base64, e.g. from openssl rand -base64 32; keep it, and its backup, apart from the database (see docs/keys.md)",
		field: func(c *Config) any { return &c.Seal.KEKFile }},
	{Path: "seal.kek_env", Kind: KindString,
		Help:  "name of an environment variable holding the key-encryption key, instead of seal.kek_file",
		field: func(c *Config) any { return &c.Seal.KEKEnv }},
	{Path: "seal.old_kek_files", Kind: KindList,
		Help:  "key-encryption key files that open but never seal: the previous key during a rotation (everything is re-sealed under the primary at start), or the next one while it reaches every replica",
		field: func(c *Config) any { return &c.Seal.OldKEKFiles }},
	{Path: "policy.dir", Kind: KindString,
		Help:  "directory of Cedar policies (*.cedar, recursively), checked for changes every policy.poll_interval; a change that does not compile keeps the last good set",
		field: func(c *Config) any { return &c.Policy.Dir }},
	{Path: "policy.defaults", Kind: KindBool, Default: "true",
		Help:  "include mandate's default graded-trust policy set (see `mandate policy defaults`)",
		field: func(c *Config) any { return &c.Policy.Defaults }},
	{Path: "policy.shadow_dir", Kind: KindString,
		Help:  "directory of a candidate policy set evaluated beside the live one and never enforced; every request they decide differently is recorded",
		field: func(c *Config) any { return &c.Policy.ShadowDir }},
	{Path: "policy.classification_file", Kind: KindString,
		Help:  "YAML file of risk rules, high-impact tools and resource sensitivity rules (read at start)",
		field: func(c *Config) any { return &c.Policy.ClassificationFile }},
	{Path: "policy.poll_interval", Kind: KindDuration, Default: "2s",
		Help:  "how often the policy directories and the store's API-managed policies are checked for changes",
		field: func(c *Config) any { return &c.Policy.PollInterval }},
	{Path: "access.point_token_hashes", Kind: KindList,
		Help:  "\"sha256:<hex>\" digests of enforcement-point tokens allowed to ask for decisions on behalf of agents (AuthZEN API)",
		field: func(c *Config) any { return &c.Access.PointTokenHashes }},
	{Path: "oauth.clients", Kind: KindClients,
		Help:  "which OAuth clients (MCP clients) may ask people for a mandate: a list of {client_id, agent} (a registered agent), {client_id_pattern, tier, owner, entitlement} (matching clients get an agent of that tier, default assist, with that entitlement {scope, max_sensitivity, max_task_ttl}) or {registered: true, …} (dynamically registered clients); JSON in flags and environment",
		field: func(c *Config) any { return &c.OAuth.Clients }},
	{Path: "oauth.registration", Kind: KindBool, Default: "false",
		Help:  "serve RFC 7591 dynamic client registration at /oauth/register",
		field: func(c *Config) any { return &c.OAuth.Registration }},
	{Path: "oauth.metadata_allow_private", Kind: KindBool, Default: "false",
		Help:  "fetch Client ID Metadata Documents from loopback and private addresses too, and over http from loopback (tests and labs only)",
		field: func(c *Config) any { return &c.OAuth.MetadataAllowPrivate }},
	{Path: "people.idps", Kind: KindIdPs,
		Help:  "OpenID Connect providers people sign in at: a list of {name, display, issuer, client_id, client_secret, scopes, principal_claim (email or sub), groups_claim, admin_groups}; none: the local administrator's one-time link; JSON in flags and environment",
		field: func(c *Config) any { return &c.People.IdPs }},
	{Path: "people.session_ttl", Kind: KindDuration, Default: "12h",
		Help:  "how long a person's sign-in lasts",
		field: func(c *Config) any { return &c.People.SessionTTL }},
	{Path: "people.local_principal", Kind: KindString, Default: "admin",
		Help:  "how tasks name the local administrator who signs in with the one-time link",
		field: func(c *Config) any { return &c.People.LocalPrincipal }},
	{Path: "mcp.upstreams", Kind: KindUpstreams,
		Help:  "MCP servers behind the gateway: a list of {name, command, args, env, dir} (stdio) or {name, url, headers} (Streamable HTTP); JSON in flags and environment; none disables the gateway",
		field: func(c *Config) any { return &c.MCP.Upstreams }},
	{Path: "mcp.call_timeout", Kind: KindDuration, Default: "60s",
		Help:  "longest an MCP upstream may work on a call; time the client spends answering the upstream's requests (elicitation, sampling) does not count, up to 10m per question",
		field: func(c *Config) any { return &c.MCP.CallTimeout }},
	{Path: "mcp.max_message_bytes", Kind: KindInt, Default: "4194304",
		Help:  "largest MCP request body the gateway accepts",
		field: func(c *Config) any { return &c.MCP.MaxMessageBytes }},
	{Path: "mcp.agent_rate", Kind: KindInt, Default: "0",
		Help:  "MCP calls per second allowed per agent (0: unlimited)",
		field: func(c *Config) any { return &c.MCP.AgentRate }},
	{Path: "mcp.tool_rate", Kind: KindInt, Default: "0",
		Help:  "MCP calls per second allowed per agent and tool (0: unlimited)",
		field: func(c *Config) any { return &c.MCP.ToolRate }},
	{Path: "mcp.task_calls", Kind: KindInt, Default: "0",
		Help:  "MCP calls each task may make through the gateway (0: unlimited)",
		field: func(c *Config) any { return &c.MCP.TaskCalls }},
	{Path: "egress.listen", Kind: KindString,
		Help:  "TCP address of the HTTP egress proxy (plain HTTP and CONNECT; agents set HTTP_PROXY=http://agent:$TOKEN@<address>); empty disables it; a non-loopback address needs TLS (tls.cert, served here too) or allow_insecure_listen",
		field: func(c *Config) any { return &c.Egress.Listen }},
	{Path: "egress.connect_ports", Kind: KindList, Default: "443",
		Help:  "ports a CONNECT tunnel through the egress proxy may reach",
		field: func(c *Config) any { return &c.Egress.ConnectPorts }},
	{Path: "egress.allow_private", Kind: KindList,
		Help:  "CIDR prefixes (or addresses) of private, loopback, link-local and other non-public addresses the egress proxy may connect to (all refused by default; a cloud metadata address opens only when listed as a single address)",
		field: func(c *Config) any { return &c.Egress.AllowPrivate }},
	{Path: "approvals.wait_timeout", Kind: KindDuration, Default: "50s",
		Help:  "how long an enforcement point holds a call for its approval before failing it (at most 55s, inside the HTTP write timeout); the request stays open, and the same call made again after the approval proceeds",
		field: func(c *Config) any { return &c.Approvals.WaitTimeout }},
	{Path: "approvals.expire_after", Kind: KindDuration, Default: "15m",
		Help:  "how long an approval request waits for a decision before it expires (fails closed)",
		field: func(c *Config) any { return &c.Approvals.ExpireAfter }},
	{Path: "approvals.escalate_after", Kind: KindDuration, Default: "10m",
		Help:  "a request still pending this long is escalated: recorded and sent to the agent's escalation contact's webhook (0: never)",
		field: func(c *Config) any { return &c.Approvals.EscalateAfter }},
	{Path: "approvals.approvers", Kind: KindList,
		Help:  "people in the \"approvers\" group, who may decide any agent's held actions under the default policies (owners decide their own agents')",
		field: func(c *Config) any { return &c.Approvals.Approvers }},
	{Path: "approvals.local_person", Kind: KindString,
		Help:  "the person the local admin socket's user is when deciding approvals (e.g. alice@example.org); empty: approvals cannot be decided over the socket",
		field: func(c *Config) any { return &c.Approvals.LocalPerson }},
	{Path: "approvals.requests_per_minute", Kind: KindInt, Default: "10",
		Help:  "new approval requests one task may open per minute (identical calls share one request); at most 32 pending per task",
		field: func(c *Config) any { return &c.Approvals.RequestsPerMinute }},
	{Path: "approvals.webhook_url", Kind: KindString,
		Help:  "URL that receives every approval request, decision, expiry and escalation as Slack incoming-webhook JSON, signed (X-Mandate-Signature) and retried with backoff; empty sends none",
		field: func(c *Config) any { return &c.Approvals.WebhookURL }},
	{Path: "approvals.webhook_secret_file", Kind: KindString,
		Help:  "file holding the secret that signs approval webhooks and ARAP callbacks (HMAC-SHA256 over timestamp.body); required with a webhook",
		field: func(c *Config) any { return &c.Approvals.WebhookSecretFile }},
	{Path: "approvals.escalation_webhooks", Kind: KindList,
		Help:  "contact=url: the webhook that reaches an agent's escalation contact (its escalation field); escalations go there and to approvals.webhook_url",
		field: func(c *Config) any { return &c.Approvals.EscalationWebhooks }},
	{Path: "approvals.callback_hosts", Kind: KindList,
		Help:  "host:port values ARAP callbacks (callback.endpoint of an access request) may be sent to; none refuses callbacks",
		field: func(c *Config) any { return &c.Approvals.CallbackHosts }},
	{Path: "approvals.denials_threshold", Kind: KindInt, Default: "20",
		Help:  "this many denied actions of one task within approvals.denials_window notify the agent's owner and escalation contact (webhooks) and are recorded as task.denials_exceeded; 0 turns the watch off",
		field: func(c *Config) any { return &c.Approvals.DenialsThreshold }},
	{Path: "approvals.denials_window", Kind: KindDuration, Default: "10m",
		Help:  "the window approvals.denials_threshold counts denials in",
		field: func(c *Config) any { return &c.Approvals.DenialsWindow }},
	{Path: "approvals.denials_stop", Kind: KindBool, Default: "false",
		Help:  "also revoke a task that reaches approvals.denials_threshold (the kill switch; off: notify only)",
		field: func(c *Config) any { return &c.Approvals.DenialsStop }},
	{Path: "egress.intercept", Kind: KindList,
		Help:  "hosts whose HTTPS the egress proxy terminates with mandate's own CA (<data_dir>/egress-ca.pem; mandate egress ca), deciding each request by method and path and injecting secrets: exact canonical hosts, *.domain for the names under it, or * for all; empty: HTTPS tunnels stay opaque",
		field: func(c *Config) any { return &c.Egress.Intercept }},
	{Path: "egress.upstream_ca_file", Kind: KindString,
		Help:  "PEM file of further roots the egress proxy trusts, besides the system's, for the certificates of intercepted hosts",
		field: func(c *Config) any { return &c.Egress.UpstreamCAFile }},
	{Path: "gc.heap_floor_bytes", Kind: KindInt, Default: "67108864",
		Help:  "heap size (bytes) Go's garbage collector lets the heap reach between cycles while little of it is live, instead of collecting every 4 MiB; above half of it GOGC alone sets the pace, and GOMEMLIMIT still caps it (0: no floor)",
		field: func(c *Config) any { return &c.GC.HeapFloorBytes }},
}

// Keys returns the configuration keys in documentation order.
func Keys() []Key { return append([]Key(nil), keys...) }

// Defaults returns a Config with every key's static default. Derived
// defaults (data_dir, store, public_url) are filled by LoadConfig and New.
func Defaults() Config {
	var c Config
	for _, k := range keys {
		if k.Default != "" {
			if err := k.set(&c, k.Default); err != nil {
				panic(fmt.Sprintf("server: bad default for %s: %v", k.Path, err)) // a bug in the table
			}
		}
	}
	return c
}

// set parses raw (environment syntax) and stores it in c.
func (k Key) set(c *Config, raw string) error {
	v, err := parseValue(k.Kind, raw)
	if err != nil {
		return err
	}
	return k.assign(c, v)
}

// assign stores an already parsed value in c.
func (k Key) assign(c *Config, v any) error {
	switch p := k.field(c).(type) {
	case *string:
		*p = v.(string)
	case *bool:
		*p = v.(bool)
	case *int:
		*p = v.(int)
	case *time.Duration:
		*p = v.(time.Duration)
	case *[]string:
		*p = v.([]string)
	case *[]FederationIssuer:
		*p = v.([]FederationIssuer)
	case *[]MCPUpstream:
		*p = v.([]MCPUpstream)
	default:
		return fmt.Errorf("unsupported field type %T", p)
	}
	return nil
}

// parseValue parses raw in the environment/flag syntax of kind.
func parseValue(kind Kind, raw string) (any, error) {
	switch kind {
	case KindString:
		return raw, nil
	case KindBool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid boolean %q (want true or false)", raw)
		}
		return b, nil
	case KindInt:
		n, err := strconv.Atoi(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid integer %q", raw)
		}
		return n, nil
	case KindDuration:
		d, err := time.ParseDuration(raw)
		if err != nil {
			return nil, fmt.Errorf("invalid duration %q (examples: 90s, 5m, 1h30m)", raw)
		}
		return d, nil
	case KindList:
		var out []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out, nil
	case KindIssuers:
		var out []FederationIssuer
		if strings.TrimSpace(raw) == "" {
			return out, nil
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("invalid JSON list of issuers (want [{\"issuer\":…,\"jwks_url\":…,\"audience\":…}]): %v", err)
		}
		if dec.More() {
			return nil, fmt.Errorf("invalid JSON list of issuers: trailing data")
		}
		return out, nil
	case KindClients:
		return decodeJSONList[OAuthClient](raw, "clients", `[{"client_id_pattern":…,"entitlement":{"scope":[…]}}]`)
	case KindIdPs:
		return decodeJSONList[PeopleIdP](raw, "identity providers", `[{"name":…,"issuer":…,"client_id":…}]`)
	case KindUpstreams:
		var out []MCPUpstream
		if strings.TrimSpace(raw) == "" {
			return out, nil
		}
		dec := json.NewDecoder(bytes.NewReader([]byte(raw)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&out); err != nil {
			return nil, fmt.Errorf("invalid JSON list of upstreams (want [{\"name\":…,\"command\":…} or {\"name\":…,\"url\":…}]): %v", err)
		}
		if dec.More() {
			return nil, fmt.Errorf("invalid JSON list of upstreams: trailing data")
		}
		return out, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}

// MarkdownReference renders the key table as the Markdown table in
// docs/configuration.md (a test keeps the two in sync).
func MarkdownReference() string {
	var b strings.Builder
	b.WriteString("| key | flag | environment | type | default | description |\n")
	b.WriteString("| --- | --- | --- | --- | --- | --- |\n")
	esc := strings.NewReplacer("|", `\|`)
	html := strings.NewReplacer("<", "&lt;", ">", "&gt;")
	for _, k := range keys {
		key := "`" + k.Path + "`"
		if k.FlagEnvOnly {
			key = "(" + k.Path + ")"
		}
		def := k.DefaultText()
		if def != "" {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| %s | `--%s` | `%s` | %s | %s | %s |\n",
			key, k.Flag(), k.Env(), k.Kind, esc.Replace(def), html.Replace(esc.Replace(k.Help)))
	}
	return b.String()
}
