-- One index over queued jobs instead of two. jobs_queued_claim_order_idx served the Postgres
-- fallback claim and jobs_queued_by_type_idx the reconciler's walk (by id); every enqueue
-- wrote an entry into each, which made a bulk INSERT about a quarter slower. Negating the
-- priority lets one ascending key carry the claim order, so the reconciler can page through
-- it with a plain row comparison ((-priority, scheduled_for, id) > cursor) and the fallback
-- claim reads it in order. The skip scan over job types uses its leading column.
-- As in 0005: a plain CREATE INDEX holds writes while it builds (seconds at the table sizes
-- retention keeps); on a much larger table, create it CONCURRENTLY by hand first.
CREATE INDEX IF NOT EXISTS jobs_queued_idx ON jobs (job_type, (-priority), scheduled_for, id)
    WHERE status = 'queued';
DROP INDEX IF EXISTS jobs_queued_claim_order_idx;
DROP INDEX IF EXISTS jobs_queued_by_type_idx;
