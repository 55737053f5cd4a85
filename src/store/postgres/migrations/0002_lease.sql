-- The lock session that holds the leadership, by instance: a replica that takes the lease back
-- after its own connection blipped knows that it was its own predecessor, and that it stopped.
ALTER TABLE leadership ADD COLUMN IF NOT EXISTS instance TEXT;
