-- Each task records the fingerprint of the key that submitted it (GET /tasks lists one key's tasks). Tasks made
-- before this column existed belong to no key.
ALTER TABLE tasks ADD COLUMN owner TEXT;
CREATE INDEX IF NOT EXISTS tasks_owner ON tasks(owner, seq);
