-- Dashboard sessions: the cookie holds a random session id, never a token; this table holds
-- only the id's SHA-256, so a copy of it opens no session. token_hash is the admin token
-- that logged in: every request checks that token again, so revoking it ends its sessions.
-- A session ends at logout (row deleted), after HYBRIDQ_API_SESSION_IDLE_SECONDS without a
-- page view, or at expires_at (HYBRIDQ_API_SESSION_MAX_SECONDS after login), whichever
-- comes first. Logins delete the rows that have ended (the expires_at index finds them).
CREATE TABLE IF NOT EXISTS dashboard_sessions (
    id_hash       text PRIMARY KEY CHECK (id_hash ~ '^[0-9a-f]{64}$'),
    token_hash    text NOT NULL CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_seen_at  timestamptz NOT NULL DEFAULT now(),
    expires_at    timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dashboard_sessions_expires_idx ON dashboard_sessions (expires_at);
