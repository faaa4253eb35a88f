-- Leases: rentals across peered brokers. The lessee broker (whose renter
-- rents) chooses the lease id; the lessor broker (which manages the device)
-- runs the rental for a per-peer account. Both keep a row, by role.
CREATE TABLE leases (
    role TEXT NOT NULL CHECK (role IN ('lessee', 'lessor')),
    peer_id INTEGER NOT NULL REFERENCES peers (id),
    id TEXT NOT NULL,
    device TEXT NOT NULL,
    hourly_rate INTEGER NOT NULL CHECK (hourly_rate >= 0),
    currency TEXT NOT NULL,
    -- Lessee: the renter. Lessor: the account that stands for the peer.
    renter_id INTEGER NOT NULL REFERENCES users (id),
    -- Lessor: the rental it runs.
    rental_id TEXT,
    -- Lessor: the idempotency key of the request that asked for it.
    idempotency_key TEXT,
    state TEXT NOT NULL CHECK (state IN ('open', 'ended')),
    username TEXT,
    ssh_host TEXT,
    ssh_port INTEGER,
    http_url TEXT,
    https_url TEXT,
    created_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT,
    PRIMARY KEY (role, peer_id, id)
);
CREATE UNIQUE INDEX leases_by_key ON leases (peer_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;
-- Messages to peers not yet delivered, retried with backoff.
CREATE TABLE peer_outbox (
    id INTEGER PRIMARY KEY,
    peer_id INTEGER NOT NULL REFERENCES peers (id),
    path TEXT NOT NULL,
    body TEXT NOT NULL,
    idempotency_key TEXT NOT NULL UNIQUE,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    delivered_at INTEGER
);
CREATE INDEX peer_outbox_due ON peer_outbox (next_attempt_at) WHERE delivered_at IS NULL;
