-- Renters' top-ups through payment providers. A top-up is ours first
-- (pending, no provider reference) and gets the provider's reference (a
-- PayPal order id, a BTCPay invoice id) once the provider has made the
-- payment. Crediting it posts the ledger transfer topup:<provider>:<ref>
-- in the same transaction that marks it credited.
CREATE TABLE topups (
    id            TEXT PRIMARY KEY,
    user_id       INTEGER NOT NULL REFERENCES users(id),
    provider      TEXT NOT NULL,
    provider_ref  TEXT,
    amount        INTEGER NOT NULL CHECK (amount > 0),
    currency      TEXT NOT NULL CHECK (length(currency) = 3),
    state         TEXT NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('pending', 'credited', 'failed', 'expired', 'refunded')),
    -- Why a top-up failed, in words a renter can read.
    detail        TEXT NOT NULL DEFAULT '',
    checkout_url  TEXT,
    -- The provider's capture or payment id, once paid.
    payment_id    TEXT,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,
    -- When reconciliation last asked the provider about it.
    checked_at    INTEGER NOT NULL DEFAULT 0,
    UNIQUE (provider, provider_ref)
);
CREATE INDEX topups_by_user ON topups (user_id, created_at);
CREATE INDEX topups_by_state ON topups (state, checked_at);

-- Webhook deliveries already handled, so a repeated one is answered
-- without acting again.
CREATE TABLE webhook_deliveries (
    provider     TEXT NOT NULL,
    delivery_id  TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    PRIMARY KEY (provider, delivery_id)
);
