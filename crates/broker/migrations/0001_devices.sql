-- Devices, their public ports, their SSH keys, and the tokens they no longer use.

CREATE TABLE devices (
    id            INTEGER PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    -- SHA-256 of the device token, hex. The token itself is never stored.
    token_hash    TEXT NOT NULL UNIQUE,
    created_at    INTEGER NOT NULL,
    -- The hardware report of the last handshake, as JSON (claimed, not verified).
    hardware      TEXT,
    last_connect  INTEGER,
    -- Presence: set while a tunnel session is up; last_seen is refreshed while it is.
    online_since  INTEGER,
    last_seen     INTEGER
);

-- One row per public port: a port can belong to one device and service only.
CREATE TABLE device_ports (
    port       INTEGER PRIMARY KEY,
    device_id  INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    service    TEXT NOT NULL CHECK (service IN ('ssh', 'http', 'https')),
    UNIQUE (device_id, service)
);

CREATE TABLE device_keys (
    device_id    INTEGER NOT NULL REFERENCES devices(id) ON DELETE CASCADE,
    -- OpenSSH SHA256 fingerprint of the key.
    fingerprint  TEXT NOT NULL,
    public_key   TEXT NOT NULL,
    -- 'agent': registered by the agent at handshake (dies with its token);
    -- 'owner': added by the owner with `device add --ssh-key`.
    source       TEXT NOT NULL CHECK (source IN ('agent', 'owner')),
    added_at     INTEGER NOT NULL,
    PRIMARY KEY (device_id, fingerprint)
);

-- Tokens that were revoked or whose device was removed, so a device that
-- presents one is told why instead of "unknown token".
CREATE TABLE retired_tokens (
    token_hash   TEXT PRIMARY KEY,
    device_name  TEXT NOT NULL,
    reason       TEXT NOT NULL CHECK (reason IN ('revoked', 'removed')),
    retired_at   INTEGER NOT NULL
);
