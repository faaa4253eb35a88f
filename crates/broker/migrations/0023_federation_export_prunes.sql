-- How far this broker pruned the tombstones of its exported listings: the
-- highest number of a tombstone deleted. A peer whose cursor is below it
-- may have missed a removal, so it is sent the full listing again.
CREATE TABLE federation_export_pruned (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    through_seq INTEGER NOT NULL
);
