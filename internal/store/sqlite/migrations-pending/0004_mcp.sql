-- 0004: the MCP gateway's tool definition pins (mcpproxy.PinStore).
--
-- PENDING: not embedded yet. Migrations must be numbered without gaps and
-- 0003 belongs to a branch not merged at the time of writing; move this
-- file to migrations/ once it is, and implement mcpproxy.PinStore on
-- the store (GetPin, PutPin as an upsert, ListPins ordered by upstream,
-- tool). Until then the server keeps pins in <data_dir>/mcp-pins.json
-- (mcpproxy.FilePins).

CREATE TABLE mcp_tool_pins (
	upstream           TEXT    NOT NULL,
	tool               TEXT    NOT NULL,
	digest             TEXT    NOT NULL, -- "sha256:<hex>" of the approved canonical definition
	definition         TEXT    NOT NULL, -- approved canonical JSON
	pending_digest     TEXT    NOT NULL DEFAULT '',
	pending_definition TEXT,             -- changed definition awaiting approval, NULL when none
	pinned_at          INTEGER NOT NULL,
	updated_at         INTEGER NOT NULL,
	approved_by        TEXT    NOT NULL DEFAULT '',
	PRIMARY KEY (upstream, tool)
) STRICT, WITHOUT ROWID;
