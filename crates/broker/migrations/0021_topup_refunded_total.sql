-- How much of each top-up its provider has refunded, in minor units; a
-- top-up is refunded once this reaches its amount.
ALTER TABLE topups ADD COLUMN refunded INTEGER NOT NULL DEFAULT 0;
