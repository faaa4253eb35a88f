-- People: owners, renters and admins are all accounts; one account can own
-- devices and rent devices.

CREATE TABLE users (
    id                   INTEGER PRIMARY KEY,
    -- Lowercased; the sign-in name.
    email                TEXT NOT NULL UNIQUE,
    -- Argon2id, in PHC string form (algorithm, parameters, salt, hash).
    password_hash        TEXT NOT NULL,
    is_admin             INTEGER NOT NULL DEFAULT 0 CHECK (is_admin IN (0, 1)),
    created_at           INTEGER NOT NULL,
    password_changed_at  INTEGER NOT NULL,
    suspended_at         INTEGER,
    -- Failed sign-ins since the last success, and the lock they earned.
    failed_logins        INTEGER NOT NULL DEFAULT 0,
    locked_until         INTEGER
);

-- Signed-in browsers and scripts. The cookie value is never stored, only its
-- SHA-256.
CREATE TABLE sessions (
    id_hash       TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The session's anti-CSRF token, embedded in its forms.
    csrf          TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    last_seen_at  INTEGER NOT NULL
);
CREATE INDEX sessions_by_user ON sessions (user_id);
