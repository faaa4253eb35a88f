-- Password reset links. The link's token is never stored, only its SHA-256.
-- A token opens nothing once spent_at is set (used, or replaced by a newer
-- request); rows are kept a day after they are made so that requests per
-- account can be counted.

CREATE TABLE password_resets (
    token_hash  TEXT PRIMARY KEY,
    user_id     INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  INTEGER NOT NULL,
    expires_at  INTEGER NOT NULL,
    spent_at    INTEGER
);
CREATE INDEX password_resets_by_user ON password_resets (user_id, created_at);
