-- 0011: approval requests: held actions waiting for, or bound to, a
-- person's decision.
--
-- The columns the store selects and compares by are columns; the rest of
-- the request is doc, its JSON (approval.Request without its arguments).
-- arguments are the canonical arguments, sealed by the approval service.
-- used marks a once approval spent by a decision: UseApproval's
-- compare-and-set.

CREATE TABLE approval_requests (
	id          TEXT    NOT NULL PRIMARY KEY,
	task_id     TEXT    NOT NULL,
	agent_id    TEXT    NOT NULL,
	agent_owner TEXT    NOT NULL,
	status      TEXT    NOT NULL CHECK (status IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
	used        INTEGER NOT NULL DEFAULT 0 CHECK (used IN (0, 1)),
	created_at  INTEGER NOT NULL,
	doc         TEXT    NOT NULL,
	arguments   BLOB    NOT NULL
) STRICT;

CREATE INDEX approval_requests_status ON approval_requests (status, created_at);
CREATE INDEX approval_requests_task ON approval_requests (task_id, created_at);
CREATE INDEX approval_requests_owner ON approval_requests (agent_owner, status);
