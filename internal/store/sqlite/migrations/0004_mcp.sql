-- 0004: the MCP gateway's tool definition pins (toolpin.Store).
--
-- One row per upstream tool: the approved definition and, while the tool
-- is quarantined, the changed definition awaiting an admin's approval.
-- A rename awaiting approval has nothing approved: digest and definition
-- are ''. Times are INTEGER unix nanoseconds in UTC.

CREATE TABLE mcp_tool_pins (
	upstream           TEXT    NOT NULL,
	tool               TEXT    NOT NULL,
	digest             TEXT    NOT NULL, -- "sha256-v2:<hex>" (before: "sha256:<hex>") of the approved definition
	definition         TEXT    NOT NULL, -- approved canonical JSON
	pending_digest     TEXT    NOT NULL DEFAULT '',
	pending_definition TEXT,             -- changed definition awaiting approval, NULL when none
	pinned_at          INTEGER,
	updated_at         INTEGER,
	approved_by        TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (upstream, tool)
) STRICT, WITHOUT ROWID;
