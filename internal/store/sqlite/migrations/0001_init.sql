-- 0001: the core authority's schema: agents and their federated
-- identities, tasks, the authorization server's signing keys, one-time
-- identifiers, revoked tokens, and audit events.
--
-- Times are INTEGER unix nanoseconds in UTC; NULL means "not set" (the zero
-- time.Time). Lists and maps that are only ever read whole are JSON text.

CREATE TABLE agents (
	id           TEXT    NOT NULL PRIMARY KEY,
	description  TEXT    NOT NULL DEFAULT '',
	owner        TEXT    NOT NULL,
	escalation   TEXT    NOT NULL,
	tier         TEXT    NOT NULL,
	status       TEXT    NOT NULL,
	labels       TEXT,              -- JSON object, NULL when empty
	keys         TEXT,              -- JSON array of public JWKs, NULL when empty
	require_dpop INTEGER NOT NULL DEFAULT 0,
	created_at   INTEGER,
	updated_at   INTEGER
) STRICT;

CREATE INDEX agents_status ON agents (status);
CREATE INDEX agents_owner ON agents (owner);

-- A federated identity (issuer + subject) authenticates exactly one agent:
-- the primary key makes FindFederated an index lookup and a second binding
-- a constraint violation.
CREATE TABLE agent_federations (
	issuer   TEXT    NOT NULL,
	subject  TEXT    NOT NULL,
	agent_id TEXT    NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
	position INTEGER NOT NULL,
	PRIMARY KEY (issuer, subject)
) STRICT;

CREATE INDEX agent_federations_agent ON agent_federations (agent_id, position);

CREATE TABLE tasks (
	id            TEXT    NOT NULL PRIMARY KEY,
	agent_id      TEXT    NOT NULL REFERENCES agents (id),
	on_behalf_of  TEXT    NOT NULL,
	principal     TEXT    NOT NULL DEFAULT '',
	purpose       TEXT    NOT NULL,
	scope         TEXT    NOT NULL, -- JSON array of pattern strings
	sensitivity   TEXT    NOT NULL,
	max_actions   INTEGER NOT NULL DEFAULT 0,
	max_writes    INTEGER NOT NULL DEFAULT 0,
	used_actions  INTEGER NOT NULL DEFAULT 0,
	used_writes   INTEGER NOT NULL DEFAULT 0,
	parent_id     TEXT    REFERENCES tasks (id),
	depth         INTEGER NOT NULL DEFAULT 0,
	actors        TEXT,             -- JSON array of agent IDs, root first
	status        TEXT    NOT NULL,
	status_reason TEXT    NOT NULL DEFAULT '',
	created_at    INTEGER,
	expires_at    INTEGER NOT NULL,
	ended_at      INTEGER
) STRICT;

CREATE INDEX tasks_agent ON tasks (agent_id, status);
CREATE INDEX tasks_parent ON tasks (parent_id);
CREATE INDEX tasks_status_expires ON tasks (status, expires_at);
CREATE INDEX tasks_expires ON tasks (expires_at);
CREATE INDEX tasks_created ON tasks (created_at);

CREATE TABLE signing_keys (
	kid           TEXT    NOT NULL PRIMARY KEY,
	algorithm     TEXT    NOT NULL,
	private_jwk   BLOB    NOT NULL,
	created_at    INTEGER,
	retired_at    INTEGER,
	publish_until INTEGER
) STRICT;

CREATE TABLE used_once (
	namespace  TEXT    NOT NULL,
	id         TEXT    NOT NULL,
	expires_at INTEGER NOT NULL,
	PRIMARY KEY (namespace, id)
) STRICT, WITHOUT ROWID;

CREATE INDEX used_once_expires ON used_once (expires_at);

CREATE TABLE revoked_tokens (
	jti        TEXT    NOT NULL PRIMARY KEY,
	expires_at INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

CREATE INDEX revoked_tokens_expires ON revoked_tokens (expires_at);

CREATE TABLE events (
	seq          INTEGER PRIMARY KEY AUTOINCREMENT,
	time         INTEGER,
	type         TEXT    NOT NULL,
	actor        TEXT    NOT NULL DEFAULT '',
	agent        TEXT    NOT NULL DEFAULT '',
	chain        TEXT,              -- JSON array, NULL when empty
	on_behalf_of TEXT    NOT NULL DEFAULT '',
	task         TEXT    NOT NULL DEFAULT '',
	action       TEXT    NOT NULL DEFAULT '',
	resource     TEXT    NOT NULL DEFAULT '',
	decision     TEXT    NOT NULL DEFAULT '',
	reason       TEXT    NOT NULL DEFAULT '',
	details      TEXT,              -- JSON object, NULL when empty
	request_id   TEXT    NOT NULL DEFAULT '',
	point        TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_agent ON events (agent, seq);
CREATE INDEX events_task ON events (task, seq);
CREATE INDEX events_time ON events (time);
