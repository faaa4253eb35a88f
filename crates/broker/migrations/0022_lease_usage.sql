-- Usage of leases. The lessor issues a record for each period (hour) of
-- every lease it runs, one when the lease ends, corrections, and payments
-- it received from the peer; each is signed and chained by hash to the one
-- before it sent to the same peer.
-- The lessee keeps the records it received, and charges its renters from
-- them. Both sides book them to the peer's ledger account.
ALTER TABLE leases ADD COLUMN period_secs INTEGER NOT NULL DEFAULT 3600 CHECK (period_secs > 0);
-- Lessor: periods with a usage record. Lessee: periods held from the
-- renter's wallet.
ALTER TABLE leases ADD COLUMN periods_done INTEGER NOT NULL DEFAULT 0;
-- Lessee: the period the renter's wallet could not hold.
ALTER TABLE leases ADD COLUMN unpaid_period INTEGER;
-- Lessee: when the renter stopped it (the lessor charges nothing after).
ALTER TABLE leases ADD COLUMN stop_at INTEGER;
-- Lessor: the end record was issued. Lessee: it was received.
ALTER TABLE leases ADD COLUMN usage_closed INTEGER NOT NULL DEFAULT 0 CHECK (usage_closed IN (0, 1));
UPDATE leases SET usage_closed = 1 WHERE state = 'ended';

CREATE TABLE lease_usage (
    -- issued: by this broker, to the peer; received: from the peer.
    direction TEXT NOT NULL CHECK (direction IN ('issued', 'received')),
    peer_id INTEGER NOT NULL REFERENCES peers (id),
    seq INTEGER NOT NULL CHECK (seq > 0),
    -- Empty for a payment.
    lease TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('usage', 'end', 'correction', 'payment')),
    period INTEGER NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    -- When the issuer issued it (its clock, as signed): statements by
    -- month cover the same records on both sides.
    issued_at INTEGER NOT NULL,
    -- The record exactly as signed (JSON), its SHA-256 (hex), the key
    -- that signed it and the signature (base64).
    body TEXT NOT NULL,
    hash TEXT NOT NULL,
    keyid TEXT NOT NULL,
    signature TEXT NOT NULL,
    recorded_at INTEGER NOT NULL,
    PRIMARY KEY (direction, peer_id, seq)
);
CREATE UNIQUE INDEX lease_usage_once ON lease_usage (direction, peer_id, lease, kind, period)
    WHERE kind IN ('usage', 'end');
CREATE INDEX lease_usage_by_lease ON lease_usage (peer_id, lease);

-- What the lessee last heard of the lessor's record chain, and whether its
-- own copy agreed.
ALTER TABLE peers ADD COLUMN usage_checked_at INTEGER;
ALTER TABLE peers ADD COLUMN usage_problem TEXT;
