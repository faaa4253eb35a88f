-- Devices an administrator suspended: they cannot connect, are not listed
-- and cannot be rented until reinstated. The reason is shown to the owner.
CREATE TABLE device_suspensions (
    device_id  INTEGER PRIMARY KEY REFERENCES devices(id) ON DELETE CASCADE,
    at         INTEGER NOT NULL,
    reason     TEXT NOT NULL
);
