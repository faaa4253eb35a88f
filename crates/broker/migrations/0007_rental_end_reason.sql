-- Why a rental ended when its owner or an administrator ended it; shown to
-- the renter. NULL when the renter stopped it.
ALTER TABLE rentals ADD COLUMN end_reason TEXT;
