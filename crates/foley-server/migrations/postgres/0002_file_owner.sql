-- Each file records the fingerprint of the key whose file it is (the uploader's, or the task owner's for inputs
-- and outputs): GET /files/{id} and file ids given as a task's video answer only that key. Files made before this
-- column existed belong to no key.
ALTER TABLE files ADD COLUMN owner TEXT;
