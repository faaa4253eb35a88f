-- Federation: the brokers this one peers with, one-time invites to peer,
-- the devices peers list (pulled from them), and this broker's own listings
-- as exported to peers, each change numbered so peers pull only changes.
CREATE TABLE peers (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    base_url TEXT NOT NULL,
    -- Their published keys, JSON.
    keys TEXT NOT NULL,
    credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),
    currency TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('active', 'removed')),
    added_at INTEGER NOT NULL,
    removed_at INTEGER,
    listings_cursor INTEGER NOT NULL DEFAULT 0,
    last_pull_ok_at INTEGER,
    last_full_at INTEGER,
    missed_pulls INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE peer_invites (
    secret_hash TEXT PRIMARY KEY,
    credit_limit INTEGER NOT NULL CHECK (credit_limit >= 0),
    currency TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at INTEGER,
    -- The peer that used it and the idempotency key of its request, so a
    -- retry of the same request gets the same answer.
    used_by TEXT,
    used_key TEXT
);
CREATE TABLE peer_devices (
    peer_id INTEGER NOT NULL REFERENCES peers (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    listing TEXT NOT NULL,
    seq INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (peer_id, name)
);
CREATE TABLE federation_exports (
    name TEXT PRIMARY KEY,
    seq INTEGER NOT NULL UNIQUE,
    -- NULL for a device no longer listed (a tombstone).
    digest TEXT,
    listing TEXT,
    changed_at INTEGER NOT NULL
);
