-- A user's job listing (list_jobs_of_user: user_id = $1) only ever reads jobs that have an
-- owner, yet jobs_user_id_idx took an entry for every row version of every job: system
-- jobs without a user_id (periodic jobs, internal batches) paid three index writes each, at
-- insert, claim and completion. Index only owned jobs; "user_id = $1" implies
-- "user_id IS NOT NULL", so the listing uses this index as it used the old one.
-- A plain CREATE INDEX holds writes for as long as it builds: retention keeps the table to
-- days of jobs, so this is seconds; on a much larger table, run the two statements by hand
-- first, with CREATE INDEX CONCURRENTLY.
CREATE INDEX IF NOT EXISTS jobs_owned_by_user_idx ON jobs (user_id, id)
    WHERE user_id IS NOT NULL;
DROP INDEX IF EXISTS jobs_user_id_idx;
