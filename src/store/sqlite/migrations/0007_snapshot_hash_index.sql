-- The content hashes of a feed's snapshot, read by every poll, in an index of their own: the
-- hash column came after the record (migration 2), so reading it from the table read every
-- record's overflow pages too.
CREATE INDEX IF NOT EXISTS snapshot_hashes ON snapshot (resource, id, hash);
