-- 0010: the secrets broker: secret definitions with their sealed values,
-- and the leases that bind a secret to a task.
--
-- sealed is a seal blob (package seal), never a value in the clear. A
-- lease keeps no foreign key to its secret: leases outlive a removed
-- secret as history. A lease's sealed value (the credential a dynamic
-- backend made for it) is cleared when the lease ends.

CREATE TABLE secrets (
	name        TEXT    NOT NULL PRIMARY KEY,
	id          TEXT    NOT NULL UNIQUE,
	kind        TEXT    NOT NULL,
	description TEXT    NOT NULL DEFAULT '',
	deliver     TEXT    NOT NULL, -- JSON array of targets
	labels      TEXT,             -- JSON object, NULL when empty
	postgres    TEXT,             -- JSON role template, NULL unless kind = 'postgres'
	version     INTEGER NOT NULL CHECK (version > 0),
	sealed      BLOB    NOT NULL,
	created_at  INTEGER NOT NULL,
	updated_at  INTEGER NOT NULL,
	updated_by  TEXT    NOT NULL DEFAULT ''
) STRICT;

CREATE TABLE secret_leases (
	id           TEXT    NOT NULL PRIMARY KEY,
	secret       TEXT    NOT NULL,
	kind         TEXT    NOT NULL,
	task_id      TEXT    NOT NULL REFERENCES tasks (id),
	agent        TEXT    NOT NULL,
	issued_at    INTEGER NOT NULL,
	expires_at   INTEGER NOT NULL,
	status       TEXT    NOT NULL,
	handle       TEXT    NOT NULL DEFAULT '',
	renewals     INTEGER NOT NULL DEFAULT 0,
	ended_at     INTEGER,
	reason       TEXT    NOT NULL DEFAULT '',
	attempts     INTEGER NOT NULL DEFAULT 0,
	last_error   TEXT    NOT NULL DEFAULT '',
	next_attempt INTEGER,
	sealed       BLOB
) STRICT;

CREATE INDEX secret_leases_task ON secret_leases (task_id, status);
CREATE INDEX secret_leases_secret ON secret_leases (secret, status);
CREATE INDEX secret_leases_status ON secret_leases (status, expires_at);
