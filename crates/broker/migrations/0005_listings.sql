-- Marketplace listings and who rents.

-- Whether the owner offers the device on the marketplace, and at what price
-- per hour, in minor units of the broker's currency (cents).
ALTER TABLE devices ADD COLUMN listed INTEGER NOT NULL DEFAULT 0 CHECK (listed IN (0, 1));
ALTER TABLE devices ADD COLUMN hourly_rate INTEGER CHECK (hourly_rate IS NULL OR hourly_rate >= 0);

-- The account that rents; NULL for rentals started by the operator's
-- `rpibroker rental start`.
ALTER TABLE rentals ADD COLUMN renter_id INTEGER REFERENCES users(id) ON DELETE SET NULL;
CREATE INDEX rentals_by_renter ON rentals (renter_id);
