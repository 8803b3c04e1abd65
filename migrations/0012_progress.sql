-- The latest progress a handler reported (queue_core.progress): a fraction from 0 to 1, a
-- short message, and when. Kept in the row (written at most a few times a second per job)
-- so that a reader who comes late, or after Redis was lost, still sees it. Nullable columns
-- without a default: instant at any table size.
ALTER TABLE jobs ADD COLUMN IF NOT EXISTS progress double precision,
                 ADD COLUMN IF NOT EXISTS progress_message text,
                 ADD COLUMN IF NOT EXISTS progress_at timestamptz;
