-- 0007: placeholder on the taint branch only, so that 0008 is contiguous
-- (another branch adds the real 0007). Drop this file when merging.
SELECT 1;
