-- Idempotent enqueue (API Idempotency-Key, periodic jobs): a key is unique per owner, and the
-- fingerprint of the request that created the job tells a replay (same request: the same
-- job back) from a conflict (same key, different request).
ALTER TABLE jobs
    ADD COLUMN idempotency_key text CHECK (char_length(idempotency_key) BETWEEN 1 AND 200),
    ADD COLUMN request_fingerprint text;

CREATE UNIQUE INDEX jobs_idempotency_key_idx
    ON jobs ((coalesce(user_id, '')), idempotency_key)
    WHERE idempotency_key IS NOT NULL;

-- A user's jobs, newest first (GET /jobs): keyset pagination on the time-ordered id.
CREATE INDEX jobs_user_id_idx ON jobs (user_id, id);
