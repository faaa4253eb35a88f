-- Failed sign-ins are counted per email address, whether or not an account
-- has it, so a locked address looks the same either way. This replaces the
-- per-account counters of 0003 (users.failed_logins, users.locked_until),
-- which nothing reads or writes any more.

CREATE TABLE login_failures (
    email         TEXT PRIMARY KEY,
    failures      INTEGER NOT NULL,
    locked_until  INTEGER,
    last_failure  INTEGER NOT NULL
);
