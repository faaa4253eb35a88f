-- Where each owner wants their earnings paid: a PayPal account (by email)
-- or a crypto address. One method per account.
CREATE TABLE payout_methods (
    user_id      INTEGER PRIMARY KEY REFERENCES users(id) ON DELETE CASCADE,
    -- paypal or crypto
    kind         TEXT NOT NULL CHECK (kind IN ('paypal', 'crypto')),
    destination  TEXT NOT NULL,
    updated_at   INTEGER NOT NULL
);

-- One payout per owner, payout period and currency. It is created in the
-- same transaction as the ledger transfer that moves the money from the
-- owner's payable to payouts in flight, and each change of state posts its
-- transfer in the same transaction as well, so the two never disagree.
CREATE TABLE payouts (
    id                TEXT PRIMARY KEY,
    owner_id          INTEGER NOT NULL REFERENCES users(id),
    period            INTEGER NOT NULL,
    currency          TEXT NOT NULL CHECK (length(currency) = 3),
    amount            INTEGER NOT NULL CHECK (amount > 0),
    -- paypal or crypto, and where it was sent
    method            TEXT NOT NULL,
    destination       TEXT NOT NULL,
    -- sent (in flight), paid, failed (back to payable), returned (paid,
    -- then given back: payable again)
    state             TEXT NOT NULL CHECK (state IN ('sent', 'paid', 'failed', 'returned')),
    -- The provider's batch and item ids (PayPal), or the transaction id
    -- (crypto), once known.
    provider_batch_id TEXT,
    provider_item_id  TEXT,
    -- Why it failed or was returned, as the provider said.
    reason            TEXT,
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    UNIQUE (owner_id, period, currency)
);
CREATE INDEX payouts_by_state ON payouts (state, method);
