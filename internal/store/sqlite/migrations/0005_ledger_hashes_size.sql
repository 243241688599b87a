-- 0005: ledger_hashes without an index on size.
--
-- The UNIQUE constraint on size (0002) kept a second B-tree whose page
-- every group commit rewrote: about one page in eight that a small commit
-- writes. Nothing needs it. Rows are appended in order, start and size
-- growing together, so the stored size is the size of the row with the
-- largest start (the primary key), and AppendLedger checks, in the write
-- transaction, that a batch starts at that size before it adds a row.
-- SQLite cannot drop a constraint, so the table is rebuilt.

CREATE TABLE ledger_hashes_new (
	start  INTEGER NOT NULL PRIMARY KEY,
	size   INTEGER NOT NULL,
	hashes BLOB    NOT NULL
) STRICT;

INSERT INTO ledger_hashes_new (start, size, hashes) SELECT start, size, hashes FROM ledger_hashes ORDER BY start;
DROP TABLE ledger_hashes;
ALTER TABLE ledger_hashes_new RENAME TO ledger_hashes;
