-- The one table of hybridq: every job of every type, its whole life. Postgres is the source
-- of truth; the Redis index can always be rebuilt from this table.
CREATE TABLE jobs (
    id               uuid PRIMARY KEY,                  -- UUIDv7: time-ordered, made by the client
    job_type         text NOT NULL CHECK (job_type ~ '^[A-Za-z][A-Za-z0-9_.:-]{0,99}$'),
    user_id          text CHECK (char_length(user_id) BETWEEN 1 AND 200),
    input            jsonb NOT NULL CHECK (jsonb_typeof(input) = 'object'),
    output           jsonb,
    status           text NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    priority         integer NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
    attempts         integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    -- retries after the first attempt; retry() of a finished job raises it (see queries.sql)
    max_retries      integer NOT NULL DEFAULT 3 CHECK (max_retries >= 0),
    scheduled_for    timestamptz NOT NULL,              -- millisecond precision, like Redis scores
    created_at       timestamptz NOT NULL DEFAULT now(),
    started_at       timestamptz,                       -- start of the latest attempt
    finished_at      timestamptz,
    last_error       text,
    lease_owner      text,                              -- worker id holding the running attempt
    lease_expires_at timestamptz,
    -- a running job always has a lease, and only a running job has one
    CONSTRAINT jobs_lease_iff_running CHECK (
        (status = 'running') = (lease_owner IS NOT NULL AND lease_expires_at IS NOT NULL)
    )
);

-- Claim without Redis (fallback) and the reconciler's walk over queued jobs, in claim order.
CREATE INDEX jobs_queued_claim_order_idx
    ON jobs (job_type, priority DESC, scheduled_for, id)
    WHERE status = 'queued';

-- Rescue of running jobs whose lease expired.
CREATE INDEX jobs_running_lease_idx
    ON jobs (lease_expires_at)
    WHERE status = 'running';
