-- The reconciler walks queued jobs of one type in id order, in bounded pages, to diff them
-- against Redis. Only enqueue and requeue insert into this partial index; claims do not.
CREATE INDEX jobs_queued_by_type_idx
    ON jobs (job_type, id)
    WHERE status = 'queued';
