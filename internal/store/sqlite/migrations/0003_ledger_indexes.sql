-- 0003: fewer indexes on the ledger's events.
--
-- Every index costs each group commit a B-tree insert per event and a page
-- write, so the events table keeps only what investigations need: by agent,
-- by task, by time (from 0002), and the events that were not simply
-- allowed (denials, held actions). A filter on type alone scans in seq
-- order. The partial index's condition is written as an OR of equalities
-- so that SQLite can use it for "decision = 'deny'".

DROP INDEX events_type;
DROP INDEX events_decision;
CREATE INDEX events_flagged ON events (decision, seq) WHERE decision = 'deny' OR decision = 'approval_required';
