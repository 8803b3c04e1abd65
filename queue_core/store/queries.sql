-- Every statement hybridq runs, by name. Loaded once by queue_core.queries; a test prepares
-- each against a freshly migrated database so schema drift fails fast.
-- Fencing: every write after a claim matches id + attempt + lease owner + status 'running';
-- zero rows back means the worker lost the job and its write is discarded. The lease owner
-- is unique per claim (worker id + claim number), not per worker: a claim lost in a crash
-- and made again by the same worker, with the same attempt number, is still told apart.
-- Batched writes take their rows sorted by id (pg_store), so two of them never lock the
-- same rows in opposite orders.
-- Statements that name jobs by id test status with IS NOT DISTINCT FROM: it means "=" here
-- but matches no partial index, so the primary key is the only way in (see claim_jobs).

-- name: insert_jobs
-- Insert a batch of validated jobs; scheduled_for NULL means now (ms precision). Returns
-- one row: what the server decided for every job (the statement's now(), as created_at
-- and as the default scheduled_for); the caller has the rest (pg_store.new_job_row).
-- Not RETURNING per row: decoding a thousand rows cost more than the INSERT's own parse.
WITH inserted AS (
    INSERT INTO jobs (id, job_type, input, user_id, priority, max_retries, scheduled_for)
    SELECT t.id, t.job_type, t.input::jsonb, t.user_id, t.priority, t.max_retries,
           coalesce(t.scheduled_for, date_trunc('milliseconds', now()))
    FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::int[], $6::int[],
                $7::timestamptz[])
         AS t(id, job_type, input, user_id, priority, max_retries, scheduled_for)
    RETURNING 1
)
SELECT now() AS created_at, date_trunc('milliseconds', now()) AS scheduled_for,
       (SELECT count(*) FROM inserted) AS inserted;

-- name: insert_job
-- insert_jobs for one job: a plain VALUES row plans and runs faster than unnest().
INSERT INTO jobs (id, job_type, input, user_id, priority, max_retries, scheduled_for)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, coalesce($7, date_trunc('milliseconds', now())))
RETURNING id, scheduled_for, created_at;

-- name: get_job
-- One job by id.
SELECT * FROM jobs WHERE id = $1;

-- name: claim_jobs
-- Confirm ids popped from Redis: only queued, due jobs of the type whose set they came
-- from ($4) become running under this lease. The first $5 ids start at once; the others
-- will wait in the worker for a slot (claim-ahead, prefetch.py), and are taken only if a
-- retry would remain: a worker that dies holding them costs them an attempt, and a job on
-- its last attempt must not fail without having run. The others are left queued.
-- Only the primary key may lead here. A queue table's statistics are stale most of the time
-- (bulk enqueue outruns ANALYZE), and then the planner happily scans a whole partial index
-- that "status = 'queued'", "job_type = $4" or "scheduled_for <= now()" would match: at a
-- 1M backlog that is a second per claim. IS NOT DISTINCT FROM and the interval form say the
-- same thing but match no index (tests/integration/test_plans.py holds this).
UPDATE jobs AS j
SET status = 'running', attempts = j.attempts + 1, started_at = now(),
    lease_owner = $2, lease_expires_at = now() + make_interval(secs => $3)
FROM unnest($1::uuid[]) WITH ORDINALITY AS c(id, n)
WHERE j.id = c.id
  AND j.status IS NOT DISTINCT FROM 'queued'
  AND j.job_type IS NOT DISTINCT FROM $4
  AND j.scheduled_for - now() <= interval '0'
  AND (c.n <= $5 OR j.attempts < j.max_retries)
RETURNING j.*;

-- name: find_queued_jobs
-- Of these ids, the jobs still queued (to re-index them; the rest leave the index). The
-- status test matches no partial index, for the reason given at claim_jobs.
SELECT j.id, j.job_type, j.priority, j.scheduled_for
FROM unnest($1::uuid[]) AS c(id) JOIN jobs AS j ON j.id = c.id
WHERE j.status IS NOT DISTINCT FROM 'queued';

-- name: complete_jobs
-- Record successful attempts (fenced); returns the ids written.
UPDATE jobs AS j
SET status = 'succeeded', output = r.output::jsonb, finished_at = now(),
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[]) AS r(id, attempt, output, owner)
WHERE j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner AND j.status IS NOT DISTINCT FROM 'running'
RETURNING j.id;

-- name: retry_jobs
-- Failed attempts with retries left: back to queued after a backoff delay (fenced).
UPDATE jobs AS j
SET status = 'queued', last_error = r.error, error_detail = r.detail,
    scheduled_for = date_trunc('milliseconds', now() + make_interval(secs => r.delay_s)),
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::float8[], $5::text[], $6::text[])
     AS r(id, attempt, error, delay_s, owner, detail)
WHERE j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner AND j.status IS NOT DISTINCT FROM 'running'
RETURNING j.id, j.job_type, j.priority, j.scheduled_for;

-- name: fail_jobs
-- Failed attempts with no retry left (or a PermanentJobError): final status failed (fenced).
UPDATE jobs AS j
SET status = 'failed', last_error = r.error, error_detail = r.detail, finished_at = now(),
    lease_owner = NULL, lease_expires_at = NULL
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[])
     AS r(id, attempt, error, owner, detail)
WHERE j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner AND j.status IS NOT DISTINCT FROM 'running'
RETURNING j.id;

-- name: note_errors
-- The error of attempts that are over but still running (a handler past its timeout that
-- has not let go yet): last_error now, the status once the handler stops (fenced).
UPDATE jobs AS j
SET last_error = r.error, error_detail = r.detail
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::text[], $5::text[])
     AS r(id, attempt, error, owner, detail)
WHERE j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner AND j.status IS NOT DISTINCT FROM 'running'
RETURNING j.id;

-- name: write_progress
-- The latest progress of attempts still running (fenced): one statement for every job
-- whose handler reported since the last write.
UPDATE jobs AS j
SET progress = r.fraction, progress_message = r.message, progress_at = now()
FROM unnest($1::uuid[], $2::int[], $3::text[], $4::float8[], $5::text[])
     AS r(id, attempt, owner, fraction, message)
WHERE j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner AND j.status IS NOT DISTINCT FROM 'running'
RETURNING j.id;

-- name: extend_leases
-- Heartbeat: extend the leases this worker still holds; returns the ids still held. A row
-- another transaction has locked (a handler holding its own job's row, say) is skipped, not
-- waited for: one such row must not stall the renewal of every lease on the worker. It is
-- still held (returned) and renewed at the next heartbeat. The locking subquery re-checks
-- the fence on the newest row version, so a job cancelled meanwhile is never touched.
WITH held AS (
    SELECT r.id, r.attempt, r.owner
    FROM unnest($1::uuid[], $2::int[], $4::text[]) AS r(id, attempt, owner)
), still_held AS (
    SELECT j.id FROM jobs AS j JOIN held AS r
        ON j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner
    WHERE j.status IS NOT DISTINCT FROM 'running'
), renewed AS (
    UPDATE jobs AS j
    SET lease_expires_at = now() + make_interval(secs => $3)
    FROM (
        SELECT j.id FROM jobs AS j JOIN held AS r
            ON j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner
        WHERE j.status IS NOT DISTINCT FROM 'running'
        FOR UPDATE OF j SKIP LOCKED
    ) AS lockable
    WHERE j.id = lockable.id
    RETURNING j.id
)
SELECT id FROM still_held;

-- name: extend_worker_leases
-- The lease backstop (worker/lease_backstop.py), while a worker's own heartbeat is silent
-- (its interpreter frozen): extend every lease of that worker's claims, whose owners are
-- "<worker id>/<claim number>". Locked rows are skipped, as in extend_leases.
UPDATE jobs AS j
SET lease_expires_at = now() + make_interval(secs => $2)
FROM (
    SELECT id FROM jobs
    WHERE status = 'running' AND starts_with(lease_owner, $1 || '/')
    FOR UPDATE SKIP LOCKED
) AS mine
WHERE j.id = mine.id
RETURNING j.id;

-- name: release_jobs
-- Shutdown: give unfinished attempts back without counting them (fenced). $4 > 0 makes
-- them due no sooner than $4 seconds from now (their handlers had started: what those left
-- running, a thread say, ends with the stopping worker first).
UPDATE jobs AS j
SET status = 'queued', attempts = j.attempts - 1, lease_owner = NULL, lease_expires_at = NULL,
    scheduled_for = CASE WHEN $4::float8 > 0
        THEN greatest(j.scheduled_for, date_trunc('milliseconds', now() + make_interval(secs => $4)))
        ELSE j.scheduled_for END
FROM unnest($1::uuid[], $2::int[], $3::text[]) AS r(id, attempt, owner)
WHERE j.id = r.id AND j.attempts = r.attempt AND j.lease_owner = r.owner AND j.status IS NOT DISTINCT FROM 'running'
RETURNING j.id, j.job_type, j.priority, j.scheduled_for;

-- name: cancel_job
-- A queued or running job becomes cancelled; a running handler notices at its next heartbeat.
UPDATE jobs
SET status = 'cancelled', finished_at = now(), lease_owner = NULL, lease_expires_at = NULL
WHERE id = $1 AND status IN ('queued', 'running')
RETURNING *;

-- name: retry_job
-- A failed or cancelled job is queued again, now, with a fresh allowance of retries:
-- attempts keeps counting (every attempt number stays unique for fencing), so max_retries
-- grows by the attempts already spent.
UPDATE jobs
SET status = 'queued', scheduled_for = date_trunc('milliseconds', now()),
    finished_at = NULL, max_retries = max_retries + attempts
WHERE id = $1 AND status IN ('failed', 'cancelled')
RETURNING *;

-- name: notify
-- Tell workers, once the caller's transaction commits, which jobs to index in Redis.
SELECT pg_notify($1, $2);

-- name: server_now
-- Postgres' clock: retention and bulk retry cut off by it, as finished_at was written by it.
SELECT now();

-- name: server_time_ms
-- Postgres' clock, in ms since the Unix epoch: workers promote scheduled jobs by this clock.
SELECT (extract(epoch FROM clock_timestamp()) * 1000)::float8;

-- name: claim_jobs_from_postgres
-- Fallback claim while the Redis index is unreachable or being rebuilt: the same order as
-- Redis (priority desc, due, creation), SKIP LOCKED so concurrent workers never collide.
UPDATE jobs
SET status = 'running', attempts = attempts + 1, started_at = now(),
    lease_owner = $3, lease_expires_at = now() + make_interval(secs => $4)
WHERE id IN (
    SELECT id FROM jobs
    WHERE status = 'queued' AND job_type = $1 AND scheduled_for <= now()
    ORDER BY -priority, scheduled_for, id  -- the key of jobs_queued_idx (migration 0006)
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
RETURNING *;

-- name: rescue_expired_leases
-- Running jobs whose lease expired (their worker died or stalled): back to queued after a
-- backoff, counting the attempt, or failed when no retry is left. One bounded page.
-- $1 page size, $2 backoff base seconds, $3 backoff cap seconds.
UPDATE jobs AS j
SET status = CASE WHEN j.attempts <= j.max_retries THEN 'queued' ELSE 'failed' END,
    scheduled_for = CASE WHEN j.attempts <= j.max_retries
        THEN date_trunc('milliseconds', now() + make_interval(secs =>
            least($3::float8, $2::float8 * power(2, greatest(j.attempts - 1, 0)))
            * (0.5 + random() / 2)))
        ELSE j.scheduled_for END,
    finished_at = CASE WHEN j.attempts <= j.max_retries THEN NULL ELSE now() END,
    last_error = 'lease expired: its worker stopped renewing attempt ' || j.attempts,
    error_detail = 'lease owner ' || j.lease_owner,  -- host:pid of the worker: admins only
    lease_owner = NULL, lease_expires_at = NULL
FROM (
    SELECT id FROM jobs
    WHERE status = 'running' AND lease_expires_at < now()
    ORDER BY lease_expires_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
) AS expired
WHERE j.id = expired.id
RETURNING j.id, j.job_type, j.priority, j.scheduled_for, j.status, j.user_id;

-- name: queued_job_types
-- The job types that have queued jobs (a skip scan over jobs_queued_idx).
WITH RECURSIVE types AS (
    (SELECT job_type FROM jobs WHERE status = 'queued' ORDER BY job_type LIMIT 1)
    UNION ALL
    SELECT (SELECT j.job_type FROM jobs j
            WHERE j.status = 'queued' AND j.job_type > t.job_type
            ORDER BY j.job_type LIMIT 1)
    FROM types t WHERE t.job_type IS NOT NULL
)
SELECT job_type FROM types WHERE job_type IS NOT NULL;

-- name: queued_jobs_page
-- One page of a type's queued jobs in claim order, after the cursor ($2, $3, $4) =
-- (-priority, scheduled_for, id) of the previous page's last job (keyset pagination over
-- jobs_queued_idx; start from (-1001, '-infinity', the nil uuid)).
SELECT id, job_type, priority, scheduled_for
FROM jobs
WHERE status = 'queued' AND job_type = $1
  AND (-priority, scheduled_for, id) > ($2::int, $3::timestamptz, $4::uuid)
ORDER BY -priority, scheduled_for, id
LIMIT $5;

-- name: try_reconcile_lock
-- One reconciler (or index rebuild) at a time per schema; others skip this run.
SELECT pg_try_advisory_lock(hashtext('hybridq.reconcile.' || current_schema()));

-- name: reconcile_unlock
SELECT pg_advisory_unlock(hashtext('hybridq.reconcile.' || current_schema()));

-- name: insert_job_once
-- Insert one job under an idempotency key; no row back when the key is already taken.
INSERT INTO jobs (id, job_type, input, user_id, priority, max_retries, scheduled_for,
                  idempotency_key, request_fingerprint)
VALUES ($1, $2, $3::jsonb, $4, $5, $6, coalesce($7, date_trunc('milliseconds', now())), $8, $9)
ON CONFLICT ((coalesce(user_id, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
DO NOTHING
RETURNING *;

-- name: get_job_by_idempotency_key
-- The job an owner created earlier under this key.
SELECT * FROM jobs WHERE coalesce(user_id, '') = coalesce($1, '') AND idempotency_key = $2;

-- name: list_jobs_of_user
-- One page of a user's jobs, newest first, before id $2 (keyset); optional filters.
SELECT * FROM jobs
WHERE user_id = $1 AND id < $2
  AND ($3::text IS NULL OR status = $3) AND ($4::text IS NULL OR job_type = $4)
ORDER BY id DESC
LIMIT $5;

-- name: list_all_jobs
-- One page of every job, newest first, before id $1 (keyset); optional filters. Admin only.
SELECT * FROM jobs
WHERE id < $1
  AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR job_type = $3)
ORDER BY id DESC
LIMIT $4;

-- name: count_jobs
-- Jobs by type and status (a full scan: retention keeps the table small enough for it).
SELECT job_type, status, count(*) AS jobs FROM jobs GROUP BY job_type, status;

-- name: oldest_due_queued_jobs
-- Per type, when the longest-waiting due job became due (the queue's lag).
SELECT job_type, min(scheduled_for) AS oldest_due
FROM jobs WHERE status = 'queued' AND scheduled_for <= now()
GROUP BY job_type;

-- name: ping
-- Readiness: the database answers.
SELECT 1;

-- name: retry_jobs_in_bulk
-- Up to $3 jobs of status $1 (failed or cancelled), of type $2 or any, that finished by $4,
-- queued again now with a fresh allowance of retries (as retry_job). One bounded batch; call
-- until it returns none. The $4 cut-off (the operation's start) keeps a job that fails again
-- during the operation from being retried twice, and the operation finite.
UPDATE jobs AS j
SET status = 'queued', scheduled_for = date_trunc('milliseconds', now()),
    finished_at = NULL, max_retries = j.max_retries + j.attempts
FROM (
    SELECT id FROM jobs
    WHERE status = $1 AND ($2::text IS NULL OR job_type = $2) AND finished_at <= $4
    ORDER BY id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
) AS picked
WHERE j.id = picked.id
RETURNING j.id, j.job_type, j.priority, j.scheduled_for;

-- name: delete_finished_jobs
-- Retention: delete up to $4 jobs of the given statuses that finished before $2, walking ids
-- (time-ordered) after $3 up to $1 (no job created after the cut-off can qualify). Returns
-- the deleted ids, so the caller knows where to continue.
WITH doomed AS (
    SELECT id FROM jobs
    WHERE id > $3 AND id < $1 AND status = ANY($5::text[]) AND finished_at < $2
    ORDER BY id
    LIMIT $4
    FOR UPDATE SKIP LOCKED
)
DELETE FROM jobs AS j USING doomed WHERE j.id = doomed.id
RETURNING j.id;

-- name: list_failures
-- The latest failed jobs, newest first, of one type or any (dashboard, CLI).
SELECT * FROM jobs
WHERE status = 'failed' AND ($1::text IS NULL OR job_type = $1)
ORDER BY id DESC
LIMIT $2;

-- name: start_periodic_schedules
-- Schedules ($1, names) seen for the first time start at $2 (now): their first tick is the
-- next one, so deploying a daily job never runs the tick it "missed" before it existed.
INSERT INTO periodic_schedules (name, position)
SELECT name, $2 FROM unnest($1::text[]) AS s(name)
ON CONFLICT (name) DO NOTHING;

-- name: periodic_schedule_positions
-- Where each of these schedules stands: every tick at or before its position is handled.
SELECT name, position FROM periodic_schedules WHERE name = ANY($1::text[]);

-- name: advance_periodic_schedule
-- Move schedule $1 from position $2 to $3, only if no other scheduler moved it first: the
-- compare-and-set that runs each tick once however many reconcilers run (a concurrent one
-- waits on the row lock, then finds the position changed and updates nothing). $4, $5: the
-- latest tick enqueued now and its job, if any.
UPDATE periodic_schedules
SET position = $3, advanced_at = now(),
    last_enqueued_tick = coalesce($4, last_enqueued_tick), last_job_id = coalesce($5, last_job_id)
WHERE name = $1 AND position = $2
RETURNING name;

-- name: insert_periodic_jobs
-- The jobs of a schedule's due ticks, in the transaction that advanced it. The idempotency
-- key periodic:<name>:<tick> also keeps out a tick a scheduler of an earlier release (which
-- relied on the key alone) enqueued during a rolling upgrade: such a row is not returned.
INSERT INTO jobs (id, job_type, input, priority, max_retries, scheduled_for, idempotency_key)
SELECT t.id, t.job_type, t.input::jsonb, t.priority, t.max_retries,
       date_trunc('milliseconds', now()), t.idempotency_key
FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::int[], $6::text[])
     AS t(id, job_type, input, priority, max_retries, idempotency_key)
ON CONFLICT ((coalesce(user_id, '')), idempotency_key) WHERE idempotency_key IS NOT NULL
DO NOTHING
RETURNING *;
