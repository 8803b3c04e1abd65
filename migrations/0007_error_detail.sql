-- A failed attempt's message (last_error) is for every owner of the job; where it failed
-- (the innermost frames of the traceback, the worker's host and pid) is for admins only,
-- so it gets a column of its own. Adding a nullable column without a default rewrites
-- nothing: instant at any table size.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS error_detail text;
