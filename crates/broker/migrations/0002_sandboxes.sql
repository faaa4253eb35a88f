-- Each device's sandbox as its agent last reported it, the broker's own
-- measurements of it, and rentals of it.

CREATE TABLE sandboxes (
    device_id   INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    -- starting, ready, rented, wiping, failed; or none (the agent runs no sandbox).
    state       TEXT NOT NULL,
    -- The agent's last status answer, as JSON.
    status      TEXT,
    updated_at  INTEGER NOT NULL
);

-- One row per verification: what the device claimed, what the broker measured
-- inside the sandbox, and the verdict.
CREATE TABLE verifications (
    id          INTEGER PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    at          INTEGER NOT NULL,
    verdict     TEXT NOT NULL CHECK (verdict IN ('verified', 'flagged', 'failed')),
    claimed     TEXT NOT NULL,
    measured    TEXT,
    -- Why a device was flagged or a verification failed; empty when verified.
    reasons     TEXT NOT NULL DEFAULT ''
);
CREATE INDEX verifications_by_device ON verifications (device_id, at);

CREATE TABLE rentals (
    -- Chosen by the broker; the agent keys its idempotent provisioning on it.
    id          TEXT PRIMARY KEY,
    device_id   INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    state       TEXT NOT NULL CHECK (state IN ('provisioning', 'active', 'ending', 'ended')),
    -- The sandbox login; the password is never stored here.
    username    TEXT,
    ssh_keys    TEXT NOT NULL DEFAULT '[]',
    started_at  INTEGER NOT NULL,
    ended_at    INTEGER
);
-- At most one rental per device that has not ended.
CREATE UNIQUE INDEX rentals_one_open_per_device ON rentals (device_id) WHERE state != 'ended';
