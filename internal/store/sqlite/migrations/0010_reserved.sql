-- 0010: reserved. Another branch adds migration 0010; this placeholder,
-- which changes nothing, keeps the numbering without gaps until that
-- branch is merged, and is deleted then (its 0010 takes the place).
SELECT 1;
