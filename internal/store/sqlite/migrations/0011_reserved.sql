-- 0011: reserved for another branch's migration. This placeholder keeps
-- the numbering contiguous on this branch only; delete it when merging
-- the branch that owns 0011.
SELECT 1;
