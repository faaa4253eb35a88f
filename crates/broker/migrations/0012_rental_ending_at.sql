-- When a rental was stopped: its renter's access ended then, even if the
-- wipe that ends it for good waits for the device to come back.
ALTER TABLE rentals ADD COLUMN ending_at INTEGER;
