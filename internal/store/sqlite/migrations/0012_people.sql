-- 0012: people and the authorization code flow.
--
-- humans are the people mandate knows (issuer + subject); web_sessions
-- their signed-in browser sessions, under the hash of the cookie's
-- secret. oauth_grants holds authorization codes and refresh tokens under
-- the hash of the secret the client holds, never the secret itself;
-- oauth_clients the clients registered dynamically (RFC 7591).

CREATE TABLE humans (
	issuer     TEXT    NOT NULL,
	subject    TEXT    NOT NULL,
	principal  TEXT    NOT NULL,
	email      TEXT    NOT NULL DEFAULT '',
	name       TEXT    NOT NULL DEFAULT '',
	groups_json TEXT,          -- JSON array, NULL when empty
	admin      INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	PRIMARY KEY (issuer, subject)
) STRICT;

CREATE TABLE web_sessions (
	id         TEXT    NOT NULL PRIMARY KEY,
	human      TEXT    NOT NULL,
	csrf       TEXT    NOT NULL,
	user_agent TEXT    NOT NULL DEFAULT '',
	created_at INTEGER NOT NULL,
	last_seen  INTEGER NOT NULL,
	expires_at INTEGER NOT NULL,
	revoked_at INTEGER
) STRICT;

CREATE INDEX web_sessions_human ON web_sessions (human, created_at);

CREATE TABLE oauth_grants (
	hash         TEXT    NOT NULL PRIMARY KEY,
	kind         TEXT    NOT NULL,
	family       TEXT    NOT NULL,
	task_id      TEXT    NOT NULL,
	agent        TEXT    NOT NULL,
	client_id    TEXT    NOT NULL,
	redirect_uri TEXT    NOT NULL DEFAULT '',
	challenge    TEXT    NOT NULL DEFAULT '',
	resource     TEXT    NOT NULL DEFAULT '',
	scope        TEXT    NOT NULL DEFAULT '',
	created_at   INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	used_at      INTEGER
) STRICT;

CREATE INDEX oauth_grants_expiry ON oauth_grants (expires_at);

CREATE TABLE oauth_clients (
	client_id  TEXT    NOT NULL PRIMARY KEY,
	metadata   TEXT    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;
