-- Devices registered through the web pages belong to an account; devices
-- added with `rpibroker device add` belong to the operator (no owner).

ALTER TABLE devices ADD COLUMN owner_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
CREATE INDEX devices_by_owner ON devices (owner_id);
