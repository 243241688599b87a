-- 0008: agents' entitlements, the ceiling of what an agent's tasks may be.
--
-- At most one row per agent, removed with it. scope is a JSON array of
-- canonical scope patterns; max_task_ttl is in whole seconds. An agent
-- without a row has no entitlement: it cannot start tasks by itself.

CREATE TABLE agent_entitlements (
	agent_id        TEXT    NOT NULL PRIMARY KEY REFERENCES agents (id) ON DELETE CASCADE,
	scope           TEXT    NOT NULL,
	max_sensitivity TEXT    NOT NULL,
	max_task_ttl    INTEGER NOT NULL CHECK (max_task_ttl > 0),
	updated_at      INTEGER NOT NULL
) STRICT;
