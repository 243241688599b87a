-- 0007: taint that sticks.
--
-- tasks.taint is the highest sensitivity the task has read (or a task
-- delegated from it has read, or it started with: its parent's taint and
-- its agent's taint at creation); '' is none. agents.taint is the highest
-- sensitivity any of the agent's tasks has read, in force until
-- agents.taint_until (unix nanoseconds; NULL: never tainted). Both are only
-- ever raised, by one UPDATE that compares ranks (see tasks.go).

ALTER TABLE tasks ADD COLUMN taint TEXT NOT NULL DEFAULT ''
	CHECK (taint IN ('', 'public', 'internal', 'confidential', 'restricted'));
ALTER TABLE agents ADD COLUMN taint TEXT NOT NULL DEFAULT ''
	CHECK (taint IN ('', 'public', 'internal', 'confidential', 'restricted'));
ALTER TABLE agents ADD COLUMN taint_until INTEGER;
