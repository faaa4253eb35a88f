-- When each device was connected: one row per stretch of connection, from
-- the session's start to its end (or to the last heartbeat, if the broker
-- stopped without seeing the end). Uptime over a window is the overlap of
-- these stretches with it. Stretches older than the longest window shown
-- are purged.
CREATE TABLE device_uptime (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    since     INTEGER NOT NULL,
    until     INTEGER NOT NULL CHECK (until >= since)
);
CREATE INDEX device_uptime_by_device ON device_uptime (device_id, since);

-- The hourly rate agreed when the rental started, in minor units; NULL for
-- rentals started by the operator's `rpibroker rental start` of an
-- unpriced device.
ALTER TABLE rentals ADD COLUMN hourly_rate INTEGER CHECK (hourly_rate IS NULL OR hourly_rate >= 0);
