-- 0002: the tamper-evident audit ledger.
--
-- Events become the leaves of a Merkle tree (golang.org/x/mod/sumdb/tlog):
-- each row keeps the event's canonical serialization (data), whose hash is
-- the leaf, plus copies of the fields queries filter on. The tree's stored
-- hashes are kept apart from the events, in one row per group commit (a
-- contiguous run of stored-hash indexes), so that retention can delete old
-- events and keep the hashes that later checkpoints and proofs need.
--
-- Events recorded before the ledger existed (schema 1) were not hashed;
-- they are kept, unchanged, in events_v1.

ALTER TABLE events RENAME TO events_v1;
DROP INDEX events_type;
DROP INDEX events_agent;
DROP INDEX events_task;
DROP INDEX events_time;

CREATE TABLE events (
	seq      INTEGER NOT NULL PRIMARY KEY, -- leaf index + 1, assigned by the ledger
	time     INTEGER NOT NULL,
	type     TEXT    NOT NULL,
	agent    TEXT    NOT NULL DEFAULT '',
	task     TEXT    NOT NULL DEFAULT '',
	decision TEXT    NOT NULL DEFAULT '',
	data     BLOB    NOT NULL              -- canonical JSON: the Merkle leaf
) STRICT;

CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_agent ON events (agent, seq);
CREATE INDEX events_task ON events (task, seq);
CREATE INDEX events_decision ON events (decision, seq);
CREATE INDEX events_time ON events (time);

-- hashes holds the stored hashes with indexes start, start+1, … (32 bytes
-- each); size is the tree size after the commit that wrote them.
CREATE TABLE ledger_hashes (
	start  INTEGER NOT NULL PRIMARY KEY,
	size   INTEGER NOT NULL UNIQUE,
	hashes BLOB    NOT NULL
) STRICT;

CREATE TABLE ledger_checkpoints (
	size INTEGER NOT NULL PRIMARY KEY,
	time INTEGER NOT NULL,
	note BLOB    NOT NULL
) STRICT;

-- Ledger keys: the checkpoint signing key and the HMAC key for arguments.
CREATE TABLE ledger_keys (
	name       TEXT    NOT NULL PRIMARY KEY,
	key        BLOB    NOT NULL,
	created_at INTEGER NOT NULL
) STRICT;

-- Retention watermark: events with seq <= pruned_through were deleted.
CREATE TABLE ledger_retention (
	id             INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
	pruned_through INTEGER NOT NULL
) STRICT;
