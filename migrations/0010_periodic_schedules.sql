-- Where each periodic job's schedule stands, apart from the job rows: retention and purge
-- delete jobs, so a tick's "already enqueued" cannot rest on its job still existing (a
-- yearly job whose job was deleted ran its tick again at the next reconcile).
-- position: every tick at or before it has been handled, enqueued or skipped by the
-- schedule's catch-up policy, and never is again. A scheduler seeing a schedule for the
-- first time inserts it at that moment, so its first tick is the next one. Moving it is a
-- compare-and-set (position = the one read) in the transaction that inserts the tick's
-- jobs: one scheduler wins, however many run. See queue_core/periodic.py.
CREATE TABLE periodic_schedules (
    name               text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$'),
    position           timestamptz NOT NULL,
    started_at         timestamptz NOT NULL DEFAULT now(),  -- first seen by a scheduler
    advanced_at        timestamptz NOT NULL DEFAULT now(),  -- position last moved
    last_enqueued_tick timestamptz,                         -- NULL until a tick ran
    last_job_id        uuid                                 -- its job (retention may delete it)
);
