-- The statements of API tokens and dashboard sessions (tokens.py, sessions.py), by name,
-- loaded with queries.sql; the jobs' statements are there.

-- name: insert_api_token
-- A new managed token (its hash only). expires_at NULL: it never expires.
INSERT INTO api_tokens (id, token_hash, user_id, admin, name, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, user_id, admin, name, created_at, expires_at, revoked_at;

-- name: list_api_tokens
-- Every managed token, newest first, revoked and expired ones included (the caller shows
-- their state). Never the hash.
SELECT id, user_id, admin, name, created_at, expires_at, revoked_at
FROM api_tokens
ORDER BY created_at DESC, id;

-- name: revoke_api_token
-- Revoke one token (idempotent: a revoked token keeps its first revocation time). No row:
-- there is no token with that id.
UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1
RETURNING id, user_id, admin, name, created_at, expires_at, revoked_at;

-- name: find_api_token
-- The live token with this hash, if any: every API replica asks this at most once per
-- token per cache period. Expiry is compared by the caller, at each use.
SELECT id, user_id, admin, name, created_at, expires_at, revoked_at
FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL;

-- name: insert_dashboard_session
-- A new session ending at the latest $3 seconds from now.
INSERT INTO dashboard_sessions (id_hash, token_hash, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3));

-- name: touch_dashboard_session
-- The token behind a live session, recording this page view when $3 (a page's own
-- periodic refresh is not the person's activity and does not keep the session alive). Live:
-- neither past its absolute expiry nor idle for more than $2 seconds.
UPDATE dashboard_sessions
SET last_seen_at = CASE WHEN $3::boolean THEN now() ELSE last_seen_at END
WHERE id_hash = $1
  AND expires_at > now()
  AND last_seen_at > now() - make_interval(secs => $2)
RETURNING token_hash;

-- name: delete_dashboard_session
-- Logout: the session ends now, on every replica.
DELETE FROM dashboard_sessions WHERE id_hash = $1;

-- name: delete_ended_dashboard_sessions
-- Sessions past their absolute expiry or idle for more than $1 seconds.
DELETE FROM dashboard_sessions
WHERE expires_at <= now() OR last_seen_at <= now() - make_interval(secs => $1);
