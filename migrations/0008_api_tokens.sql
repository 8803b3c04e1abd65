-- Managed API tokens (`hybridq token new/list/revoke`): added and revoked without a
-- redeploy, looked up by every API replica (cached for HYBRIDQ_API_TOKEN_CACHE_SECONDS).
-- Only the SHA-256 of a token is stored: tokens are 256 random bits, so a fast hash is
-- enough, and a copy of this table authenticates nobody. A token is an admin's (user_id
-- NULL) or one user's. Revoked rows are kept (revoked_at) so `token list` can show them.
CREATE TABLE IF NOT EXISTS api_tokens (
    id          uuid PRIMARY KEY,
    token_hash  text NOT NULL UNIQUE CHECK (token_hash ~ '^[0-9a-f]{64}$'),
    user_id     text CHECK (length(user_id) BETWEEN 1 AND 200),
    admin       boolean NOT NULL,
    name        text CHECK (length(name) BETWEEN 1 AND 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz,
    CHECK (admin = (user_id IS NULL))
);
