-- Tokens that let an account's scripts call the JSON API. The token itself is
-- shown once and never stored, only its SHA-256.
CREATE TABLE api_tokens (
    id            INTEGER PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- What the owner called it, to tell tokens apart when revoking one.
    name          TEXT NOT NULL,
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    last_used_at  INTEGER
);
CREATE INDEX api_tokens_by_user ON api_tokens (user_id);
