-- When each device's sandbox was not healthy (failed, starting, wiping or
-- gone) by its agent's reports: one row per stretch, opened when the broker
-- first learns the sandbox is unhealthy and closed (until set) when it learns
-- it is healthy again; an open stretch runs to now. Billing charges only the
-- seconds a device was connected and its sandbox not unhealthy.
CREATE TABLE sandbox_unhealthy (
    device_id INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    since     INTEGER NOT NULL,
    until     INTEGER CHECK (until IS NULL OR until >= since)
);
CREATE INDEX sandbox_unhealthy_by_device ON sandbox_unhealthy (device_id, since);

-- The first period of a rental whose hold the renter's wallet could not
-- cover: the rental ends, and that period and any after it are free.
ALTER TABLE rentals ADD COLUMN unpaid_period INTEGER;
