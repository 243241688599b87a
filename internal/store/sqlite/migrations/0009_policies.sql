-- 0009: the policy documents managed through the admin API, which were
-- files under <data_dir>/policies (imported once by the server).
--
-- version is the value of policy_sources_version.version after the write
-- that stored the revision: positive, and never reused for any name, so a
-- stale ETag never matches a later document. policy_sources_version has
-- one row; every put and delete increments it in the same transaction, so
-- that a poller (another replica) notices a change with one cheap read.

CREATE TABLE policy_sources (
	name       TEXT    NOT NULL PRIMARY KEY,
	text       BLOB    NOT NULL,
	version    INTEGER NOT NULL CHECK (version > 0),
	updated_at INTEGER NOT NULL,
	updated_by TEXT    NOT NULL
) STRICT;

CREATE TABLE policy_sources_version (
	id      INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	version INTEGER NOT NULL
) STRICT;

INSERT INTO policy_sources_version (id, version) VALUES (1, 0);
