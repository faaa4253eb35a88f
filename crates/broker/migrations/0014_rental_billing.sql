-- How far each rental is billed: the number of its periods (hours) whose
-- charge is posted, and whether its last one is. The ledger's transfer ids
-- make every posting idempotent; these only spare the billing job from
-- looking at rentals it has finished.
ALTER TABLE rentals ADD COLUMN billed_periods INTEGER NOT NULL DEFAULT 0;
ALTER TABLE rentals ADD COLUMN billing_closed INTEGER NOT NULL DEFAULT 0 CHECK (billing_closed IN (0, 1));
CREATE INDEX rentals_to_bill ON rentals (billing_closed) WHERE billing_closed = 0;
-- Rentals from before billing existed are never billed.
UPDATE rentals SET billing_closed = 1;
