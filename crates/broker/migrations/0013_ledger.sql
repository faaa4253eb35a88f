-- The double-entry ledger. Every transfer moves money between accounts of
-- one currency and sums to zero; transfers are never changed or deleted (a
-- correction is a new transfer). A transfer's id names what caused it, so
-- posting the same cause twice is a no-op.
CREATE TABLE ledger_accounts (
    id        INTEGER PRIMARY KEY,
    -- wallet, payable, revenue, clearing, payouts_in_flight
    kind      TEXT NOT NULL,
    -- The account's holder: a user id for wallets and payables, a provider
    -- name for clearing accounts, empty for the broker's own.
    holder    TEXT NOT NULL,
    currency  TEXT NOT NULL CHECK (length(currency) = 3),
    -- Kept equal to the sum of the account's entries, in minor units.
    balance   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (kind, holder, currency)
);

CREATE TABLE ledger_transfers (
    id        TEXT PRIMARY KEY,
    currency  TEXT NOT NULL,
    at        INTEGER NOT NULL,
    memo      TEXT NOT NULL
);

CREATE TABLE ledger_entries (
    transfer_id  TEXT NOT NULL REFERENCES ledger_transfers(id),
    account_id   INTEGER NOT NULL REFERENCES ledger_accounts(id),
    amount       INTEGER NOT NULL CHECK (amount != 0),
    PRIMARY KEY (transfer_id, account_id)
);
CREATE INDEX ledger_entries_by_account ON ledger_entries (account_id);
