-- Operations on finished jobs: bulk retry and the failures view read failed jobs by type.
-- Failures are rare, so this index is small and costs little on the hot path.
CREATE INDEX jobs_failed_by_type_idx ON jobs (job_type, id) WHERE status = 'failed';

-- A queue table churns: every job is inserted, updated two or three times, then deleted by
-- retention. With the defaults (vacuum after 20% of the table changed, analyze after 10%)
-- dead rows pile up to millions on a large table and statistics lag far behind. Vacuum and
-- analyze after 1% and 2% instead, and let vacuum work faster, so the claim and rescue
-- indexes stay small and the planner's estimates stay close. fillfactor 90 leaves room on
-- each page for updated rows, which keeps pages warm and the table from spreading.
ALTER TABLE jobs SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_vacuum_cost_limit = 2000,
    fillfactor = 90
);
